"""WORKERS=2: both worker processes serve the one port, their metrics merge, and SIGTERM stops
them all cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from mesh.local.stack import free_port
from services.runtime.settings import ServerSettings
from services.runtime.workers import reserve_port

# How long a slow, shared machine may take to start or stop; never a measurement.
PATIENCE_SECONDS = 90.0


def records(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def wait_for(log: Path, what: str, check: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        found = [r for r in records(log) if check(r)]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} in the log:\n{log.read_text(errors='replace')[-3000:]}")


def test_workers_default_to_one_per_core_and_never_below_one() -> None:
    assert ServerSettings.from_env("x", {}, 1).workers == len(os.sched_getaffinity(0))
    assert ServerSettings.from_env("x", {"WORKERS": "0"}, 1).workers == 1
    assert ServerSettings.from_env("x", {"WORKERS": "2"}, 1).worker_index is None


@pytest.mark.system
def test_two_workers_share_the_port_merge_metrics_and_stop_cleanly(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "catalog.log"
    env = {
        **os.environ,
        "WORKERS": "2",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "DATABASE_PATH": str(tmp_path / "catalog.db"),
        "LOG_LEVEL": "INFO",
    }
    with log.open("wb") as out:
        parent = subprocess.Popen(
            [sys.executable, "-m", "services.catalog"], env=env, stdout=out, stderr=out
        )
    try:
        serving = wait_for(log, "two serving workers", lambda r: r["msg"] == "serving")
        while len(serving) < 2:
            time.sleep(0.1)
            serving = [r for r in records(log) if r["msg"] == "serving"]
        workers = {r["pid"] for r in serving}
        assert len(workers) == 2 and parent.pid not in workers
        assert sorted(r["worker"] for r in serving) == [0, 1]

        # Each new connection lands on one worker; keep connecting until both have answered.
        calls = 0
        answered: set[int] = set()
        while answered != workers and calls < 200:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=PATIENCE_SECONDS
                )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            calls += 1
            answered = {r["pid"] for r in records(log) if r["msg"] == "rpc"}
        assert answered == workers

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            text = response.read().decode()
        handled = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "grpc_server_handled"
            for sample in family.samples
            if sample.labels.get("grpc_method") == "/grpc.health.v1.Health/Check"
        )
        assert handled == calls

        parent.send_signal(signal.SIGTERM)
        assert parent.wait(PATIENCE_SECONDS) == 0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    stopped = [r for r in records(log) if r["msg"] == "stopping"]
    assert {r["pid"] for r in stopped} == workers
    summary = next(r for r in records(log) if r["msg"] == "workers stopped")
    assert summary["exit_codes"] == [0, 0] and summary["killed"] == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_port_left_in_time_wait_can_be_served_again() -> None:
    """A restart must not wait out TIME_WAIT of the previous run's connections (whose listener,
    a gRPC server's, had SO_REUSEADDR, as gRPC sets it)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first, so its end of the connection is in TIME_WAIT
    client.close()
    listener.close()
    reserved = reserve_port("127.0.0.1", port)
    try:
        assert reserved.getsockname()[1] == port
    finally:
        reserved.close()
