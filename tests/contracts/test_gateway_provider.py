"""Verify the gateway against the REST clients' pacts: the real Envoy gateway in front of the
real services, with provider states set up through the services' own gRPC APIs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from contracts.pact import files
from contracts.pact.states import ProviderHooks
from contracts.pact.verify import verify_http
from gateway import auth
from gateway.settings import Settings
from mesh.local.stack import LocalStack
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.gateway.conftest import running_gateway

pytestmark = [pytest.mark.pact_provider, pytest.mark.system]
PROVIDER = "shop-gateway"


class ShopStates:
    """Provider states of the gateway's pacts, set through the services' gRPC APIs."""

    def __init__(self, stack: LocalStack, settings: Settings) -> None:
        self._stack = stack
        self._settings = settings
        self._serial = itertools.count(1)

    def _channel(self, service: str) -> grpc.Channel:
        return grpc.insecure_channel(self._stack.address(service))

    def signed_in_user(self, params: Mapping[str, Any] = {}) -> dict[str, str]:
        with self._channel("users") as channel:
            reply = users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    email=f"ada-{next(self._serial)}@example.com", display_name="Ada"
                ),
                timeout=10,
            )
        user_id = reply.user.user_id
        return {"userId": user_id, "token": auth.mint_token(self._settings, user_id)}

    def confirmed_order(self, params: Mapping[str, Any]) -> dict[str, str]:
        values = self.signed_in_user()
        with self._channel("orders") as channel:
            reply = orders_pb2_grpc.OrderServiceStub(channel).PlaceOrder(
                orders_pb2.PlaceOrderRequest(
                    request_id=f"pact-state-{next(self._serial)}",
                    user_id=values["userId"],
                    payment_token="tok_visa",
                    items=[orders_pb2.OrderItem(product_id="sku-espresso", quantity=2)],
                ),
                timeout=20,
            )
        assert reply.order.status == orders_pb2.ORDER_STATUS_CONFIRMED, reply
        return {**values, "orderId": reply.order.order_id}

    def order_in_feed(self, params: Mapping[str, Any]) -> dict[str, str]:
        """A confirmed order whose events (placed, captured, confirmed) reached the feed."""
        values = self.confirmed_order(params)
        request = notifications_pb2.ListNotificationsRequest(user_id=values["userId"])
        deadline = time.monotonic() + 20
        with self._channel("notifications") as channel:
            stub = notifications_pb2_grpc.NotificationServiceStub(channel)
            while len(stub.ListNotifications(request, timeout=5).notifications) < 3:
                assert time.monotonic() < deadline, "the order's events never reached the feed"
                time.sleep(0.1)
        return values

    def server(self) -> ProviderHooks:
        return ProviderHooks(
            {
                "the demo catalog is loaded": lambda params: None,  # catalog seeds it on start
                "a user is signed in": self.signed_in_user,
                "a signed-in user has a confirmed order": self.confirmed_order,
                "a signed-in user's confirmed order is in their feed": self.order_in_feed,
            }
        )


@pytest.fixture(scope="module")
def gateway_url_and_states(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ProviderHooks]]:
    workdir: Path = tmp_path_factory.mktemp("gateway-provider")
    with LocalStack(workdir / "stack", env={"LOG_LEVEL": "WARNING"}) as stack:
        upstreams = {f"{name.upper()}_ADDR": stack.address(name) for name in stack.workloads}
        with (
            running_gateway(workdir / "gateway", upstreams) as (envoy, settings),
            ShopStates(stack, settings).server() as hooks,
        ):
            yield f"http://{envoy.address}", hooks


def test_gateway_honours_every_rest_pact(
    gateway_url_and_states: tuple[str, ProviderHooks],
) -> None:
    url, hooks = gateway_url_and_states
    result = verify_http(PROVIDER, files.pacts_for(PROVIDER), url, hooks)
    assert result.passed, str(result)
