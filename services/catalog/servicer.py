"""gRPC adapter for the catalog: decode the request, call the domain, encode the result."""

from __future__ import annotations

from services.catalog.domain import Catalog, Product, RequestedLine, Reservation, ReservationState
from services.runtime.server import Context
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

STATES = {
    ReservationState.HELD: catalog_pb2.RESERVATION_STATE_HELD,
    ReservationState.RELEASED: catalog_pb2.RESERVATION_STATE_RELEASED,
}


def encode_product(product: Product) -> catalog_pb2.Product:
    return catalog_pb2.Product(
        product_id=product.product_id,
        name=product.name,
        description=product.description,
        price_cents=product.price_cents,
        stock=product.stock,
    )


def encode_reservation(reservation: Reservation) -> catalog_pb2.Reservation:
    return catalog_pb2.Reservation(
        reservation_id=reservation.reservation_id,
        lines=[
            catalog_pb2.ReservationLine(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price_cents=line.unit_price_cents,
            )
            for line in reservation.lines
        ],
        state=STATES[reservation.state],
    )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, ctx: Context
    ) -> catalog_pb2.ListProductsResponse:
        page = await self._catalog.list(request.page_size, request.page_token)
        return catalog_pb2.ListProductsResponse(
            products=[encode_product(p) for p in page.products],
            next_page_token=page.next_page_token,
        )

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, ctx: Context
    ) -> catalog_pb2.GetProductResponse:
        product = await self._catalog.get(request.product_id)
        return catalog_pb2.GetProductResponse(product=encode_product(product))

    async def ReserveStock(
        self, request: catalog_pb2.ReserveStockRequest, ctx: Context
    ) -> catalog_pb2.ReserveStockResponse:
        lines = [RequestedLine(line.product_id, line.quantity) for line in request.lines]
        reservation = await self._catalog.reserve(request.reservation_id, lines)
        return catalog_pb2.ReserveStockResponse(reservation=encode_reservation(reservation))

    async def ReleaseStock(
        self, request: catalog_pb2.ReleaseStockRequest, ctx: Context
    ) -> catalog_pb2.ReleaseStockResponse:
        reservation = await self._catalog.release(request.reservation_id)
        return catalog_pb2.ReleaseStockResponse(reservation=encode_reservation(reservation))
