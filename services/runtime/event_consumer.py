"""The consumer side of `shop.events.v1.EventStreamService`: subscribe from the last applied
offset, hand each event to a handler, ack, and resubscribe after any break, forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from grpc import aio
from opentelemetry import propagate, trace

from shop.events.v1 import events_pb2, events_pb2_grpc

log = logging.getLogger("shop.events")
tracer = trace.get_tracer("shop.events")

# A subscription is open-ended, so it gets no deadline; keepalives notice a vanished producer.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Resubscribe soon after a producer restarts, not after gRPC's default backoff (up to 2 min).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class EventHandler(Protocol):
    async def offset(self, source: str) -> int:
        """The offset of the last event from `source` this consumer has applied."""

    async def apply(self, source: str, event: events_pb2.Event) -> None:
        """Apply `event` and record its offset, atomically; a repeated event id changes only
        the offset. Never raises for a bad event: it is set aside instead."""


async def consume(
    address: str,
    source: str,
    consumer: str,
    handler: EventHandler,
    *,
    retry_seconds: float = 0.5,
    subjects: tuple[str, ...] = (),
) -> None:
    """Apply `source`'s events at `address` to `handler` until cancelled."""
    async with aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = events_pb2_grpc.EventStreamServiceStub(channel)
        while True:
            try:
                await _follow(stub, source, consumer, handler, subjects)
            except aio.AioRpcError as error:
                log.info(
                    "event stream broke; resubscribing",
                    extra={"source": source, "code": error.code().name},
                )
            await asyncio.sleep(retry_seconds)


async def apply_traced(handler: EventHandler, source: str, event: events_pb2.Event) -> None:
    """Apply `event` in a span that continues the trace of the call that caused it."""
    with tracer.start_as_current_span(
        f"apply {event.subject}",
        context=propagate.extract(dict(event.headers)),
        kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.message.id": event.event_id, "messaging.source": source},
    ):
        await handler.apply(source, event)


class _Acks:
    """Reports progress to the producer in the background, at most one Ack in flight and
    always the newest offset, so a busy producer never slows the applying of events. Acks are
    informational: the consumer's own committed offset is what it resumes from."""

    def __init__(self, stub: events_pb2_grpc.EventStreamServiceAsyncStub, consumer: str) -> None:
        self._stub = stub
        self._consumer = consumer
        self._applied = 0
        self._acked = 0
        self._task: asyncio.Task[None] | None = None

    def advance(self, offset: int) -> None:
        self._applied = offset
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._acked < self._applied:
            offset = self._applied
            try:
                await self._stub.Ack(
                    events_pb2.AckRequest(consumer=self._consumer, offset=offset), timeout=5
                )
            except aio.AioRpcError:
                return  # the next advance tries again
            self._acked = offset

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _follow(
    stub: events_pb2_grpc.EventStreamServiceAsyncStub,
    source: str,
    consumer: str,
    handler: EventHandler,
    subjects: tuple[str, ...],
) -> None:
    request = events_pb2.SubscribeRequest(
        consumer=consumer, after_offset=await handler.offset(source), subjects=subjects
    )
    acks = _Acks(stub, consumer)
    try:
        async for response in stub.Subscribe(request, wait_for_ready=True):
            for event in response.events:
                await apply_traced(handler, source, event)
            if response.events:
                acks.advance(response.events[-1].offset)
    finally:
        await acks.close()
