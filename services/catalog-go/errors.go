package main

import (
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// errorDomain is the ErrorInfo domain every shop service reports.
const errorDomain = "shop.example.com"

type fieldViolation struct{ field, description string }

// violations collects bad fields so a request reports every one at once.
type violations struct{ items []fieldViolation }

func (v *violations) check(ok bool, field, description string) {
	if !ok {
		v.add(field, description)
	}
}

func (v *violations) add(field, description string) {
	v.items = append(v.items, fieldViolation{field, description})
}

// err is INVALID_ARGUMENT with a BadRequest naming every field, or nil.
func (v *violations) err() error {
	if len(v.items) == 0 {
		return nil
	}
	names := make([]string, len(v.items))
	detail := &errdetails.BadRequest{}
	for i, item := range v.items {
		names[i] = item.field
		detail.FieldViolations = append(detail.FieldViolations,
			&errdetails.BadRequest_FieldViolation{Field: item.field, Description: item.description})
	}
	return withDetail(codes.InvalidArgument, "invalid request: "+strings.Join(names, ", "), detail)
}

func notFound(resource, id string) error {
	return withInfo(codes.NotFound, strings.ToUpper(resource)+"_NOT_FOUND",
		fmt.Sprintf("%s '%s' not found", resource, id))
}

func failedPrecondition(reason, message string) error {
	return withInfo(codes.FailedPrecondition, reason, message)
}

func withInfo(code codes.Code, reason, message string) error {
	return withDetail(code, message, &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
}

func withDetail(code codes.Code, message string, detail protoadapt.MessageV1) error {
	st, err := status.New(code, message).WithDetails(detail)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}
