"""The whole user story and the error contract over HTTP, through Envoy to the real services."""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool, message_factory

from contracts import descriptors
from contracts.descriptors import Binding
from gateway import auth, policy
from gateway.envoy import Envoy
from gateway.settings import Settings
from mesh.local.stack import LocalStack
from tests.gateway.conftest import running_gateway

pytestmark = pytest.mark.system
JSON = dict[str, Any]


@dataclass
class Shop:
    stack: LocalStack
    envoy: Envoy
    settings: Settings
    client: httpx.Client
    state: dict[str, str] = field(default_factory=dict)

    def token(self, user_id: str) -> dict[str, str]:
        return {"authorization": f"Bearer {auth.mint_token(self.settings, user_id)}"}

    def call(
        self, method: str, path: str, as_user: str | None, body: JSON | None
    ) -> httpx.Response:
        headers = self.token(self.state[as_user]) if as_user else {}
        return self.client.request(
            method,
            path.format(**self.state),
            headers=headers,
            json=None if body is None else _fill(body, self.state),
        )


def _fill(value: Any, state: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**state)
    if isinstance(value, list):
        return [_fill(v, state) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, state) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    workdir = tmp_path_factory.mktemp("story")
    stack = LocalStack(workdir / "stack", service_env={"orders": {"SAGA_RECOVERY_SECONDS": "0.2"}})
    with stack:
        upstreams = {f"{name.upper()}_ADDR": stack.address(name) for name in stack.workloads}
        with (
            running_gateway(workdir / "gateway", upstreams) as (envoy, settings),
            httpx.Client(base_url=f"http://{envoy.address}", timeout=30) as client,
        ):
            yield Shop(stack, envoy, settings, client)


def status_body(response: httpx.Response) -> JSON:
    """The google.rpc.Status JSON every error carries."""
    body = response.json()
    assert set(body) <= {"code", "message", "details"} and {"code", "message"} <= set(body), body
    assert isinstance(body["code"], int) and isinstance(body["message"], str)
    for detail in body.get("details", []):
        assert detail["@type"].startswith("type.googleapis.com/google.rpc."), detail
    return dict(body)


@dataclass(frozen=True)
class Step:
    name: str
    method: str
    path: str
    as_user: str | None = None
    body: JSON | None = None
    status: int = 200
    check: Callable[[JSON, dict[str, str]], None] = lambda body, state: None


def remember(key: str, *path: str | int) -> Callable[[JSON, dict[str, str]], None]:
    def check(body: JSON, state: dict[str, str]) -> None:
        value: Any = body
        for part in path:
            value = value[part]
        state[key] = str(value)

    return check


def order_is(status: str) -> Callable[[JSON, dict[str, str]], None]:
    def check(body: JSON, state: dict[str, str]) -> None:
        assert body["order"]["status"] == status, body
        assert body["order"]["userId"] == state["ada"]
        remember("order", "order", "orderId")(body, state)

    return check


def notifications_listed(body: JSON, state: dict[str, str]) -> None:
    assert isinstance(body["notifications"], list)
    assert all(n["userId"] == state["ada"] for n in body["notifications"])


STORY = [
    Step(
        "register",
        "POST",
        "/v1/users",
        body={"email": "ada@example.com", "displayName": "Ada"},
        check=remember("ada", "user", "userId"),
    ),
    Step(
        "register another",
        "POST",
        "/v1/users",
        body={"email": "bob@example.com", "displayName": "Bob"},
        check=remember("bob", "user", "userId"),
    ),
    Step(
        "read self",
        "GET",
        "/v1/users/{ada}",
        as_user="ada",
        check=lambda body, state: assert_equal(body["user"]["email"], "ada@example.com"),
    ),
    Step(
        "browse",
        "GET",
        "/v1/products?pageSize=2",
        check=remember("product", "products", 0, "productId"),
    ),
    Step(
        "product",
        "GET",
        "/v1/products/{product}",
        check=lambda body, state: assert_equal(body["product"]["productId"], state["product"]),
    ),
    Step(
        "place order",
        "POST",
        "/v1/orders",
        as_user="ada",
        body={
            "requestId": "req-1",
            "userId": "{ada}",
            "paymentToken": "tok_visa",
            "items": [{"productId": "{product}", "quantity": 2}],
        },
        check=order_is("ORDER_STATUS_CONFIRMED"),
    ),
    Step(
        "read it back",
        "GET",
        "/v1/orders/{order}",
        as_user="ada",
        check=order_is("ORDER_STATUS_CONFIRMED"),
    ),
    Step(
        "read it via v2",
        "GET",
        "/v2/orders/{order}",
        as_user="ada",
        check=order_is("ORDER_STATUS_CONFIRMED"),
    ),
    Step(
        "list orders",
        "GET",
        "/v1/users/{ada}/orders",
        as_user="ada",
        check=lambda body, state: assert_equal(
            [o["orderId"] for o in body["orders"]], [state["order"]]
        ),
    ),
    Step(
        "notifications",
        "GET",
        "/v1/users/{ada}/notifications",
        as_user="ada",
        check=notifications_listed,
    ),
]


def assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def test_user_story(shop: Shop) -> None:
    for step in STORY:
        response = shop.call(step.method, step.path, step.as_user, step.body)
        assert response.status_code == step.status, (step.name, response.text)
        assert not [h for h in response.headers if h.startswith("grpc-")], step.name
        step.check(response.json(), shop.state)
    # Watching a final order streams it once, as one JSON line, and ends.
    with shop.client.stream(
        "GET", f"/v1/orders/{shop.state['order']}:watch", headers=shop.token(shop.state["ada"])
    ) as stream:
        assert stream.status_code == 200
        lines = [line for line in stream.iter_lines() if line]
    assert len(lines) == 1 and '"ORDER_STATUS_CONFIRMED"' in lines[0]


ERRORS = [
    # name, method, path, as_user, body, HTTP status, gRPC code
    (
        "unknown product",
        "POST",
        "/v1/orders",
        "ada",
        {
            "requestId": "req-2",
            "userId": "{ada}",
            "paymentToken": "tok_visa",
            "items": [{"productId": "sku-missing", "quantity": 1}],
        },
        400,
        3,
    ),
    ("missing token", "GET", "/v1/orders/{order}", None, None, 401, 16),
    ("someone else's order", "GET", "/v1/orders/{order}", "bob", None, 403, 7),
    ("someone else's orders", "GET", "/v1/users/{ada}/orders", "bob", None, 403, 7),
    ("unknown order", "GET", "/v1/orders/ord-missing", "ada", None, 404, 5),
    (
        "duplicate email",
        "POST",
        "/v1/users",
        None,
        {"email": "ada@example.com", "displayName": "Ada again"},
        409,
        6,
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "as_user", "body", "status", "code"),
    ERRORS,
    ids=[e[0] for e in ERRORS],
)
def test_error_contract(
    shop: Shop,
    name: str,
    method: str,
    path: str,
    as_user: str | None,
    body: JSON | None,
    status: int,
    code: int,
) -> None:
    if "order" not in shop.state:
        test_user_story(shop)
    response = shop.call(method, path, as_user, body)
    assert response.status_code == status, response.text
    assert status_body(response)["code"] == code
    if name == "unknown product":
        (bad_request,) = response.json()["details"]
        assert bad_request["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        fields = [v["field"] for v in bad_request["fieldViolations"]]
        assert any("product_id" in f for f in fields), fields


def test_forged_identity_is_ignored(shop: Shop) -> None:
    if "order" not in shop.state:
        test_user_story(shop)
    headers = {**shop.token(shop.state["bob"]), "x-user-id": shop.state["ada"]}
    response = shop.client.get(f"/v1/orders/{shop.state['order']}", headers=headers)
    assert response.status_code == 403


def test_watch_streams_each_change_as_it_happens(shop: Shop) -> None:
    if "ada" not in shop.state:
        test_user_story(shop)
    shop.stack.stop("payments")
    try:
        placed = shop.call(
            "POST",
            "/v1/orders",
            "ada",
            {
                "requestId": "req-watch",
                "userId": "{ada}",
                "paymentToken": "tok_visa",
                "items": [{"productId": "{product}", "quantity": 1}],
            },
        )
        assert placed.status_code == 200, placed.text
        order = placed.json()["order"]
        assert order["status"] == "ORDER_STATUS_PENDING"
        lines: queue.Queue[str | None] = queue.Queue()

        def watch() -> None:
            with shop.client.stream(
                "GET", f"/v1/orders/{order['orderId']}:watch", headers=shop.token(shop.state["ada"])
            ) as stream:
                for line in stream.iter_lines():
                    if line:
                        lines.put(line)
            lines.put(None)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # The pending order arrives while the stream stays open.
        assert '"ORDER_STATUS_PENDING"' in str(lines.get(timeout=20))
    finally:
        shop.stack.start("payments")
    # Payments is back: the saga resumes and the stream carries the outcome, then ends.
    assert '"ORDER_STATUS_CONFIRMED"' in str(lines.get(timeout=30))
    assert lines.get(timeout=10) is None
    watcher.join(timeout=10)


def test_service_down_is_503(shop: Shop) -> None:
    shop.stack.stop("catalog")
    try:
        response = shop.client.get("/v1/products")
        assert response.status_code == 503
        assert status_body(response)["code"] == 14
    finally:
        shop.stack.start("catalog")
    assert shop.client.get("/v1/products").status_code == 200


def _isolation_targets(shop: Shop) -> tuple[descriptors.Contracts, dict[str, str], list[str]]:
    """Ada's resource ids by field name, and strings that must never reach another user."""
    if "order" not in shop.state:
        test_user_story(shop)
    order = shop.call("GET", "/v1/orders/{order}", "ada", None).json()["order"]
    ids = {
        "user_id": shop.state["ada"],
        "order_id": shop.state["order"],
        "payment_id": order["paymentId"],
    }
    secrets = ["ada@example.com", *ids.values()]
    return descriptors.load(shop.settings.descriptor_set), ids, secrets


def test_a_token_never_reads_another_users_data_over_rest(shop: Shop) -> None:
    """Every protected GET route (List, Get, Watch, and in-mesh ListUsers) with Ada's ids, as Bob:
    refused, and nothing of Ada's in the answer. As Ada the same served routes answer 200."""
    shop_contracts, ids, secrets = _isolation_targets(shop)
    reads = [b for b in shop_contracts.bindings if b.verb == "get" and not policy.is_public(b)]
    assert {b.method for b in reads} >= {"GetUser", "ListUsers", "GetOrder", "ListOrders"}
    for binding in reads:
        path = re.sub(r"\{([^}=]+)[^}]*\}", lambda m: ids[m.group(1)], binding.path)
        as_bob = shop.client.get(path, headers=shop.token(shop.state["bob"]))
        assert as_bob.status_code in (403, 405), (path, as_bob.text)
        assert not [s for s in secrets if s in as_bob.text], (path, as_bob.text)
        if binding.full_method not in policy.IN_MESH_METHODS:
            assert shop.client.get(path, headers=shop.token(shop.state["ada"])).status_code == 200


def test_a_token_never_reads_another_users_data_over_grpc(shop: Shop) -> None:
    """The same over native gRPC through the gateway's port, one call per bound read RPC."""
    shop_contracts, ids, secrets = _isolation_targets(shop)
    pool = descriptor_pool.DescriptorPool()
    for file in shop_contracts.files.file:
        pool.Add(file)
    reads = {b.full_method: b for b in shop_contracts.bindings if b.verb == "get"}
    with grpc.insecure_channel(shop.envoy.address) as channel:
        for binding in reads.values():
            if policy.is_public(binding):
                continue
            request_type = message_factory.GetMessageClass(
                pool.FindMessageTypeByName(binding.input_type)
            )
            request = request_type(**{f: ids[f] for f in binding.path_fields()})

            def invoke(user: str, binding: Binding = binding, request: Any = request) -> Any:
                return _grpc_read(channel, binding, request, shop.token(shop.state[user]))

            with pytest.raises(grpc.RpcError) as refused:
                invoke("bob")
            error: Any = refused.value
            expected = (
                grpc.StatusCode.UNIMPLEMENTED
                if binding.full_method in policy.IN_MESH_METHODS
                else grpc.StatusCode.PERMISSION_DENIED
            )
            assert error.code() == expected, (binding.full_method, error)
            assert not [s for s in secrets if s in str(error.details())], binding.full_method
            if binding.full_method not in policy.IN_MESH_METHODS:
                assert invoke("ada")


def _grpc_read(
    channel: grpc.Channel, binding: Binding, request: Any, headers: dict[str, str]
) -> Any:
    """Call a bound read RPC by its path with serialized messages; all replies of a stream."""
    kind = channel.unary_stream if binding.server_streaming else channel.unary_unary
    call: Any = kind(
        binding.grpc_path,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=lambda data: data,
    )
    reply = call(request, metadata=tuple(headers.items()), timeout=10)
    return list(reply) if binding.server_streaming else reply
