// Package interop runs the language-neutral interop cases (tests/interop/*.json) with grpc-go.
package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// A Step is one call: a method by full name, a proto3 JSON request and what must come back.
type Step struct {
	Target     string            `json:"target"`
	Probe      bool              `json:"probe"`
	As         string            `json:"as"`
	Method     string            `json:"method"`
	Request    any               `json:"request"`
	DeadlineMs int               `json:"deadlineMs"`
	Expect     Expect            `json:"expect"`
	Save       map[string]string `json:"save"`
}

// Expect is the status, error details and messages a step must produce.
type Expect struct {
	Code            string   `json:"code"`
	Reason          *string  `json:"reason"`
	FieldViolations []string `json:"fieldViolations"`
	Response        any      `json:"response"`
	Stream          any      `json:"stream"`
}

// A Case is a named list of steps sharing saved values.
type Case struct {
	ID    string `json:"id"`
	Steps []Step `json:"steps"`
}

// LoadCases reads a case file.
func LoadCases(path string) ([]Case, error) {
	var file struct {
		Cases []Case `json:"cases"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return file.Cases, nil
}

var variable = regexp.MustCompile(`\$\{(\w+)\}`)

// substitute replaces every ${name} in the strings of a JSON value with its saved value.
func substitute(value any, variables map[string]string) (any, error) {
	switch v := value.(type) {
	case string:
		var missing error
		out := variable.ReplaceAllStringFunc(v, func(m string) string {
			name := m[2 : len(m)-1]
			saved, ok := variables[name]
			if !ok {
				missing = fmt.Errorf("${%s} was never saved", name)
			}
			return saved
		})
		return out, missing
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			s, err := substitute(item, variables)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for key, item := range v {
			s, err := substitute(item, variables)
			if err != nil {
				return nil, err
			}
			out[key] = s
		}
		return out, nil
	}
	return value, nil
}

// mismatch says where actual does not match expected (objects match a subset, {"$len": n} an
// array's length), or "" when it matches.
func mismatch(expected, actual any, path string) string {
	switch want := expected.(type) {
	case map[string]any:
		if n, ok := want["$len"]; ok && len(want) == 1 {
			got, isList := actual.([]any)
			if !isList || float64(len(got)) != n {
				return fmt.Sprintf("%s: expected %v items, got %v", path, n, actual)
			}
			return ""
		}
		got, ok := actual.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: expected an object, got %v", path, actual)
		}
		keys := make([]string, 0, len(want))
		for key := range want {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			item, present := got[key]
			if !present {
				return fmt.Sprintf("%s.%s: missing", path, key)
			}
			if found := mismatch(want[key], item, path+"."+key); found != "" {
				return found
			}
		}
		return ""
	case []any:
		got, ok := actual.([]any)
		if !ok || len(got) != len(want) {
			return fmt.Sprintf("%s: expected %d items, got %v", path, len(want), actual)
		}
		for i := range want {
			if found := mismatch(want[i], got[i], fmt.Sprintf("%s[%d]", path, i)); found != "" {
				return found
			}
		}
		return ""
	}
	if !reflect.DeepEqual(expected, actual) {
		return fmt.Sprintf("%s: expected %v, got %v", path, expected, actual)
	}
	return ""
}

// pick reads a dotted path ("order.orderId") from a JSON object as a string.
func pick(document any, dotted string) (string, error) {
	value := document
	for _, key := range strings.Split(dotted, ".") {
		object, ok := value.(map[string]any)
		if !ok {
			return "", fmt.Errorf("no %s in %v", dotted, document)
		}
		if value, ok = object[key]; !ok {
			return "", fmt.Errorf("no %s in %v", dotted, document)
		}
	}
	return fmt.Sprint(value), nil
}
