"""Client channels: a default deadline on every call, the incoming deadline and ids propagated,
and retries on UNAVAILABLE for idempotent reads through the gRPC service config."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grpc import aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from services.runtime import context


class _Propagation:
    """Bounds every call by the default timeout and by what is left of the incoming deadline,
    and passes the request id and caller on."""

    def __init__(self, default_timeout: float) -> None:
        self._default_timeout = default_timeout

    def _details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        timeout = details.timeout if details.timeout is not None else self._default_timeout
        remaining = context.remaining_seconds()
        if remaining is not None:
            timeout = max(0.0, min(timeout, remaining))
        metadata = aio.Metadata(*(details.metadata or ()))
        present = {key for key, _ in metadata}
        for key, value in context.propagated_metadata():
            if key not in present:
                metadata.add(key, value)
        return aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files each interceptor under one call kind only, so each kind needs its own class.
class UnaryPropagatingInterceptor(_Propagation, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class StreamPropagatingInterceptor(_Propagation, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def retry_service_config(read_methods: Sequence[str]) -> str:
    """Service config retrying the given `/package.Service/Method` paths on UNAVAILABLE."""
    names = []
    for path in read_methods:
        service, method = path.strip("/").split("/")
        names.append({"service": service, "method": method})
    policy = {
        "maxAttempts": 4,
        "initialBackoff": "0.05s",
        "maxBackoff": "0.5s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}] if names else []})


def open_channel(
    address: str,
    *,
    default_timeout: float,
    read_methods: Sequence[str] = (),
    telemetry: bool = True,
) -> aio.Channel:
    """An insecure channel to a peer (in the mesh, the local sidecar adds mTLS)."""
    interceptors: list[aio.ClientInterceptor] = [
        UnaryPropagatingInterceptor(default_timeout),
        StreamPropagatingInterceptor(default_timeout),
    ]
    if telemetry:
        interceptors = [*aio_client_interceptors(), *interceptors]
    options = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(read_methods)),
    ]
    return aio.insecure_channel(address, options=options, interceptors=interceptors)
