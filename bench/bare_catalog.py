"""A bare grpc.aio server answering GetProduct with a constant: no interceptors, no storage.

The services benchmark measures it in the same run, so the shop's own figures have a ceiling
to be read against: `python -m bench.bare_catalog PORT`.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from grpc import aio

from shop.catalog.v1 import catalog_pb2

REPLY = catalog_pb2.GetProductResponse(
    product=catalog_pb2.Product(
        product_id="sku-espresso", name="Espresso Beans", price_cents=2400, stock=100
    )
)


async def get_product(
    request: catalog_pb2.GetProductRequest, context: aio.ServicerContext[object, object]
) -> catalog_pb2.GetProductResponse:
    return REPLY


async def serve(port: int) -> None:
    server = aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        get_product,
        request_deserializer=catalog_pb2.GetProductRequest.FromString,
        response_serializer=catalog_pb2.GetProductResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "shop.catalog.v1.CatalogService", {"GetProduct": handler}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
