"""Render the gateway's Envoy bootstrap (v3, JSON) from the contracts and the settings.

Filters: cors -> jwt_authn -> rbac (the token names a user) -> local_ratelimit -> header_mutation
-> lua (unknown body fields: gateway/body_fields.py) -> grpc_json_transcoder -> router. Routes are
generated from the `google.api.http` bindings; nothing about a route is written by hand.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contracts.descriptors import Binding, Contracts
from gateway import auth, body_fields, openapi, policy
from gateway.settings import RateLimit, Settings
from runner import envoy_tracing

JSON = dict[str, Any]
TYPES = "type.googleapis.com/envoy."
CORS = "envoy.filters.http.cors"
JWT = "envoy.filters.http.jwt_authn"
RATE_LIMIT = "envoy.filters.http.local_ratelimit"
RBAC = "envoy.filters.http.rbac"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
HEADER_MUTATION = "envoy.filters.http.header_mutation"
PROVIDER = "shop"
REQUIREMENT = "token"
# Streams per upstream HTTP/2 connection (see `_cluster`).
STREAMS_PER_CONNECTION = 4
UNARY_TIMEOUT = "15s"
SERVICE = "gateway"  # service.name of the gateway's spans
BODY = "%LOCAL_REPLY_BODY%"
GRPC_RESPONSE_HEADERS = ("grpc-status", "grpc-message", "grpc-accept-encoding", "grpc-encoding")


def bootstrap(settings: Settings, contracts: Contracts) -> JSON:
    """The complete Envoy bootstrap."""
    document = json.dumps(openapi.document(contracts), separators=(",", ":"))
    clusters = [
        _cluster(context, settings.upstream(context))
        for context in sorted({b.context for b in contracts.bindings})
    ]
    if settings.tracing is not None:
        clusters.append(settings.tracing.cluster())
    return {
        "admin": {"address": _socket("127.0.0.1", settings.admin_port)},
        "layered_runtime": envoy_tracing.RUNTIME,
        "static_resources": {
            "listeners": [_listener(settings, contracts, document)],
            "clusters": clusters,
        },
    }


def write(settings: Settings, contracts: Contracts, output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(bootstrap(settings, contracts), indent=1) + "\n")
    return output


def path_regex(template: str) -> str:
    """An anchored RE2 for a google.api.http URL template (variables, `*`, `**`, `:verb`)."""
    verb = ""
    last = template.rsplit("/", 1)[-1]
    if ":" in last.rsplit("}", 1)[-1]:
        cut = template.rindex(":")
        template, verb = template[:cut], template[cut:]
    parts = []
    for piece in re.split(r"(\{[^}]*\})", template):
        if piece.startswith("{"):
            _, _, pattern = piece[1:-1].partition("=")
            parts.append(_segments(pattern or "*"))
        else:
            parts.append(_segments(piece))
    return "^" + "".join(parts) + re.escape(verb) + "$"


def _segments(text: str) -> str:
    wildcard = {"*": "[^/]+", "**": ".*"}
    return "/".join(wildcard.get(s, re.escape(s)) for s in text.split("/"))


def _socket(address: str, port: int) -> JSON:
    return {"socket_address": {"address": address, "port_value": port}}


def _typed(kind: str, **fields: Any) -> JSON:
    return {"@type": TYPES + kind, **fields}


def _listener(settings: Settings, contracts: Contracts, document: str) -> JSON:
    manager = _typed(
        "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="gateway",
        codec_type="AUTO",
        use_remote_address=True,
        preserve_external_request_id=True,
        always_set_request_id_in_response=True,
        normalize_path=True,
        merge_slashes=True,
        path_with_escaped_slashes_action="REJECT_REQUEST",
        route_config=_route_config(settings, contracts, document),
        http_filters=_filters(settings, contracts),
        local_reply_config={"mappers": _local_reply_mappers(_allowed_methods(contracts))},
        **({} if settings.tracing is None else {"tracing": settings.tracing.http_tracing(SERVICE)}),
    )
    return {
        "name": "gateway",
        "address": _socket(settings.host, settings.port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _filters(settings: Settings, contracts: Contracts) -> list[JSON]:
    jwks = auth.read_jwks(settings.jwks_file)
    return [
        {"name": CORS, "typed_config": _typed("extensions.filters.http.cors.v3.Cors")},
        {
            "name": JWT,
            "typed_config": _typed(
                "extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                providers={
                    PROVIDER: {
                        "issuer": settings.jwt_issuer,
                        "audiences": [settings.jwt_audience],
                        "local_jwks": {"inline_string": jwks},
                        # Keep `authorization` for the services: it is a forwarded header.
                        "forward": True,
                        "claim_to_headers": [
                            {"header_name": policy.CALLER_HEADER, "claim_name": "sub"}
                        ],
                    }
                },
                requirement_map={REQUIREMENT: {"provider_name": PROVIDER}},
                bypass_cors_preflight=True,
            ),
        },
        {
            "name": RBAC,
            # No rules here (allow): protected routes carry the token-subject rule.
            "typed_config": _typed("extensions.filters.http.rbac.v3.RBAC"),
        },
        {
            "name": RATE_LIMIT,
            # No bucket here: each route carries its group's bucket.
            "typed_config": _typed(
                "extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                stat_prefix="gateway_rate_limit",
            ),
        },
        {
            "name": HEADER_MUTATION,
            "typed_config": _typed(
                "extensions.filters.http.header_mutation.v3.HeaderMutation", mutations={}
            ),
        },
        body_fields.http_filter(
            contracts,
            {_route_name(b): b for b in policy.served(contracts.bindings)},
        ),
        {
            "name": TRANSCODER,
            "typed_config": _typed(
                "extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
                proto_descriptor_bin=base64.b64encode(contracts.serialized()).decode(),
                services=list(contracts.services),
                match_incoming_request_route=True,
                auto_mapping=False,
                convert_grpc_status=True,
                request_validation_options={
                    "reject_unknown_method": True,
                    "reject_unknown_query_parameters": True,
                    "reject_binding_body_field_collisions": True,
                },
                print_options={
                    "add_whitespace": False,
                    "always_print_primitive_fields": True,
                    "always_print_enums_as_ints": False,
                    "preserve_proto_field_names": False,
                    # WatchOrder streams one JSON object per line, flushed per message.
                    "stream_newline_delimited": True,
                },
            ),
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("extensions.filters.http.router.v3.Router"),
        },
    ]


def _route_config(settings: Settings, contracts: Contracts, document: str) -> JSON:
    return {
        "name": "gateway",
        "max_direct_response_body_size_bytes": len(document.encode()) + 1024,
        "virtual_hosts": [
            {
                "name": "shop",
                "domains": ["*"],
                "routes": [
                    *_plain_routes(document),
                    *_rest_routes(settings, contracts),
                    *_grpc_routes(settings, policy.served(contracts.bindings)),
                ],
                "typed_per_filter_config": {CORS: _cors_policy(settings)},
            }
        ],
    }


def _header(key: str, value: str) -> JSON:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


# Routes Envoy answers itself: the transcoder would reject them as unknown methods, and a token
# is not needed to learn that a method is not allowed.
NOT_GRPC = {
    TRANSCODER: _typed("config.route.v3.FilterConfig", disabled=True),
    JWT: _typed("extensions.filters.http.jwt_authn.v3.PerRouteConfig", disabled=True),
}


def _plain_routes(document: str) -> list[JSON]:
    def direct(name: str, path: str, status: int, body: str) -> JSON:
        return {
            "name": name,
            "match": {"path": path, "headers": [_method("GET")]},
            "direct_response": {"status": status, "body": {"inline_string": body}},
            "response_headers_to_add": [_header("content-type", "application/json")],
            "typed_per_filter_config": NOT_GRPC,
        }

    return [
        direct("healthz", "/healthz", 200, '{"status":"SERVING"}'),
        _method_not_allowed("/healthz", ["GET"]),
        direct("openapi", "/openapi.json", 200, document),
        _method_not_allowed("/openapi.json", ["GET"]),
    ]


def _route_name(binding: Binding) -> str:
    return f"{binding.full_method}:{binding.verb}:{binding.path}"


def _rest_routes(settings: Settings, contracts: Contracts) -> list[JSON]:
    # Custom verbs first, then longer literal prefixes: `/orders/{id}:watch` must not be taken
    # by `/orders/{id}`, just as the transcoder resolves them.
    ordered = sorted(
        policy.served(contracts.bindings),
        key=lambda b: (
            ":" not in b.path.rsplit("}", 1)[-1],
            -len(re.sub(r"\{[^}]*\}", "", b.path)),
        ),
    )
    by_path: dict[str, list[Binding]] = {}
    for b in ordered:
        by_path.setdefault(b.path, []).append(b)
    routes = []
    for path, group in by_path.items():
        routes += [
            {
                "name": _route_name(b),
                "match": {
                    "safe_regex": {"regex": path_regex(b.path)},
                    # OPTIONS too: the CORS filter answers preflights only on routes with a cluster.
                    "headers": [_method(b.verb.upper(), "OPTIONS")],
                },
                # The span's name: the route as written, not the path with its ids.
                "decorator": {"operation": f"{b.verb.upper()} {b.path}"},
                **_upstream(
                    settings,
                    b,
                    rest=True,
                    body_check=body_fields.per_route(contracts, b, _route_name(b)),
                ),
            }
            for b in group
        ]
        routes.append(_method_not_allowed(path, sorted({b.verb.upper() for b in group})))
    return routes


def _method_not_allowed(path: str, verbs: list[str]) -> JSON:
    """Any other method on a known path: 405 with `Allow` (right after that path's routes, so
    that `GET /orders/{id}:cancel` is not taken for `GET /orders/{id}`)."""
    allowed = ", ".join(verbs)
    return {
        "name": f"405:{path}",
        "match": {"safe_regex": {"regex": path_regex(path)}},
        "direct_response": {
            "status": 405,
            "body": {"inline_string": f"{path} allows only {allowed}"},
        },
        "response_headers_to_add": [_header("allow", allowed)],
        "typed_per_filter_config": NOT_GRPC,
    }


def _grpc_routes(settings: Settings, bindings: Iterable[Binding]) -> list[JSON]:
    """Native gRPC through the gateway, only for methods with a binding, under the same policy."""
    first: dict[str, Binding] = {}
    for b in bindings:
        first.setdefault(b.full_method, b)
    return [
        {
            "name": b.full_method,
            "match": {"path": b.grpc_path, "grpc": {}},
            "decorator": {"operation": b.grpc_path},
            **_upstream(settings, b),
        }
        for b in first.values()
    ]


def _upstream(
    settings: Settings, binding: Binding, rest: bool = False, body_check: JSON | None = None
) -> JSON:
    group = policy.route_group(binding)
    route: JSON = {
        "route": {
            "cluster": binding.context,
            # A stream lasts as long as the order is live; unary calls get a deadline.
            "timeout": "0s" if binding.server_streaming else UNARY_TIMEOUT,
        },
        "typed_per_filter_config": {
            JWT: _typed(
                "extensions.filters.http.jwt_authn.v3.PerRouteConfig",
                **(
                    {"disabled": True}
                    if policy.is_public(binding)
                    else {"requirement_name": REQUIREMENT}
                ),
            ),
            RATE_LIMIT: _bucket(group, settings.rate_limits[group]),
        },
    }
    if not policy.is_public(binding):
        route["typed_per_filter_config"][RBAC] = _subject_required()
    if rest:
        # gRPC framing headers mean nothing to a REST client. Removed by a filter that runs
        # after the transcoder on the way out: route-level removal would hide grpc-status
        # from the transcoder itself.
        route["typed_per_filter_config"][HEADER_MUTATION] = _typed(
            "extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
            mutations={"response_mutations": [{"remove": h} for h in GRPC_RESPONSE_HEADERS]},
        )
    if body_check is not None:
        # Unknown JSON body fields are refused before the transcoder drops them.
        route["typed_per_filter_config"][body_fields.LUA] = body_check
    if policy.is_public(binding):
        # jwt_authn strips forged identities only where it runs.
        route["request_headers_to_remove"] = [policy.CALLER_HEADER]
    return route


def _subject_required() -> JSON:
    """A valid token must name its user: without `sub` no caller header reaches the services,
    and they would take the call for a trusted in-mesh one."""
    return _typed(
        "extensions.filters.http.rbac.v3.RBACPerRoute",
        rbac={
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "token-names-a-user": {
                        "permissions": [{"any": True}],
                        "principals": [
                            {
                                "header": {
                                    "name": policy.CALLER_HEADER,
                                    "string_match": {"safe_regex": {"regex": ".+"}},
                                }
                            }
                        ],
                    }
                },
            }
        },
    )


def _bucket(group: str, limit: RateLimit) -> JSON:
    always = {
        "default_value": {"numerator": 100, "denominator": "HUNDRED"},
        "runtime_key": f"gateway.rate_limit.{group}",
    }
    return _typed(
        "extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix=f"rate_limit_{group}",
        token_bucket={
            "max_tokens": limit.requests,
            "tokens_per_fill": limit.requests,
            "fill_interval": f"{limit.seconds}s",
        },
        filter_enabled=always,
        filter_enforced=always,
        response_headers_to_add=[
            {
                "header": {"key": "retry-after", "value": str(limit.seconds)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    )


def _cors_policy(settings: Settings) -> JSON:
    return _typed(
        "extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": origin} for origin in settings.cors_origins],
        allow_methods="GET, POST, PUT, PATCH, DELETE",
        allow_headers=", ".join(("content-type", *policy.FORWARDED_HEADERS)),
        expose_headers="x-request-id, retry-after",
        max_age="600",
        forward_not_matching_preflights=False,
    )


def _allowed_methods(contracts: Contracts) -> dict[str, list[str]]:
    """Each path the gateway serves and its methods, as the 405 routes' `Allow` names them."""
    allowed: dict[str, set[str]] = {"/healthz": {"GET"}, "/openapi.json": {"GET"}}
    for b in policy.served(contracts.bindings):
        allowed.setdefault(b.path, set()).add(b.verb.upper())
    return {path: sorted(verbs) for path, verbs in allowed.items()}


def _local_reply_mappers(allowed: dict[str, list[str]]) -> list[JSON]:
    """google.rpc.Status bodies for Envoy's own replies; the first matching mapper wins."""

    def status_filter(op: str, status: int) -> JSON:
        return {
            "status_code_filter": {
                "comparison": {
                    "op": op,
                    "value": {
                        "default_value": status,
                        "runtime_key": f"gateway.local_reply.{op.lower()}{status}",
                    },
                }
            }
        }

    def body(code: int, message: str) -> JSON:
        return {"json_format": {"code": code, "message": message, "details": []}}

    def cel(expression: str) -> JSON:
        return {
            "extension_filter": {
                "name": "envoy.access_loggers.extension_filters.cel",
                "typed_config": _typed(
                    "extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                    expression=expression,
                ),
            }
        }

    def explained(details: str, status: int, message: str) -> JSON:
        # Rejections made before routing (the codec, path normalization) carry no body, only
        # their response code details: name what was wrong instead.
        return {
            "filter": cel(f"response.code_details == '{details}'"),
            "status_code": status,
            "body_format_override": body(policy.LOCAL_REPLY_CODES[status], message),
        }

    def query_not_allowed(path: str, verbs: list[str]) -> JSON:
        # Envoy refuses a QUERY without a content-type before routing, so the 405 routes never
        # see it: on a known path it gets their answer.
        methods = ", ".join(verbs)
        return {
            "filter": cel(
                "response.code_details == 'query_missing_content_type'"
                f" && request.url_path.matches(r'{path_regex(path)}')"
            ),
            "status_code": 405,
            "headers_to_add": [_header("allow", methods)],
            "body_format_override": body(
                policy.LOCAL_REPLY_CODES[405],
                f"method QUERY not allowed: {path} allows only {methods}",
            ),
        }

    return [
        {
            # body_fields.lua's 400 is already a google.rpc.Status: keep it as it is.
            "filter": cel("response.code_details == 'lua_response'"),
            "body_format_override": {
                "text_format_source": {"inline_string": BODY},
                "content_type": "application/json",
            },
        },
        *(query_not_allowed(path, verbs) for path, verbs in allowed.items()),
        *(
            explained(details, status, message)
            for details, (status, message) in policy.LOCAL_REPLY_EXPLANATIONS.items()
        ),
        {
            "filter": status_filter("EQ", 405),
            "body_format_override": body(
                policy.LOCAL_REPLY_CODES[405],
                "method %REQ(:METHOD)% not allowed: %LOCAL_REPLY_BODY%",
            ),
        },
        *(
            {"filter": status_filter("EQ", status), "body_format_override": body(code, BODY)}
            for status, code in policy.LOCAL_REPLY_CODES.items()
        ),
        {
            "filter": status_filter("GE", 400),
            "body_format_override": body(policy.UNKNOWN_CODE, BODY),
        },
    ]


def _method(*verbs: str) -> JSON:
    return {"name": ":method", "string_match": {"safe_regex": {"regex": f"^({'|'.join(verbs)})$"}}}


def _cluster(name: str, address: str) -> JSON:
    host, _, port = address.rpartition(":")
    return {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "dns_lookup_family": "V4_PREFERRED",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "extensions.upstreams.http.v3.HttpProtocolOptions",
                # A few connections, not one: the upstream may be several worker processes
                # sharing a port, and the kernel hands each connection to one of them.
                explicit_http_config={
                    "http2_protocol_options": {"max_concurrent_streams": STREAMS_PER_CONNECTION}
                },
            )
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket(host.strip("[]"), int(port))}}]}
            ],
        },
    }
