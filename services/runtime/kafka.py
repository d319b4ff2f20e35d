"""Kafka as the event transport at scale (`EVENTS_BROKER=kafka://host:port`).

A relay publishes each producer's outbox to one topic per subject, keyed by the entity id, with
the Confluent wire-format payload and the event id in a header; consumers in a group apply the
events and commit after applying. Delivery stays at least once and consumers stay idempotent by
event id. The embedded gRPC stream stays the default and is served either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from google.protobuf.timestamp_pb2 import Timestamp

from services.runtime.event_consumer import EventHandler, apply_traced
from services.runtime.outbox import Outbox, StoredEvent
from services.runtime.settings import Env, SettingsError
from shop.events.v1 import events_pb2

log = logging.getLogger("shop.events.kafka")

SCHEME = "kafka://"
EVENT_ID_HEADER = "event-id"
# The outbox_consumers row that holds how far the relay has published.
RELAY = "kafka-relay"
BATCH = 500
POLL_SECONDS = 0.5


def events_broker(env: Env) -> str:
    """`EVENTS_BROKER` as Kafka bootstrap servers (`host:port,...`), or "" for no broker."""
    url = env.string("EVENTS_BROKER", "")
    if not url:
        return ""
    servers = url.removeprefix(SCHEME)
    if not url.startswith(SCHEME) or not all(":" in s for s in servers.split(",")):
        raise SettingsError(f"EVENTS_BROKER must look like kafka://host:port, got {url!r}")
    return servers


def ensure_topics(bootstrap: str, subjects: Iterable[str], timeout: float = 10) -> None:
    """Create the subjects' topics with the broker's default partitions and replication."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(s, num_partitions=-1, replication_factor=-1) for s in subjects]
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            log.debug("topic exists", extra={"topic": topic})


class OutboxRelay:
    """Publishes an outbox to Kafka in offset order; records progress only after the broker
    acknowledged every event of a batch, so a crash republishes rather than loses."""

    def __init__(
        self, outbox: Outbox, bootstrap: str, subjects: Sequence[str], retry_seconds: float = 1
    ) -> None:
        self._outbox = outbox
        self._bootstrap = bootstrap
        self._subjects = subjects
        self._retry_seconds = retry_seconds
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,  # retries keep each partition's order, no duplicates
                "acks": "all",
                "linger.ms": 2,
            }
        )

    async def run_forever(self) -> None:
        await asyncio.to_thread(ensure_topics, self._bootstrap, self._subjects)
        offset = await self._outbox.acked(RELAY)
        while True:
            batch = await self._outbox.after(offset, BATCH)
            if not batch:
                await self._outbox.wait()
                continue
            try:
                await asyncio.to_thread(self._publish, batch)
            except KafkaException as error:
                log.warning("publishing to Kafka failed; will retry", extra={"error": str(error)})
                await asyncio.sleep(self._retry_seconds)
                continue
            offset = batch[-1].offset
            await self._outbox.ack(RELAY, offset)

    def _publish(self, batch: list[StoredEvent]) -> None:
        """Produce `batch` and wait for the broker's acks (runs on a worker thread)."""
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        for event in batch:
            headers: list[tuple[str, str | bytes | None]] = [(EVENT_ID_HEADER, event.event_id)]
            headers += event.headers.items()
            self._producer.produce(
                event.subject,
                key=event.key.encode(),
                value=event.payload,
                headers=headers,
                timestamp=int(event.create_time.timestamp() * 1000),
                on_delivery=delivered,
            )
        unsent = self._producer.flush(30)
        if unsent or failures:
            raise KafkaException(failures[0] if failures else f"{unsent} events not acknowledged")


def envelope(message: Message) -> events_pb2.Event:
    """A Kafka record as the transport-neutral `shop.events.v1.Event`."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = {k: v.decode() if isinstance(v, bytes) else (v or "") for k, v in pairs}
    event_id = headers.pop(EVENT_ID_HEADER, "")
    create_time = Timestamp()
    create_time.FromMilliseconds(message.timestamp()[1])
    return events_pb2.Event(
        offset=message.offset() or 0,
        event_id=event_id,
        subject=message.topic() or "",
        key=(message.key() or b"").decode(),
        payload=message.value() or b"",
        headers=headers,
        create_time=create_time,
    )


async def consume_kafka(
    bootstrap: str, group: str, subjects: Sequence[str], handler: EventHandler
) -> None:
    """Apply the subjects' events with `handler` as a member of consumer group `group`,
    committing each batch's offsets after it is applied, until cancelled."""
    await asyncio.to_thread(ensure_topics, bootstrap, subjects)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # A member that crashed holds its partitions until this expires: keep it short.
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe(list(subjects))
    loop = asyncio.get_running_loop()
    polling: asyncio.Future[list[Message]] | None = None
    try:
        while True:
            polling = loop.run_in_executor(None, consumer.consume, BATCH, POLL_SECONDS)
            messages = await asyncio.shield(polling)
            applied = False
            for message in messages:
                error = message.error()
                if error is not None:
                    log.warning("Kafka consumer error", extra={"error": str(error)})
                    continue
                source = f"kafka:{message.topic()}/{message.partition()}"
                await apply_traced(handler, source, envelope(message))
                applied = True
            if applied:
                await asyncio.to_thread(consumer.commit, asynchronous=False)
    finally:
        if polling is not None:
            await asyncio.wait({polling})  # the consumer is not safe to close mid-poll
        await asyncio.to_thread(consumer.close)
