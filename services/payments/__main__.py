"""Run the payments service: `python -m services.payments`."""

from __future__ import annotations

import asyncio
import os

from services.payments.domain import Payments
from services.payments.events import SUBJECTS
from services.payments.servicer import PaymentServicer
from services.payments.settings import Settings
from services.payments.store import SqlPaymentStore
from services.runtime.background import Background
from services.runtime.event_stream import event_stream_service
from services.runtime.kafka import OutboxRelay
from services.runtime.server import Service, serve
from shop.payments.v1 import payments_pb2, payments_pb2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    store = SqlPaymentStore(settings.database)
    service = Service(
        payments_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
        payments_pb2_grpc.add_PaymentServiceServicer_to_server,
        PaymentServicer(Payments(store)),
    )
    relays = []
    if settings.events_broker:
        relays.append(OutboxRelay(store.outbox, settings.events_broker, SUBJECTS).run_forever)
    background = Background(*relays)
    await serve(
        settings.server,
        [service, event_stream_service(store.outbox)],
        on_started=background.start,
        on_stopped=background.stop,
    )


if __name__ == "__main__":
    asyncio.run(main())
