"""Server interceptors: request context, trace context, access logs and metrics, and
domain-error mapping, in one interceptor (each interceptor costs every call)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from opentelemetry import trace

from services.runtime import context
from services.runtime.errors import DomainError
from services.runtime.status import STATUS_DETAILS_KEY, rich_status
from services.runtime.telemetry import AccessLog, Metrics, ServerTracing

log = logging.getLogger("shop.access")

Behavior = Callable[[Any, aio.ServicerContext[Any, Any]], Any]
Wrapper = Callable[[Behavior, bool, str], Behavior]


def wrap_handler(handler: Any, method: str, wrapper: Wrapper) -> Any:
    """Return a copy of `handler` whose behavior is wrapped; streaming-response aware."""
    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrapper(handler.unary_unary, False, method),
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrapper(handler.unary_stream, True, method),
            handler.request_deserializer,
            handler.response_serializer,
        )
    return handler  # client streaming is not used by the shop's contracts


class RequestInterceptor(aio.ServerInterceptor):
    """Sets the request and trace context, maps domain errors to rich statuses, logs and counts
    each call."""

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        tracing: ServerTracing | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self._metrics = metrics
        self._tracing = tracing
        self._access_log = access_log
        # Registered handlers are the same object on every call, so wrap each once.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, wrap_handler(handler, method, self._wrap))
            self._wrapped[method] = cached
        return cached[1]

    def _wrap(self, behavior: Behavior, streaming: bool, method: str) -> Behavior:
        if streaming:

            async def stream(
                request: Any, ctx: aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                start, trace_token = self._begin(ctx, method)
                outcome = _Outcome()
                try:
                    responses = behavior(request, ctx)
                    if inspect.isawaitable(responses):
                        await responses  # a handler that streams with ctx.write (e.g. Health.Watch)
                    else:
                        async for response in responses:
                            yield response
                except BaseException as error:
                    await outcome.fail(ctx, error, method)
                finally:
                    self._finish(method, outcome.code, start, trace_token)

            return stream

        async def unary(request: Any, ctx: aio.ServicerContext[Any, Any]) -> Any:
            start, trace_token = self._begin(ctx, method)
            outcome = _Outcome()
            try:
                return await behavior(request, ctx)
            except BaseException as error:
                await outcome.fail(ctx, error, method)
            finally:
                self._finish(method, outcome.code, start, trace_token)

        return unary

    def _begin(self, ctx: aio.ServicerContext[Any, Any], method: str) -> tuple[float, Any]:
        metadata = dict(ctx.invocation_metadata() or ())
        # A correlation id, not a secret: random's bits need no system call, unlike uuid4's.
        request_id = metadata.get(context.REQUEST_ID_HEADER) or f"{random.getrandbits(128):032x}"
        context.request_id.set(str(request_id))
        caller = metadata.get(context.CALLER_HEADER)
        context.caller.set(str(caller) if caller else None)
        remaining = ctx.time_remaining()
        now = time.monotonic()
        context.deadline.set(None if remaining is None else now + remaining)
        trace_token = None if self._tracing is None else self._tracing.start(method, metadata)
        return now, trace_token

    def _finish(self, method: str, code: grpc.StatusCode, start: float, trace_token: Any) -> None:
        seconds = time.monotonic() - start
        if self._metrics is not None:
            self._metrics.observe(method, code.name, seconds)
        if log.isEnabledFor(logging.INFO):
            span = trace.get_current_span().get_span_context()
            trace_id = format(span.trace_id, "032x") if span.is_valid else ""
            request_id = context.request_id.get() or ""
            if self._access_log is not None:
                self._access_log.write(method, code.name, seconds, request_id, trace_id)
            else:
                log.info(
                    "rpc",
                    extra={
                        "rpc_method": method,
                        "grpc_code": code.name,
                        "duration_ms": round(seconds * 1000, 3),
                        "request_id": request_id,
                        "trace_id": trace_id,
                    },
                )
        if trace_token is not None:
            token, span = trace_token
            ServerTracing.finish(token, span, code.value[0], code.name)


class _Outcome:
    """The status a call ended with; `fail` turns an exception into the right abort."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK

    async def fail(
        self, ctx: aio.ServicerContext[Any, Any], error: BaseException, method: str
    ) -> None:
        if isinstance(error, DomainError):
            self.code, status = rich_status(error)
            metadata = ((STATUS_DETAILS_KEY, status.SerializeToString()),)
            await ctx.abort(self.code, status.message, metadata)
        if isinstance(error, aio.AbortError):
            # The servicer (or a nested interceptor) aborted with its own status.
            self.code = ctx.code() or grpc.StatusCode.UNKNOWN
            raise error
        if isinstance(error, asyncio.CancelledError):
            self.code = grpc.StatusCode.CANCELLED
            raise error
        if isinstance(error, Exception):
            log.exception("unhandled error in %s", method)
            self.code = grpc.StatusCode.INTERNAL
            await ctx.abort(self.code, "internal error")
        raise error
