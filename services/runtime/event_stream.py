"""The producer side of `shop.events.v1.EventStreamService`: serves a service's outbox as an
ordered, resumable stream (the embedded transport; no broker needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.runtime.convert import timestamp
from services.runtime.errors import Violations
from services.runtime.outbox import Outbox, StoredEvent
from services.runtime.server import Context, Service
from shop.events.v1 import events_pb2, events_pb2_grpc

# Events per message: large enough to amortise a message, small enough to keep lag low.
BATCH = 200


def encode(event: StoredEvent) -> events_pb2.Event:
    return events_pb2.Event(
        offset=event.offset,
        event_id=event.event_id,
        subject=event.subject,
        key=event.key,
        payload=event.payload,
        headers=event.headers,
        create_time=timestamp(event.create_time),
    )


def _check(consumer: str, offset_field: str, offset: int) -> None:
    violations = Violations()
    violations.check(bool(consumer), "consumer", "must not be empty")
    violations.check(offset >= 0, offset_field, "must not be negative")
    violations.raise_if_any()


class EventStreamServicer(events_pb2_grpc.EventStreamServiceServicer):
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._closing = False

    def close(self) -> None:
        """End every open stream so a stopping server need not wait out its grace period;
        consumers reconnect and resume from their offsets."""
        self._closing = True
        self._outbox.wake()

    async def Subscribe(
        self, request: events_pb2.SubscribeRequest, ctx: Context
    ) -> AsyncIterator[events_pb2.SubscribeResponse]:
        _check(request.consumer, "after_offset", request.after_offset)
        offset = request.after_offset
        subjects = tuple(request.subjects)
        while not self._closing:
            batch = await self._outbox.after(offset, BATCH, subjects)
            if batch:
                offset = batch[-1].offset
                yield events_pb2.SubscribeResponse(events=[encode(e) for e in batch])
            else:
                await self._outbox.wait()

    async def Ack(self, request: events_pb2.AckRequest, ctx: Context) -> events_pb2.AckResponse:
        _check(request.consumer, "offset", request.offset)
        committed = await self._outbox.ack(request.consumer, request.offset)
        return events_pb2.AckResponse(committed_offset=committed)


def event_stream_service(outbox: Outbox) -> Service:
    """The event stream of `outbox`, to mount next to a producer's own services."""
    servicer = EventStreamServicer(outbox)
    return Service(
        events_pb2.DESCRIPTOR.services_by_name["EventStreamService"].full_name,
        events_pb2_grpc.add_EventStreamServiceServicer_to_server,
        servicer,
        on_stop=servicer.close,
    )
