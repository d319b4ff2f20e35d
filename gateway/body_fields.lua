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

-- Escapes the transcoder turns into a character; any other escaped character it accepts too, and
-- such a key is kept with its backslash, so that it matches no field and is named as unknown.
local ESCAPES = {
  [34] = '"', [39] = "'", [47] = "/", [92] = "\\", [98] = "\b", [102] = "\f", [110] = "\n",
  [114] = "\r", [116] = "\t",
}
local CLOSING = {[34] = '["\\]', [39] = "['\\]"}

-- The transcoder's JSON parser is lenient, and what it reads this must read too, or an unknown
-- field would slip through: any C whitespace, single-quoted strings, raw control characters in
-- strings, unquoted keys (`{userId: 1}`) and trailing commas.
local function skip_space(s, i)
  local _, last = find(s, "^%s*", i)
  return last + 1
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

local function utf8(code)
  if code < 0x80 then
    return char(code)
  elseif code < 0x800 then
    return char(0xC0 + floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return char(0xE0 + floor(code / 0x1000), 0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return char(
    0xF0 + floor(code / 0x40000),
    0x80 + floor(code / 0x1000) % 0x40,
    0x80 + floor(code / 0x40) % 0x40,
    0x80 + code % 0x40
  )
end

local function hex4(s, i)
  local digits = sub(s, i, i + 3)
  if not find(digits, "^%x%x%x%x$") then
    return nil
  end
  return tonumber(digits, 16)
end

-- The string whose opening quote (" or ') is at i: its decoded text (or true when not `decode`)
-- and the index after its closing quote; nil where the transcoder refuses it too (no closing
-- quote, a \u without four hex digits). A lone surrogate decodes as U+FFFD.
local function read_string(s, i, decode)
  local closing = CLOSING[byte(s, i)]
  local parts = decode and {} or nil
  local start = i + 1
  local j = start
  while true do
    local at = find(s, closing, j)
    if at == nil then
      return nil
    end
    if byte(s, at) ~= 92 then
      if not decode then
        return true, at + 1
      end
      parts[#parts + 1] = sub(s, start, at - 1)
      return concat(parts), at + 1
    end
    if decode then
      parts[#parts + 1] = sub(s, start, at - 1)
    end
    local escape = byte(s, at + 1)
    if escape == nil then
      return nil
    elseif escape == 117 then -- \uXXXX, a surrogate pair as two
      local code = hex4(s, at + 2)
      if code == nil then
        return nil
      end
      j = at + 6
      local low = sub(s, j, j + 1) == "\\u" and hex4(s, j + 2) or nil
      if code >= 0xD800 and code <= 0xDBFF and low and low >= 0xDC00 and low <= 0xDFFF then
        code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
        j = j + 6
      elseif code >= 0xD800 and code <= 0xDFFF then
        code = 0xFFFD
      end
      if decode then
        parts[#parts + 1] = utf8(code)
      end
    else
      if decode then
        parts[#parts + 1] = ESCAPES[escape] or sub(s, at, at + 1)
      end
      j = at + 2
    end
    start = j
  end
end

-- An object key at i (quoted, or unquoted as the transcoder allows) and the index after it.
local function read_key(s, i)
  local c = byte(s, i)
  if c == 34 or c == 39 then
    return read_string(s, i, true)
  end
  local _, last = find(s, "^[%a_$][%w_$]*", i)
  if last == nil then
    return nil
  end
  return sub(s, i, last), last + 1
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
    elseif c == 34 or c == 39 then
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
      local _, last = find(s, "^[^%s,:%[%]{}\"']+", i)
      i = last + 1
    end
    if depth == 0 then
      return i
    end
  end
end

-- After an item of an object or array that ends at i: where the next item starts, or the index
-- of `close` (a trailing comma is allowed, as the transcoder allows it); nil for anything else.
local function next_item(s, i, close)
  i = skip_space(s, i)
  local c = byte(s, i)
  if c == 44 then
    return skip_space(s, i + 1)
  elseif c == close then
    return i
  end
  return nil
end

-- Calls visit(key, i) for each member of the object at i (its opening brace); visit answers the
-- index after the member's value. The index after the object, or nil.
local function each_member(s, i, visit)
  i = skip_space(s, i + 1)
  while byte(s, i) ~= 125 do
    local key
    key, i = read_key(s, i)
    if key == nil then
      return nil
    end
    i = skip_space(s, i)
    if byte(s, i) ~= 58 then
      return nil
    end
    i = visit(key, skip_space(s, i + 1))
    if i == nil then
      return nil
    end
    i = next_item(s, i, 125)
    if i == nil then
      return nil
    end
  end
  return i + 1
end

local function join(path, name)
  if path == "" then
    return name
  end
  return path .. "." .. name
end

local function violate(found, path, description)
  if #found < MAX_VIOLATIONS then
    found[#found + 1] = {path, description}
  end
end

local walk_value

-- Walks the object at i against `message`; `bound` names the keys the URL path gives.
local function walk_object(s, i, message, path, bound, found)
  local fields = MESSAGES[message]
  return each_member(s, i, function(key, at)
    local field = fields[key]
    if bound ~= nil and bound[key] ~= nil then
      violate(found, join(path, key), format("`%s` is given by the URL path, not the body", key))
    elseif field == nil then
      violate(found, join(path, key), format("unknown field `%s`: %s has no such field", key, message))
    else
      return walk_value(s, at, field, join(path, field[1]), found)
    end
    return skip_value(s, at)
  end)
end

-- Walks each element of the array at i as `message` (a repeated message field).
local function walk_array(s, i, message, path, found)
  i = skip_space(s, i + 1)
  local index = 0
  while byte(s, i) ~= 93 do
    if byte(s, i) == 123 then
      i = walk_object(s, i, message, format("%s[%d]", path, index), nil, found)
    else
      i = skip_value(s, i)
    end
    if i == nil then
      return nil
    end
    i = next_item(s, i, 93)
    if i == nil then
      return nil
    end
    index = index + 1
  end
  return i + 1
end

-- Walks a map's object: any key; message values are walked as their message.
local function walk_map(s, i, values, path, found)
  return each_member(s, i, function(key, at)
    if values ~= nil and byte(s, at) == 123 then
      return walk_object(s, at, values, format("%s[%q]", path, key), nil, found)
    end
    return skip_value(s, at)
  end)
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

-- A JSON string of `text`; bytes that are not UTF-8 (a key may hold any) become U+FFFD.
local function quote(text)
  if not valid_utf8(text) then
    text = text:gsub("[\128-\255]", "\239\191\189")
  end
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
