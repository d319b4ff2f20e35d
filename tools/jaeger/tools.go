//go:build tools

// Package tools keeps the Jaeger command in this module's requirements.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
