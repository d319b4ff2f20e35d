"""The server interceptor: small single-purpose pieces (request context, trace context, access
log, metrics) run around every call of every shape, and one function maps errors to statuses.

They share one grpc.aio interceptor because each interceptor layer costs every call; the server
bootstrap (services/runtime/server.py) chooses the pieces and their order."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc
from grpc import aio
from opentelemetry import trace

from services.runtime import context
from services.runtime.errors import DomainError
from services.runtime.status import STATUS_DETAILS_KEY, rich_status
from services.runtime.telemetry import AccessLog, Metrics, ServerTracing

log = logging.getLogger("shop.access")

Context = aio.ServicerContext[Any, Any]
# A servicer method: (request or request iterator, context) -> response, response iterator, or
# a coroutine that answers with ctx.write.
Behavior = Callable[[Any, Context], Any]
Wrapper = Callable[[Behavior, bool, str], Behavior]

# The four RPC shapes: the handler attribute, its builder, and whether responses stream.
_SHAPES = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


def wrap_handler(handler: Any, method: str, wrapper: Wrapper) -> Any:
    """Return a copy of `handler` whose behavior is wrapped, whatever its shape. Requests pass
    through untouched, so one wrapper per response kind (single or streamed) covers all four."""
    if handler is None:
        return None
    for attribute, build, streaming in _SHAPES:
        behavior = getattr(handler, attribute)
        if behavior is not None:
            return build(
                wrapper(behavior, streaming, method),
                handler.request_deserializer,
                handler.response_serializer,
            )
    return handler


class Call:
    """One RPC as the pieces see it: its method and metadata, when it started, how it ended."""

    __slots__ = ("code", "metadata", "method", "seconds", "start", "trace_token")

    def __init__(self, method: str, metadata: dict[str, Any], start: float) -> None:
        self.method = method
        self.metadata = metadata
        self.start = start
        self.code = grpc.StatusCode.OK
        self.seconds = 0.0
        self.trace_token: tuple[object, trace.Span | None] | None = None


class Piece:
    """One job done around every call: `begin` before the servicer runs, in the order the pieces
    are installed; `end` once the status is known, in reverse order, as nested interceptors
    would. A piece overrides only the hooks it needs; the others are skipped."""

    def begin(self, call: Call, ctx: Context) -> None:
        """Nothing to do before the call."""

    def end(self, call: Call) -> None:
        """Nothing to do after the call."""


class RequestContext(Piece):
    """Sets the request id, the caller and the deadline for the servicer and its outgoing calls."""

    def begin(self, call: Call, ctx: Context) -> None:
        metadata = call.metadata
        # A correlation id, not a secret: random's bits need no system call, unlike uuid4's.
        request_id = metadata.get(context.REQUEST_ID_HEADER) or f"{random.getrandbits(128):032x}"
        context.request_id.set(str(request_id))
        caller = metadata.get(context.CALLER_HEADER)
        context.caller.set(str(caller) if caller else None)
        remaining = ctx.time_remaining()
        context.deadline.set(None if remaining is None else call.start + remaining)


class TraceContext(Piece):
    """Continues the caller's trace for the call (a SERVER span when spans are recorded)."""

    def __init__(self, tracing: ServerTracing) -> None:
        self._tracing = tracing

    def begin(self, call: Call, ctx: Context) -> None:
        call.trace_token = self._tracing.start(call.method, call.metadata)

    def end(self, call: Call) -> None:
        if call.trace_token is not None:
            token, span = call.trace_token
            ServerTracing.finish(token, span, call.code.value[0], call.code.name)


class AccessLogging(Piece):
    """One access-log line per call at INFO, with the trace id (install it inside the trace)."""

    def __init__(self, access_log: AccessLog) -> None:
        self._access_log = access_log

    def end(self, call: Call) -> None:
        if log.isEnabledFor(logging.INFO):
            span = trace.get_current_span().get_span_context()
            trace_id = format(span.trace_id, "032x") if span.is_valid else ""
            self._access_log.write(
                call.method, call.code.name, call.seconds, context.request_id.get(), trace_id
            )


class CallMetrics(Piece):
    """Counts each call by method and status code and observes its latency."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def end(self, call: Call) -> None:
        self._metrics.observe(call.method, call.code.name, call.seconds)


async def map_error(call: Call, ctx: Context, error: BaseException) -> NoReturn:
    """End the call with the status `error` stands for and record it in `call.code`: a domain
    error's code and `google.rpc.Status` details from the one table (services/runtime/status.py);
    INTERNAL, logged, for any other exception; an abort or a cancellation passes through."""
    if isinstance(error, DomainError):
        call.code, status = rich_status(error)
        metadata = ((STATUS_DETAILS_KEY, status.SerializeToString()),)
        await ctx.abort(call.code, status.message, metadata)
    if isinstance(error, aio.AbortError):
        # The servicer aborted with its own status.
        call.code = ctx.code() or grpc.StatusCode.UNKNOWN
    elif isinstance(error, asyncio.CancelledError):
        call.code = grpc.StatusCode.CANCELLED
    elif isinstance(error, Exception):
        log.exception("unhandled error in %s", call.method)
        call.code = grpc.StatusCode.INTERNAL
        await ctx.abort(call.code, "internal error")
    raise error


class RequestInterceptor(aio.ServerInterceptor):
    """Runs `pieces` around every call, unary or streaming in either direction, and maps the
    errors a servicer raises to statuses (`map_error`) before the pieces see the outcome."""

    def __init__(self, pieces: Sequence[Piece]) -> None:
        # Every call pays for each hook, so keep only those a piece overrides.
        self._begins = tuple(p.begin for p in pieces if type(p).begin is not Piece.begin)
        self._ends = tuple(p.end for p in reversed(pieces) if type(p).end is not Piece.end)
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

    def _begin(self, method: str, ctx: Context) -> Call:
        call = Call(method, dict(ctx.invocation_metadata() or ()), time.monotonic())
        for begin in self._begins:
            begin(call, ctx)
        return call

    def _end(self, call: Call) -> None:
        call.seconds = time.monotonic() - call.start
        for end in self._ends:
            end(call)

    def _wrap(self, behavior: Behavior, streaming: bool, method: str) -> Behavior:
        if streaming:

            async def stream(request: Any, ctx: Context) -> AsyncIterator[Any]:
                call = self._begin(method, ctx)
                try:
                    responses = behavior(request, ctx)
                    if inspect.isawaitable(responses):
                        await responses  # a handler that streams with ctx.write (e.g. Health.Watch)
                    else:
                        async for response in responses:
                            yield response
                except BaseException as error:
                    await map_error(call, ctx, error)
                finally:
                    self._end(call)

            return stream

        async def single(request: Any, ctx: Context) -> Any:
            call = self._begin(method, ctx)
            try:
                return await behavior(request, ctx)
            except BaseException as error:
                await map_error(call, ctx, error)
            finally:
                self._end(call)

        return single
