"""A short chaos run (bench/chaos.py): orders through the gateway and the mesh while apps and
sidecars are SIGKILLed and a fault scenario comes and goes; then the audit must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos

pytestmark = pytest.mark.system


def test_nothing_is_lost_or_doubled_under_crashes_and_faults(tmp_path: Path) -> None:
    with chaos.running_shop(tmp_path) as shop:
        victims = ["orders-v1", "payments", "notifications", "gateway"]
        actions = chaos.schedule(shop.mesh, victims, faults=["payments-abort.yaml"])
        load = chaos.run_chaos(shop, 20, 4, actions, log=lambda line: None)
        chaos.quiesce(shop)
        report = chaos.audit(shop, load)
    assert report["accepted"] >= 40, report
    assert report["orders"].get("CONFIRMED", 0) > 0, report
    assert report["orders"].get("CANCELLED", 0) > 0, report
    assert all(report["checks"].values()), report
