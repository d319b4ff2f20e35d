"""Events through the local mesh: notifications subscribes to orders and payments through its
sidecar (mTLS, RBAC), and the feed reaches the customer through the REST gateway."""

from __future__ import annotations

import time

import pytest

from tests.mesh.local.conftest import Shop

pytestmark = pytest.mark.system


def test_an_order_placed_through_the_gateway_reaches_the_feed(shop: Shop) -> None:
    placed = shop.place_order()
    assert placed.status_code == 200, placed.text
    order_id = placed.json()["order"]["orderId"]
    path = f"/v1/users/{shop.user_id}/notifications"
    wanted = {"Order received", "Payment received", "Order confirmed"}
    deadline = time.monotonic() + 20
    subjects: set[str] = set()
    while not wanted <= subjects and time.monotonic() < deadline:
        time.sleep(0.2)
        feed = shop.get(path).get("notifications", [])
        subjects = {
            n["subject"] for n in feed if order_id in n["body"] or "Payment" in n["subject"]
        }
    assert wanted <= subjects
