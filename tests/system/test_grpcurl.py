"""The real grpcurl binary against the running services, through reflection only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.local.stack import LocalStack
from tests.system.conftest import create_user
from tools.protos import DESCRIPTOR_SET

pytestmark = pytest.mark.system

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(address: str, *args: str, data: object | None = None) -> str:
    assert GRPCURL, "grpcurl is not installed: run `make setup`"
    command = [GRPCURL, "-plaintext", "-max-time", "10"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    result = subprocess.run(
        [*command, address, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_shows_every_service_including_both_order_versions(stack: LocalStack) -> None:
    listed = {
        name: set(grpcurl(stack.address(name), "list").split())
        for name in ("users", "catalog", "payments", "orders", "notifications")
    }
    assert "shop.orders.v1.OrderService" in listed["orders"]
    assert "shop.orders.v2.OrderService" in listed["orders"]
    assert "shop.users.v1.UserService" in listed["users"]
    assert "shop.catalog.v1.CatalogService" in listed["catalog"]
    assert "shop.payments.v1.PaymentService" in listed["payments"]
    assert "shop.notifications.v1.NotificationService" in listed["notifications"]
    for services in listed.values():
        assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services


def test_describe_shows_the_contract(stack: LocalStack) -> None:
    described = grpcurl(stack.address("orders"), "describe", "shop.orders.v2.OrderService")
    assert "rpc WatchOrder ( .shop.orders.v2.WatchOrderRequest ) returns ( stream" in described
    message = grpcurl(stack.address("orders"), "describe", "shop.orders.v2.Money")
    assert "int64 units = 2;" in message


def test_health_check_per_service(stack: LocalStack) -> None:
    reply = grpcurl(
        stack.address("orders"),
        "grpc.health.v1.Health/Check",
        data={"service": "shop.orders.v2.OrderService"},
    )
    assert json.loads(reply) == {"status": "SERVING"}


def test_place_and_read_back_an_order(stack: LocalStack) -> None:
    user = create_user(stack, "grpcurl@example.com")
    placed = json.loads(
        grpcurl(
            stack.address("orders"),
            "shop.orders.v1.OrderService/PlaceOrder",
            data={
                "request_id": "grpcurl-1",
                "user_id": user,
                "payment_token": "tok_visa",
                "items": [{"product_id": "sku-espresso", "quantity": 2}],
            },
        )
    )["order"]
    assert placed["status"] == "ORDER_STATUS_CONFIRMED"
    read = json.loads(
        grpcurl(
            stack.address("orders"),
            "shop.orders.v2.OrderService/GetOrder",
            data={"order_id": placed["orderId"]},
        )
    )["order"]
    assert read["orderId"] == placed["orderId"]
    assert read["total"]["currencyCode"] == "USD"
    assert int(read["total"]["units"]) * 100 + read["total"].get("nanos", 0) // 10_000_000 == int(
        placed["totalCents"]
    )


@pytest.mark.parametrize(
    "schema", [[], ["-protoset", str(DESCRIPTOR_SET)]], ids=["reflection", "protoset"]
)
def test_bad_input_comes_back_with_the_field_named(stack: LocalStack, schema: list[str]) -> None:
    """The README's `-protoset build/shop.binpb` decodes error details as well as reflection."""
    assert GRPCURL
    result = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-format-error",
            *schema,
            "-d",
            json.dumps({"email": "nope", "display_name": ""}),
            stack.address("users"),
            "shop.users.v1.UserService/CreateUser",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    error = json.loads(result.stderr)
    assert error["code"] == 3
    fields = {v["field"] for v in error["details"][0]["field_violations"]}
    assert fields == {"email", "display_name"}
