"""The Python REST client's pact with the gateway: each test is one interaction it relies on.

Runs `clients.python.shop_client` against Pact's mock server; the pact is written to
`contracts/pacts/shop-python-client-shop-gateway.json` and verified by
`test_gateway_provider.py` against the real Envoy gateway and services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pact import Pact, generate, match

from clients.python.shop_client import ApiError, OrderItem, ShopClient
from contracts.pact import proto3

pytestmark = pytest.mark.pact_consumer

CONSUMER, PROVIDER = "shop-python-client", "shop-gateway"
USER, ORDER, TOKEN = "usr_0001", "ord_0001", "token-for-usr_0001"
STATUSES = ("ORDER_STATUS_PENDING", "ORDER_STATUS_CONFIRMED", "ORDER_STATUS_CANCELLED")
NewPact = Callable[[str, str], Pact]


def from_state(example: str, expression: str) -> Any:
    """A value the provider only knows once the state is set up (an id, a token)."""
    return match.like(example, generator=generate.provider_state(expression))


def bearer() -> Any:
    return from_state(f"Bearer {TOKEN}", "Bearer ${token}")


PRODUCT = {
    "productId": match.str("sku-espresso"),
    "name": match.str("Espresso beans"),
    "description": match.str("1 kg of beans"),
    "priceCents": proto3.int64(1800),
    "stock": match.int(100),
}
USER_JSON = {
    "userId": match.str(USER),
    "email": match.str("ada@example.com"),
    "displayName": match.str("Ada"),
    "createTime": proto3.timestamp(),
}


def order_json(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "orderId": match.str(ORDER),
        "userId": match.str(USER),
        "items": match.each_like(
            {
                "productId": match.str("sku-espresso"),
                "quantity": match.int(2),
                "unitPriceCents": proto3.int64(1800),
            }
        ),
        "totalCents": proto3.int64(3600),
        "status": proto3.enum(status, STATUSES),
        "paymentId": match.str("pay_0001"),
        "createTime": proto3.timestamp(),
        "updateTime": proto3.timestamp(),
        **extra,
    }


def test_list_products(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request for the first page of products")
        .given("the demo catalog is loaded")
        .with_request("GET", "/v1/products")
        .with_query_parameter("pageSize", "2")
        .will_respond_with(200)
        .with_body({"products": match.each_like(PRODUCT, min=1)}, "application/json")
    )
    with pact.serve() as server, ShopClient(str(server.url)) as client:
        page = client.list_products(page_size=2)
    assert page.items[0].price_cents == 1800


def test_get_product(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request for a product")
        .given("the demo catalog is loaded")
        .with_request("GET", "/v1/products/sku-espresso")
        .will_respond_with(200)
        .with_body({"product": PRODUCT}, "application/json")
    )
    with pact.serve() as server, ShopClient(str(server.url)) as client:
        assert client.get_product("sku-espresso").product_id == "sku-espresso"


def test_create_user(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request to register a user")
        .with_request("POST", "/v1/users")
        .with_body({"email": "grace@example.com", "displayName": "Grace"}, "application/json")
        .will_respond_with(200)
        .with_body(
            {"user": {**USER_JSON, "email": "grace@example.com", "displayName": "Grace"}},
            "application/json",
        )
    )
    with pact.serve() as server, ShopClient(str(server.url)) as client:
        user = client.create_user("grace@example.com", "Grace")
    assert user.user_id == USER and user.create_time is not None


def test_create_user_with_a_bad_email(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request to register a user with an invalid email")
        .with_request("POST", "/v1/users")
        .with_body({"email": "not-an-email", "displayName": "Grace"}, "application/json")
        .will_respond_with(400)
        .with_body(
            {
                "code": 3,
                "message": match.str("invalid request"),
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [
                            {"field": "email", "description": match.str("not an email")}
                        ],
                    }
                ],
            },
            "application/json",
        )
    )
    with (
        pact.serve() as server,
        ShopClient(str(server.url)) as client,
        pytest.raises(ApiError) as raised,
    ):
        client.create_user("not-an-email", "Grace")
    assert raised.value.http_status == 400
    assert [v.field for v in raised.value.violations] == ["email"]


def test_get_user(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request for the signed-in user")
        .given("a user is signed in")
        .with_request("GET", from_state(f"/v1/users/{USER}", "/v1/users/${userId}"))
        .with_header("authorization", bearer())
        .will_respond_with(200)
        .with_body({"user": USER_JSON}, "application/json")
    )
    with pact.serve() as server, ShopClient(str(server.url), TOKEN) as client:
        assert client.get_user(USER).email == "ada@example.com"


def test_place_order(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request to place an order")
        .given("a user is signed in")
        .with_request("POST", "/v1/orders")
        .with_header("authorization", bearer())
        .with_body(
            {
                "requestId": "req-pact-1",
                "userId": from_state(USER, "${userId}"),
                "paymentToken": "tok_visa",
                "items": [{"productId": "sku-espresso", "quantity": 2}],
            },
            "application/json",
        )
        .will_respond_with(200)
        .with_body({"order": order_json("ORDER_STATUS_CONFIRMED")}, "application/json")
    )
    with pact.serve() as server, ShopClient(str(server.url), TOKEN) as client:
        order = client.place_order("req-pact-1", USER, "tok_visa", [OrderItem("sku-espresso", 2)])
    assert order.status == "ORDER_STATUS_CONFIRMED" and order.total_cents == 3600


def test_get_order(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request for an order")
        .given("a signed-in user has a confirmed order")
        .with_request("GET", from_state(f"/v1/orders/{ORDER}", "/v1/orders/${orderId}"))
        .with_header("authorization", bearer())
        .will_respond_with(200)
        .with_body({"order": order_json("ORDER_STATUS_CONFIRMED")}, "application/json")
    )
    with pact.serve() as server, ShopClient(str(server.url), TOKEN) as client:
        assert client.get_order(ORDER).items == (OrderItem("sku-espresso", 2, 1800),)


def test_list_orders(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request for a user's orders")
        .given("a signed-in user has a confirmed order")
        .with_request("GET", from_state(f"/v1/users/{USER}/orders", "/v1/users/${userId}/orders"))
        .with_header("authorization", bearer())
        .will_respond_with(200)
        .with_body(
            {"orders": match.each_like(order_json("ORDER_STATUS_CONFIRMED"), min=1)},
            "application/json",
        )
    )
    with pact.serve() as server, ShopClient(str(server.url), TOKEN) as client:
        assert [o.order_id for o in client.list_orders(USER).items] == [ORDER]


def test_cancel_order(new_pact: NewPact) -> None:
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request to cancel a confirmed order")
        .given("a signed-in user has a confirmed order")
        .with_request(
            "POST", from_state(f"/v1/orders/{ORDER}:cancel", "/v1/orders/${orderId}:cancel")
        )
        .with_header("authorization", bearer())
        .with_body({"reason": "changed my mind"}, "application/json")
        .will_respond_with(200)
        .with_body(
            {
                "order": order_json(
                    "ORDER_STATUS_CANCELLED", statusReason=match.str("changed my mind")
                )
            },
            "application/json",
        )
    )
    with pact.serve() as server, ShopClient(str(server.url), TOKEN) as client:
        order = client.cancel_order(ORDER, "changed my mind")
    assert order.status == "ORDER_STATUS_CANCELLED"


def test_list_notifications(new_pact: NewPact) -> None:
    notification = {
        "notificationId": match.str("ntf_0001"),
        "userId": match.str(USER),
        "subject": match.str("Your order is confirmed"),
        "body": match.str("Order ord_0001 is on its way."),
        "createTime": proto3.timestamp(),
    }
    pact = new_pact(CONSUMER, PROVIDER)
    (
        pact.upon_receiving("a request for a user's notifications")
        .given("a signed-in user's confirmed order is in their feed")
        .with_request(
            "GET",
            from_state(f"/v1/users/{USER}/notifications", "/v1/users/${userId}/notifications"),
        )
        .with_header("authorization", bearer())
        .will_respond_with(200)
        .with_body({"notifications": match.like([notification], min=1)}, "application/json")
    )
    with pact.serve() as server, ShopClient(str(server.url), TOKEN) as client:
        page = client.list_notifications(USER)
    assert page.items[0].subject == "Your order is confirmed"
