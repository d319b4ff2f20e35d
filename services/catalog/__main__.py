"""Run the catalog service: `python -m services.catalog`; seeds the demo catalog when empty."""

from __future__ import annotations

import asyncio
import os

from services.catalog.demo import DEMO_PRODUCTS
from services.catalog.domain import Catalog
from services.catalog.servicer import CatalogServicer
from services.catalog.settings import Settings
from services.catalog.store import SqlCatalogStore
from services.runtime.server import Service, serve
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc


async def main() -> None:
    settings = Settings.from_env(os.environ)
    catalog = Catalog(SqlCatalogStore(settings.database))
    await catalog.seed(DEMO_PRODUCTS)
    service = Service(
        catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server,
        CatalogServicer(catalog),
    )
    await serve(settings.server, [service])


if __name__ == "__main__":
    asyncio.run(main())
