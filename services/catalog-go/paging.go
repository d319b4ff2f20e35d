package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// Page sizes as in services/runtime/paging.py.
const (
	defaultPageSize = 20
	maxPageSize     = 100
)

type page struct{ size, offset int }

// pageRequest validates a page size and token, recording violations instead of failing.
func pageRequest(pageSize int32, pageToken string, v *violations) page {
	v.check(pageSize >= 0, "page_size", "must not be negative")
	v.check(pageSize <= maxPageSize, "page_size", fmt.Sprintf("must be at most %d", maxPageSize))
	offset := 0
	if pageToken != "" {
		decoded, ok := decodeToken(pageToken)
		v.check(ok, "page_token", "is malformed; pass next_page_token")
		offset = decoded
	}
	size := int(pageSize)
	if size == 0 {
		size = defaultPageSize
	}
	return page{size: max(1, min(size, maxPageSize)), offset: offset}
}

// encodeToken writes the offset exactly as the Python catalog does, so that a client can page
// through versions of the catalog that serve it in turn (the canary).
func encodeToken(offset int) string {
	return base64.URLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"o": %d}`, offset)))
}

func decodeToken(token string) (int, bool) {
	raw, err := base64.URLEncoding.DecodeString(token)
	if err != nil {
		return 0, false
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	var value map[string]any
	if decoder.Decode(&value) != nil {
		return 0, false
	}
	number, ok := value["o"].(json.Number)
	if !ok {
		return 0, false
	}
	offset, err := strconv.Atoi(number.String())
	return offset, err == nil && offset >= 0
}
