"""The outbox and its event stream, in process: ordered, resumable, live, acked, validated."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import grpc
import pytest
from grpc import aio

from services.runtime.database import connect
from services.runtime.event_stream import event_stream_service
from services.runtime.outbox import NewEvent, Outbox
from shop.events.v1 import events_pb2, events_pb2_grpc
from tests.services.conftest import Serve, field_violations

CANCELLED = "shop.orders.OrderCancelled"


def cancelled(n: int) -> NewEvent:
    record = {
        "order_id": f"ord_{n}",
        "user_id": "usr_ann",
        "reason": "test",
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return NewEvent(CANCELLED, f"ord_{n}", record)


async def publish(outbox: Outbox, *numbers: int) -> None:
    await outbox.db.transaction(lambda: outbox.append(cancelled(n) for n in numbers))


@pytest.fixture
def outbox() -> Outbox:
    return Outbox(connect(":memory:"))


async def test_append_outside_a_transaction_is_refused(outbox: Outbox) -> None:
    with pytest.raises(AssertionError, match="transaction"):
        await outbox.append([cancelled(1)])


async def test_a_rolled_back_transaction_leaves_no_event(outbox: Outbox) -> None:
    async def change() -> None:
        await outbox.append([cancelled(1)])
        await outbox.db.execute("UPDATE no_such_table SET state = 'x'")  # the change fails

    with pytest.raises(sqlite3.OperationalError):
        await outbox.db.transaction(change)
    assert await outbox.after(0, 10) == []


Stream = aio.UnaryStreamCall[events_pb2.SubscribeRequest, events_pb2.SubscribeResponse]


async def take(stream: Stream, n: int) -> list[str]:
    keys: list[str] = []
    while len(keys) < n:
        response = await asyncio.wait_for(stream.read(), 5)
        assert isinstance(response, events_pb2.SubscribeResponse)
        keys.extend(e.key for e in response.events)
    return keys


async def test_subscribers_get_old_events_in_order_then_new_ones_live(
    serve: Serve, outbox: Outbox
) -> None:
    await publish(outbox, 1, 2, 3)
    async with serve([event_stream_service(outbox)]) as channel:
        stub = events_pb2_grpc.EventStreamServiceStub(channel)
        stream = stub.Subscribe(events_pb2.SubscribeRequest(consumer="test"))
        assert await take(stream, 3) == ["ord_1", "ord_2", "ord_3"]
        await publish(outbox, 4)
        assert await take(stream, 1) == ["ord_4"]
        stream.cancel()


async def test_a_subscription_resumes_after_the_given_offset(serve: Serve, outbox: Outbox) -> None:
    await publish(outbox, 1, 2, 3)
    second = (await outbox.after(0, 10))[1].offset
    async with serve([event_stream_service(outbox)]) as channel:
        stub = events_pb2_grpc.EventStreamServiceStub(channel)
        stream = stub.Subscribe(events_pb2.SubscribeRequest(consumer="test", after_offset=second))
        assert await take(stream, 1) == ["ord_3"]
        stream.cancel()


async def test_events_carry_payload_headers_and_ids(serve: Serve, outbox: Outbox) -> None:
    await publish(outbox, 1)
    async with serve([event_stream_service(outbox)]) as channel:
        stub = events_pb2_grpc.EventStreamServiceStub(channel)
        stream = stub.Subscribe(events_pb2.SubscribeRequest(consumer="test"))
        response = await stream.read()
        stream.cancel()
    assert isinstance(response, events_pb2.SubscribeResponse)
    (event,) = response.events
    assert event.subject == CANCELLED
    assert event.event_id.startswith("evt_")
    assert event.payload[:1] == b"\x00"
    assert event.create_time.seconds > 0


async def test_acks_record_progress_and_never_go_back(serve: Serve, outbox: Outbox) -> None:
    async with serve([event_stream_service(outbox)]) as channel:
        stub = events_pb2_grpc.EventStreamServiceStub(channel)
        assert (await stub.Ack(events_pb2.AckRequest(consumer="n", offset=5))).committed_offset == 5
        assert (await stub.Ack(events_pb2.AckRequest(consumer="n", offset=3))).committed_offset == 5


async def test_bad_requests_name_the_field(serve: Serve, outbox: Outbox) -> None:
    async with serve([event_stream_service(outbox)]) as channel:
        stub = events_pb2_grpc.EventStreamServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as subscribe:
            async for _ in stub.Subscribe(events_pb2.SubscribeRequest(after_offset=-1)):
                pass
        with pytest.raises(aio.AioRpcError) as ack:
            await stub.Ack(events_pb2.AckRequest(consumer="n", offset=-1))
    assert set(field_violations(subscribe.value)) == {"consumer", "after_offset"}
    assert set(field_violations(ack.value)) == {"offset"}
    assert ack.value.code() == grpc.StatusCode.INVALID_ARGUMENT
