-- Refuses JSON request bodies with fields the request message does not define.
--
-- The gRPC-JSON transcoder drops such fields without a word, so a misspelt or invented field
-- would be ignored while the call succeeds. This runs just before the transcoder on routes with
-- a body and answers 400 with a google.rpc.Status naming each unknown field (BadRequest field
-- violations, paths as the services write them: `items[0].quantity`).
--
-- gateway/body_fields.py renders two tables in front of this file:
--   MESSAGES[message][json key] = {proto name, kind, message type}
--     kind: "s" a JSON scalar (or a well-known type printed as one), "m" a message (an object, or
--     an array of objects when repeated), "k" a map (any keys; values walked if messages),
--     "a" any JSON (google.protobuf.Struct, Value, ListValue, Any).
--   ROOTS[route name] = {message = name, path = {json key = proto name}}: the body's message and
--     the fields the URL path binds (not body fields).
-- The route's filter context names its root: {"root": route name}.
--
-- Only keys are checked; the transcoder still parses every value. A body this walker cannot read
-- is left for the transcoder to refuse with its own message.

local MAX_VIOLATIONS = 20

local byte, char, find, format, sub = string.byte, string.char, string.find, string.format, string.sub
local concat, floor = table.concat, math.floor

local ESCAPES = {
  [34] = '"', [47] = "/", [92] = "\\", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r",
  [116] = "\t",
}

local function skip_space(s, i)
  local _, last = find(s, "^[ \t\r\n]*", i)
  return last + 1
end

local function utf8(code)
  if code < 0x80 then
    return char(code)
  elseif code < 0x800 then
    return char(0xC0 + floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    if code >= 0xD800 and code <= 0xDFFF then
      return "\239\191\189" -- a lone surrogate: U+FFFD, as a decoder would
    end
    return char(0xE0 + floor(code / 0x1000), 0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return char(
    0xF0 + floor(code / 0x40000),
    0x80 + floor(code / 0x1000) % 0x40,
    0x80 + floor(code / 0x40) % 0x40,
    0x80 + code % 0x40
  )
end

-- Whether `s` is well-formed UTF-8 (no overlong forms, no surrogates), as the transcoder demands.
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local size, low, high = 1, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then
      size = 2
    elseif c >= 0xE0 and c <= 0xEF then
      size = 3
      low = c == 0xE0 and 0xA0 or 0x80
      high = c == 0xED and 0x9F or 0xBF
    elseif c >= 0xF0 and c <= 0xF4 then
      size = 4
      low = c == 0xF0 and 0x90 or 0x80
      high = c == 0xF4 and 0x8F or 0xBF
    elseif c >= 0x80 then
      return false
    end
    for k = i + 1, i + size - 1 do
      local d = byte(s, k)
      if d == nil or d < low or d > high then
        return false
      end
      low, high = 0x80, 0xBF
    end
    i = i + size
  end
  return true
end

local function hex4(s, i)
  local digits = sub(s, i, i + 3)
  if not find(digits, "^%x%x%x%x$") then
    return nil
  end
  return tonumber(digits, 16)
end

-- The string whose opening quote is at i: its decoded text (or true when not `decode`) and the
-- index after its closing quote; nil if it is not a valid JSON string.
local function read_string(s, i, decode)
  local parts = decode and {} or nil
  local start = i + 1
  local j = start
  while true do
    local at = find(s, '["\\%z\1-\31]', j)
    if at == nil then
      return nil
    end
    local c = byte(s, at)
    if c == 34 then
      if not decode then
        return true, at + 1
      end
      parts[#parts + 1] = sub(s, start, at - 1)
      return concat(parts), at + 1
    elseif c ~= 92 then
      return nil -- a raw control character
    end
    if decode then
      parts[#parts + 1] = sub(s, start, at - 1)
    end
    local escape = byte(s, at + 1)
    if escape == 117 then -- \uXXXX, perhaps a surrogate pair
      local code = hex4(s, at + 2)
      if code == nil then
        return nil
      end
      j = at + 6
      if code >= 0xD800 and code <= 0xDBFF and sub(s, j, j + 1) == "\\u" then
        local low = hex4(s, j + 2)
        if low ~= nil and low >= 0xDC00 and low <= 0xDFFF then
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          j = j + 6
        end
      end
      if decode then
        parts[#parts + 1] = utf8(code)
      end
    else
      local plain = ESCAPES[escape]
      if plain == nil then
        return nil
      end
      if decode then
        parts[#parts + 1] = plain
      end
      j = at + 2
    end
    start = j
  end
end

-- The index after the JSON value at i, without recursion (any depth); nil if it cannot be read.
-- Grammar inside the value is the transcoder's to check; this only finds where it ends.
local function skip_value(s, i)
  local depth = 0
  while true do
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == nil then
      return nil
    elseif c == 34 then
      local ok
      ok, i = read_string(s, i, false)
      if not ok then
        return nil
      end
    elseif c == 123 or c == 91 then
      depth = depth + 1
      i = i + 1
    elseif c == 125 or c == 93 then
      depth = depth - 1
      if depth < 0 then
        return nil
      end
      i = i + 1
    elseif c == 44 or c == 58 then
      if depth == 0 then
        return nil
      end
      i = i + 1
    else
      local _, last = find(s, '^[^ \t\r\n,:%[%]{}"]+', i)
      i = last + 1
    end
    if depth == 0 then
      return i
    end
  end
end

local function join(path, name)
  if path == "" then
    return name
  end
  return path .. "." .. name
end

local function violate(found, path, message, key, reason)
  if #found < MAX_VIOLATIONS then
    found[#found + 1] = {path, format(reason, key, message)}
  end
end

local walk_value

-- Walks the object at i (an opening brace) against `message`; the index after it, or nil.
local function walk_object(s, i, message, path, bound, found)
  local fields = MESSAGES[message]
  i = skip_space(s, i + 1)
  if byte(s, i) == 125 then
    return i + 1
  end
  while true do
    if byte(s, i) ~= 34 then
      return nil
    end
    local key
    key, i = read_string(s, i, true)
    if key == nil then
      return nil
    end
    i = skip_space(s, i)
    if byte(s, i) ~= 58 then
      return nil
    end
    i = skip_space(s, i + 1)
    local field = fields[key]
    if field == nil and not valid_utf8(key) then
      return nil -- the transcoder refuses the body itself
    end
    if bound ~= nil and bound[key] ~= nil then
      violate(found, join(path, key), message, key, "`%s` is given by the URL path, not the body")
      i = skip_value(s, i)
    elseif field == nil then
      violate(found, join(path, key), message, key, "unknown field `%s`: %s has no such field")
      i = skip_value(s, i)
    else
      i = walk_value(s, i, field, join(path, field[1]), found)
    end
    if i == nil then
      return nil
    end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == 125 then
      return i + 1
    elseif c ~= 44 then
      return nil
    end
    i = skip_space(s, i + 1)
  end
end

-- Walks each element of the array at i as `message` (a repeated message field).
local function walk_array(s, i, message, path, found)
  i = skip_space(s, i + 1)
  if byte(s, i) == 93 then
    return i + 1
  end
  local index = 0
  while true do
    local element = format("%s[%d]", path, index)
    if byte(s, i) == 123 then
      i = walk_object(s, i, message, element, nil, found)
    else
      i = skip_value(s, i)
    end
    if i == nil then
      return nil
    end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == 93 then
      return i + 1
    elseif c ~= 44 then
      return nil
    end
    i = skip_space(s, i + 1)
    index = index + 1
  end
end

-- Walks a map's object: any key; message values are walked as their message.
local function walk_map(s, i, values, path, found)
  i = skip_space(s, i + 1)
  if byte(s, i) == 125 then
    return i + 1
  end
  while true do
    if byte(s, i) ~= 34 then
      return nil
    end
    local key
    key, i = read_string(s, i, true)
    if key == nil then
      return nil
    end
    i = skip_space(s, i)
    if byte(s, i) ~= 58 then
      return nil
    end
    i = skip_space(s, i + 1)
    if values ~= nil and byte(s, i) == 123 then
      i = walk_object(s, i, values, format("%s[%q]", path, key), nil, found)
    else
      i = skip_value(s, i)
    end
    if i == nil then
      return nil
    end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == 125 then
      return i + 1
    elseif c ~= 44 then
      return nil
    end
    i = skip_space(s, i + 1)
  end
end

walk_value = function(s, i, field, path, found)
  local kind, c = field[2], byte(s, i)
  if kind == "m" then
    if c == 123 then
      return walk_object(s, i, field[3], path, nil, found)
    elseif c == 91 then
      return walk_array(s, i, field[3], path, found)
    end
  elseif kind == "k" and c == 123 then
    return walk_map(s, i, field[3], path, found)
  end
  return skip_value(s, i)
end

-- The unknown fields of `body` for `root` as {path, description} pairs; nil if it is not JSON
-- this walker can read (the transcoder answers for those).
local function unknown_fields(body, root)
  local found = {}
  local i = skip_space(body, 1)
  if byte(body, i) ~= 123 then
    return nil
  end
  i = walk_object(body, i, root.message, "", root.path, found)
  if i == nil or skip_space(body, i) <= #body then
    return nil
  end
  return found
end

local function quote(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return format("\\u%04x", byte(c))
  end) .. '"'
end

local function status(found)
  local fields, violations = {}, {}
  for n, pair in ipairs(found) do
    fields[n] = pair[1]
    violations[n] = format('{"field":%s,"description":%s}', quote(pair[1]), quote(pair[2]))
  end
  return format(
    '{"code":3,"message":%s,"details":[{"@type":"type.googleapis.com/google.rpc.BadRequest",'
      .. '"fieldViolations":[%s]}]}',
    quote("invalid request: " .. concat(fields, ", ")),
    concat(violations, ",")
  )
end

function envoy_on_request(handle)
  local root = ROOTS[handle:filterContext():get("root")]
  if root == nil then
    return
  end
  local body = handle:body()
  if body == nil or body:length() == 0 then
    return
  end
  local found = unknown_fields(body:getBytes(0, body:length()), root)
  if found ~= nil and #found > 0 then
    handle:respond({[":status"] = "400", ["content-type"] = "application/json"}, status(found))
  end
end
