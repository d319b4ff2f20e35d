"""The demo catalog seeded on first start.

`sku-limited-edition` has a single unit, so a second order for it shows out-of-stock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from services.catalog.domain import Product
from services.catalog.store import SqlCatalogStore

DEMO_PRODUCTS = (
    Product("sku-espresso", "Espresso Beans", "Dark roast whole beans, 1 kg bag.", 2400, 100),
    Product("sku-filter-papers", "Paper Filters", "Pack of 100 unbleached cone filters.", 600, 100),
    Product("sku-french-press", "French Press", "Glass and steel press for four cups.", 3500, 100),
    Product("sku-grinder", "Burr Grinder", "Conical burr grinder with 40 settings.", 8900, 100),
    Product(
        "sku-limited-edition",
        "Limited Edition Kettle",
        "Hand-made copper pour-over kettle; only one left.",
        15000,
        1,
    ),
    Product("sku-mug", "Stoneware Mug", "Glazed 350 ml mug.", 1200, 100),
)


def seed_deep(database: str, extra_stock: Mapping[str, int]) -> None:
    """Seed the demo catalog into `database` before its service starts, with `extra_stock` more
    units of some products: benchmarks and the chaos run want a catalog that never runs out."""

    async def seed() -> None:
        store = SqlCatalogStore(database)
        try:
            await store.seed(DEMO_PRODUCTS)
            for product_id, units in extra_stock.items():
                await store.adjust_stock(product_id, units)
        finally:
            await store.close()

    asyncio.run(seed())
