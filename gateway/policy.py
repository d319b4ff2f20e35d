"""Edge policy in one place: which methods are public, route groups, forwarded headers, statuses.

The Envoy config and the OpenAPI document both read these tables, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from contracts.descriptors import Binding
from services.runtime.context import CALLER_HEADER, REQUEST_ID_HEADER

# Methods anyone may call without a token. Every other bound method needs one: a new RPC is
# private until it is listed here.
PUBLIC_METHODS = frozenset(
    {
        "shop.catalog.v1.CatalogService.ListProducts",
        "shop.catalog.v1.CatalogService.GetProduct",
        "shop.users.v1.UserService.CreateUser",
    }
)

# Methods whose binding the gateway does not serve (REST or native gRPC) and the OpenAPI document
# leaves out: in-mesh calls that would hand one user other users' data. The binding stays in the
# contract (removing it is a breaking change); the service refuses end users too.
IN_MESH_METHODS = frozenset({"shop.users.v1.UserService.ListUsers"})

# Request headers that reach the services as gRPC metadata (browsers may send them too).
FORWARDED_HEADERS = ("authorization", REQUEST_ID_HEADER, "traceparent", "tracestate")
# CALLER_HEADER is set only by the gateway from a verified token's `sub`; a client's own copy is
# dropped. The services read it (services/runtime/context.py) to enforce ownership.
__all__ = [
    "CALLER_HEADER",
    "FORWARDED_HEADERS",
    "IN_MESH_METHODS",
    "LOCAL_REPLY_CODES",
    "PUBLIC_METHODS",
]

# gRPC code (google.rpc.Code) for each HTTP status the gateway answers by itself, so every
# error body is a google.rpc.Status whether it came from a service or from Envoy.
LOCAL_REPLY_CODES = {
    http: code.value[0]
    for http, code in {
        400: grpc.StatusCode.INVALID_ARGUMENT,  # unknown query parameter, bad JSON
        401: grpc.StatusCode.UNAUTHENTICATED,  # missing or bad token
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,  # no such route
        405: grpc.StatusCode.UNIMPLEMENTED,  # the path exists, the method does not (grpc-gateway)
        413: grpc.StatusCode.INVALID_ARGUMENT,  # body too large
        429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # rate limited
        502: grpc.StatusCode.UNAVAILABLE,
        503: grpc.StatusCode.UNAVAILABLE,  # service down
        504: grpc.StatusCode.DEADLINE_EXCEEDED,
    }.items()
}
UNKNOWN_CODE = grpc.StatusCode.UNKNOWN.value[0]

# Envoy's own rejections that come with an empty body, by response code details: the status to
# answer and what to tell the client.
LOCAL_REPLY_EXPLANATIONS = {
    "path_normalization_failed": (
        400,
        "the path cannot be routed: it contains an encoded slash, backslash or NUL"
        " (%%2F, %%5C, %%00) or does not normalize",
    ),
    # The route's RBAC rule (render._subject_required) found no caller header: the token is
    # valid but names no user.
    "rbac_access_denied_matched_policy[none]": (
        401,
        "the bearer token names no user (its `sub` claim is missing or empty)",
    ),
    "query_missing_content_type": (
        400,
        "the QUERY method needs a content-type; this API has no QUERY routes (use GET)",
    ),
}


def served(bindings: Iterable[Binding]) -> tuple[Binding, ...]:
    """The bindings the gateway routes and documents."""
    return tuple(b for b in bindings if b.full_method not in IN_MESH_METHODS)


def is_public(binding: Binding) -> bool:
    return binding.full_method in PUBLIC_METHODS


def route_group(binding: Binding) -> str:
    """The rate-limit group of a binding: `public`, `read` or `write`."""
    if is_public(binding):
        return "public"
    return "read" if binding.verb == "get" else "write"
