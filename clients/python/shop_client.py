"""A small typed client of the shop's REST gateway (proto3 JSON over HTTP, JWT bearer auth).

It is the consumer in the HTTP pacts (`tests/contracts/test_gateway_consumer.py`): what it sends
and reads is what the gateway is verified against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Self, TypeVar

import httpx

JSON = Mapping[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(eq=False)
class ApiError(Exception):
    """A non-2xx answer, decoded from its `google.rpc.Status` body."""

    http_status: int
    code: int
    message: str
    reason: str = ""
    violations: tuple[FieldViolation, ...] = ()

    def __str__(self) -> str:
        fields = ", ".join(v.field for v in self.violations)
        detail = f" [{self.reason}]" if self.reason else f" ({fields})" if fields else ""
        return f"HTTP {self.http_status}: {self.message}{detail}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        reason = ""
        violations: list[FieldViolation] = []
        for detail in body.get("details", []):
            kind = str(detail.get("@type", "")).rpartition("/")[2]
            if kind == "google.rpc.ErrorInfo":
                reason = str(detail.get("reason", ""))
            elif kind == "google.rpc.BadRequest":
                violations += [
                    FieldViolation(str(v.get("field", "")), str(v.get("description", "")))
                    for v in detail.get("fieldViolations", [])
                ]
        return cls(
            response.status_code,
            int(body.get("code", 0)),
            str(body.get("message", response.reason_phrase)),
            reason,
            tuple(violations),
        )


def _time(value: object) -> datetime | None:
    # proto3 JSON timestamps are RFC 3339 in UTC with a `Z` suffix.
    return datetime.fromisoformat(str(value)) if value else None


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    description: str
    price_cents: int
    stock: int

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        return cls(
            str(data["productId"]),
            str(data["name"]),
            str(data.get("description", "")),
            int(data["priceCents"]),  # int64 travels as a JSON string
            int(data.get("stock", 0)),
        )


@dataclass(frozen=True)
class User:
    user_id: str
    email: str
    display_name: str
    create_time: datetime | None

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        return cls(
            str(data["userId"]),
            str(data["email"]),
            str(data["displayName"]),
            _time(data.get("createTime")),
        )


@dataclass(frozen=True)
class OrderItem:
    product_id: str
    quantity: int
    unit_price_cents: int = 0

    def to_json(self) -> JSON:
        return {"productId": self.product_id, "quantity": self.quantity}

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        return cls(
            str(data["productId"]), int(data["quantity"]), int(data.get("unitPriceCents", 0))
        )


@dataclass(frozen=True)
class Order:
    order_id: str
    user_id: str
    items: tuple[OrderItem, ...]
    total_cents: int
    status: str  # the enum's name, e.g. ORDER_STATUS_CONFIRMED
    status_reason: str
    payment_id: str
    create_time: datetime | None
    update_time: datetime | None

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        return cls(
            str(data["orderId"]),
            str(data["userId"]),
            tuple(OrderItem.from_json(item) for item in data.get("items", [])),
            int(data.get("totalCents", 0)),
            str(data["status"]),
            str(data.get("statusReason", "")),
            str(data.get("paymentId", "")),
            _time(data.get("createTime")),
            _time(data.get("updateTime")),
        )


@dataclass(frozen=True)
class Notification:
    notification_id: str
    user_id: str
    subject: str
    body: str
    create_time: datetime | None

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        return cls(
            str(data["notificationId"]),
            str(data["userId"]),
            str(data["subject"]),
            str(data.get("body", "")),
            _time(data.get("createTime")),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_page_token: str


class ShopClient:
    """Calls the gateway at `base_url`; `token` is the bearer JWT for the private routes."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: JSON | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> JSON:
        query = {key: value for key, value in (params or {}).items() if value}
        response = self._http.request(method, path, json=body, params=query or None)
        if response.is_error:
            raise ApiError.from_response(response)
        result: JSON = response.json()
        return result

    def list_products(self, page_size: int = 0, page_token: str = "") -> Page[Product]:
        data = self._call(
            "GET", "/v1/products", params={"pageSize": page_size, "pageToken": page_token}
        )
        return Page(
            tuple(Product.from_json(p) for p in data.get("products", [])),
            str(data.get("nextPageToken", "")),
        )

    def get_product(self, product_id: str) -> Product:
        return Product.from_json(self._call("GET", f"/v1/products/{product_id}")["product"])

    def create_user(self, email: str, display_name: str) -> User:
        body = {"email": email, "displayName": display_name}
        return User.from_json(self._call("POST", "/v1/users", body=body)["user"])

    def get_user(self, user_id: str) -> User:
        return User.from_json(self._call("GET", f"/v1/users/{user_id}")["user"])

    def place_order(
        self, request_id: str, user_id: str, payment_token: str, items: Sequence[OrderItem]
    ) -> Order:
        """Place an order (v1); the reply is final: CONFIRMED, or CANCELLED with a reason."""
        body = {
            "requestId": request_id,
            "userId": user_id,
            "paymentToken": payment_token,
            "items": [item.to_json() for item in items],
        }
        return Order.from_json(self._call("POST", "/v1/orders", body=body)["order"])

    def get_order(self, order_id: str) -> Order:
        return Order.from_json(self._call("GET", f"/v1/orders/{order_id}")["order"])

    def list_orders(self, user_id: str, page_size: int = 0, page_token: str = "") -> Page[Order]:
        data = self._call(
            "GET",
            f"/v1/users/{user_id}/orders",
            params={"pageSize": page_size, "pageToken": page_token},
        )
        return Page(
            tuple(Order.from_json(o) for o in data.get("orders", [])),
            str(data.get("nextPageToken", "")),
        )

    def cancel_order(self, order_id: str, reason: str = "") -> Order:
        body = {"reason": reason} if reason else {}
        return Order.from_json(
            self._call("POST", f"/v1/orders/{order_id}:cancel", body=body)["order"]
        )

    def list_notifications(
        self, user_id: str, page_size: int = 0, page_token: str = ""
    ) -> Page[Notification]:
        data = self._call(
            "GET",
            f"/v1/users/{user_id}/notifications",
            params={"pageSize": page_size, "pageToken": page_token},
        )
        return Page(
            tuple(Notification.from_json(n) for n in data.get("notifications", [])),
            str(data.get("nextPageToken", "")),
        )
