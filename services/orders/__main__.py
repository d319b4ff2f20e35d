"""Run the orders service (v1 and v2 APIs on one server): `python -m services.orders`."""

from __future__ import annotations

import asyncio
import os

from services.orders.clients import READ_METHODS, CatalogClient, PaymentsClient, UsersClient
from services.orders.domain import Orders
from services.orders.events import SUBJECTS
from services.orders.servicer import OrderServicerV1, OrderServicerV2
from services.orders.settings import Settings
from services.orders.store import SqlOrderStore
from services.runtime.background import Background
from services.runtime.channels import open_channel
from services.runtime.event_stream import event_stream_service
from services.runtime.kafka import OutboxRelay
from services.runtime.server import Service, serve
from shop.orders.v1 import orders_pb2 as v1
from shop.orders.v1 import orders_pb2_grpc as v1_grpc
from shop.orders.v2 import orders_pb2 as v2
from shop.orders.v2 import orders_pb2_grpc as v2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    channels = [
        open_channel(
            address,
            default_timeout=settings.server.call_timeout_seconds,
            read_methods=READ_METHODS,
            telemetry=settings.server.telemetry,
        )
        for address in (settings.users_addr, settings.catalog_addr, settings.payments_addr)
    ]
    users, catalog, payments = channels
    store = SqlOrderStore(settings.database)
    orders = Orders(
        store,
        UsersClient(users),
        CatalogClient(catalog),
        PaymentsClient(payments),
        settings.saga,
    )
    services = [
        Service(
            v1.DESCRIPTOR.services_by_name["OrderService"].full_name,
            v1_grpc.add_OrderServiceServicer_to_server,
            OrderServicerV1(orders),
        ),
        Service(
            v2.DESCRIPTOR.services_by_name["OrderService"].full_name,
            v2_grpc.add_OrderServiceServicer_to_server,
            OrderServicerV2(orders),
        ),
        event_stream_service(store.outbox),
    ]
    jobs = [lambda: orders.recover_forever(settings.recovery_interval_seconds)]
    if settings.events_broker:
        jobs.append(OutboxRelay(store.outbox, settings.events_broker, SUBJECTS).run_forever)
    background = Background(*jobs)

    async def stopped() -> None:
        await background.stop()
        await asyncio.gather(*(channel.close() for channel in channels))

    await serve(settings.server, services, on_started=background.start, on_stopped=stopped)


if __name__ == "__main__":
    asyncio.run(main())
