package interop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health/grpc_health_v1" // registers grpc.health.v1
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "example.com/shopmesh/gen/go/shop/catalog/v1" // each import registers its messages
	_ "example.com/shopmesh/gen/go/shop/orders/v1"
	_ "example.com/shopmesh/gen/go/shop/orders/v2"
	_ "example.com/shopmesh/gen/go/shop/users/v1"
)

// Identity is how a run connects: {} plaintext, {ca} TLS with no client certificate,
// {ca, cert, key} mTLS as a workload.
type Identity struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Target is one workload: its gRPC address (a sidecar in the mesh) and its app port for probes.
type Target struct {
	Address    string `json:"address"`
	Probe      string `json:"probe"`
	ServerName string `json:"serverName"`
}

// Targets is the targets file: where each workload is and who the run calls as.
type Targets struct {
	Targets    map[string]Target   `json:"targets"`
	Identities map[string]Identity `json:"identities"`
	Identity   string              `json:"identity"`
}

// LoadTargets reads a targets file.
func LoadTargets(path string) (*Targets, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var targets Targets
	if err := json.Unmarshal(data, &targets); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &targets, nil
}

// Credentials are the transport credentials for an identity.
func (id Identity) Credentials(serverName string) (credentials.TransportCredentials, error) {
	if id.CA == "" {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(id.CA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", id.CA)
	}
	config := &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if id.Cert != "" {
		pair, err := tls.LoadX509KeyPair(id.Cert, id.Key)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(config), nil
}

// Outcome is what a call returned: its status, its messages as proto3 JSON, its error details.
type Outcome struct {
	Code            string
	Messages        []any
	Reason          string
	FieldViolations []string
}

// Runner calls methods by name with the generated message types, over cached connections.
type Runner struct {
	targets *Targets
	conns   map[string]*grpc.ClientConn
}

// NewRunner makes a runner for a targets file.
func NewRunner(targets *Targets) *Runner {
	return &Runner{targets: targets, conns: map[string]*grpc.ClientConn{}}
}

// Close closes every connection.
func (r *Runner) Close() {
	for _, conn := range r.conns {
		_ = conn.Close()
	}
}

func (r *Runner) conn(step Step) (*grpc.ClientConn, error) {
	target, ok := r.targets.Targets[step.Target]
	if !ok {
		return nil, fmt.Errorf("the targets file has no target %q", step.Target)
	}
	address, name := target.Address, r.targets.Identity
	if step.As != "" {
		name = step.As
	}
	if step.Probe {
		address, name = target.Probe, "plaintext"
	}
	identity, ok := r.targets.Identities[name]
	if !ok && !step.Probe {
		return nil, fmt.Errorf("the targets file has no identity %q", name)
	}
	key := address + " " + name
	if conn, ok := r.conns[key]; ok {
		return conn, nil
	}
	creds, err := identity.Credentials(target.ServerName)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	r.conns[key] = conn
	return conn, nil
}

func lookup(method string) (protoreflect.MethodDescriptor, error) {
	service, name, _ := strings.Cut(method, "/")
	found, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil, err
	}
	descriptor, ok := found.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", service)
	}
	m := descriptor.Methods().ByName(protoreflect.Name(name))
	if m == nil {
		return nil, fmt.Errorf("no method %s", method)
	}
	return m, nil
}

func newMessage(name protoreflect.FullName) (proto.Message, error) {
	kind, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		return nil, err
	}
	return kind.New().Interface(), nil
}

func asJSON(message proto.Message) (any, error) {
	data, err := protojson.Marshal(message)
	if err != nil {
		return nil, err
	}
	var value any
	return value, json.Unmarshal(data, &value)
}

// Call makes one step's call and reports what came back.
func (r *Runner) Call(step Step) (*Outcome, error) {
	method, err := lookup(step.Method)
	if err != nil {
		return nil, err
	}
	request, err := newMessage(method.Input().FullName())
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(step.Request)
	if err != nil {
		return nil, err
	}
	if err := protojson.Unmarshal(data, request); err != nil {
		return nil, err
	}
	conn, err := r.conn(step)
	if err != nil {
		return nil, err
	}
	deadline := 30 * time.Second
	if step.DeadlineMs > 0 {
		deadline = time.Duration(step.DeadlineMs) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	outcome := &Outcome{Code: "OK"}
	receive := func() (proto.Message, error) { return newMessage(method.Output().FullName()) }
	path := "/" + step.Method
	var callErr error
	if method.IsStreamingServer() {
		stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, path)
		if err == nil {
			err = stream.SendMsg(request)
		}
		if err == nil {
			err = stream.CloseSend()
		}
		for err == nil {
			reply, _ := receive()
			if err = stream.RecvMsg(reply); err == nil {
				value, jsonErr := asJSON(reply)
				if jsonErr != nil {
					return nil, jsonErr
				}
				outcome.Messages = append(outcome.Messages, value)
			}
		}
		if !errors.Is(err, io.EOF) {
			callErr = err
		}
	} else {
		reply, _ := receive()
		if callErr = conn.Invoke(ctx, path, request, reply); callErr == nil {
			value, err := asJSON(reply)
			if err != nil {
				return nil, err
			}
			outcome.Messages = append(outcome.Messages, value)
		}
	}
	if callErr != nil {
		decode(callErr, outcome)
	}
	return outcome, nil
}

// decode takes the code, BadRequest field names and ErrorInfo reason from a call's error.
func decode(err error, outcome *Outcome) {
	st := status.Convert(err)
	outcome.Code = codeNames[st.Code()]
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				outcome.FieldViolations = append(outcome.FieldViolations, v.GetField())
			}
		case *errdetails.ErrorInfo:
			outcome.Reason = d.GetReason()
		}
	}
}

// The canonical names of the status codes, as the case files and the other runners spell them.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

func check(step Step, outcome *Outcome) error {
	want := step.Expect
	code := want.Code
	if code == "" {
		code = "OK"
	}
	if outcome.Code != code {
		return fmt.Errorf("%s: expected %s, got %+v", step.Method, code, *outcome)
	}
	if want.Reason != nil && outcome.Reason != *want.Reason {
		return fmt.Errorf("%s: expected reason %s, got %+v", step.Method, *want.Reason, *outcome)
	}
	if want.FieldViolations != nil {
		got, expected := slices.Sorted(slices.Values(outcome.FieldViolations)), slices.Sorted(slices.Values(want.FieldViolations))
		if !slices.Equal(got, expected) {
			return fmt.Errorf("%s: expected %v, got %+v", step.Method, expected, *outcome)
		}
	}
	if want.Response != nil {
		var first any
		if len(outcome.Messages) > 0 {
			first = outcome.Messages[0]
		}
		if found := mismatch(want.Response, first, "$"); found != "" {
			return fmt.Errorf("%s: %s", step.Method, found)
		}
	}
	if want.Stream != nil {
		if found := mismatch(want.Stream, anyList(outcome.Messages), "$"); found != "" {
			return fmt.Errorf("%s: %s", step.Method, found)
		}
	}
	return nil
}

func anyList(messages []any) []any {
	if messages == nil {
		return []any{}
	}
	return messages
}

// RunCase runs a case's steps in order; the first failure ends it.
func (r *Runner) RunCase(c Case, run string) error {
	variables := map[string]string{"run": run}
	for _, original := range c.Steps {
		step := original
		request, err := substitute(step.Request, variables)
		if err != nil {
			return err
		}
		step.Request = request
		if step.Request == nil {
			step.Request = map[string]any{}
		}
		if step.Expect.Response, err = substitute(step.Expect.Response, variables); err != nil {
			return err
		}
		if step.Expect.Stream, err = substitute(step.Expect.Stream, variables); err != nil {
			return err
		}
		outcome, err := r.Call(step)
		if err != nil {
			return fmt.Errorf("%s: %w", step.Method, err)
		}
		if err := check(step, outcome); err != nil {
			return err
		}
		for name, dotted := range step.Save {
			var first any
			if len(outcome.Messages) > 0 {
				first = outcome.Messages[0]
			}
			if variables[name], err = pick(first, dotted); err != nil {
				return err
			}
		}
	}
	return nil
}
