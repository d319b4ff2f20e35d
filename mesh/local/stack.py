"""Start the shop's service processes on loopback, wait until each reports SERVING, stop them.

Used by `make up` and by the system tests, so that both run the services the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runner.child import Child

HOST = "127.0.0.1"

# Default ports for `make up`; tests take free ports instead.
DEFAULT_PORTS = {
    "users": 50051,
    "catalog": 50052,
    "payments": 50053,
    "orders": 50054,
    "notifications": 50055,
}
SERVICES = tuple(DEFAULT_PORTS)
# Which peers each workload calls, as the `<PEER>_ADDR` settings it needs.
PEERS: Mapping[str, Sequence[str]] = {
    "orders": ("users", "catalog", "payments"),
    "notifications": ("orders", "payments"),
    "gateway": SERVICES,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Workload:
    name: str
    port: int
    child: Child
    http_health: str | None = None  # an HTTP path answering 200 when ready; else gRPC health

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    @property
    def env(self) -> dict[str, str]:
        """The settings it starts with; a change takes effect at its next start."""
        assert self.child.env is not None
        return self.child.env


class StackError(RuntimeError):
    """A workload failed to start; the message carries the end of its log."""


class LocalStack:
    """The services as child processes, each with its own database under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        services: Sequence[str] = SERVICES,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        startup_timeout: float = 20.0,
        modules: Mapping[str, str] | None = None,
        http_health: Mapping[str, str] | None = None,
        commands: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """`modules` maps a workload to the module it runs (default `services.<name>`), so that
        one service can run as several workloads (orders v1 and v2); `commands` runs a workload
        that is not Python (the Go catalog) from its executable and arguments."""
        self.workdir = workdir
        self._timeout = startup_timeout
        chosen = {name: (ports or {}).get(name) or free_port() for name in services}
        self.workloads: dict[str, Workload] = {}
        for name in services:
            workload_env = {
                **os.environ,
                "HOST": HOST,
                "PORT": str(chosen[name]),
                "DATABASE_PATH": str(workdir / "data" / f"{name}.db"),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
                **(service_env or {}).get(name, {}),
            }
            for peer in PEERS.get(name, ()):
                if peer in chosen:
                    workload_env.setdefault(f"{peer.upper()}_ADDR", f"{HOST}:{chosen[peer]}")
            module = (modules or {}).get(name, f"services.{name}")
            command = list((commands or {}).get(name, ())) or [sys.executable, "-m", module]
            self.workloads[name] = Workload(
                name,
                chosen[name],
                Child(command, workdir / "logs" / f"{name}.log", env=workload_env),
                http_health=(http_health or {}).get(name),
            )

    def address(self, name: str) -> str:
        return self.workloads[name].address

    def __enter__(self) -> LocalStack:
        try:
            for name in self.workloads:
                self.start(name, wait=False)
            for name in self.workloads:
                self.wait_serving(name)
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(self, name: str, *, wait: bool = True) -> None:
        self.workloads[name].child.start()
        if wait:
            self.wait_serving(name)

    def wait_serving(self, name: str) -> None:
        """Block until the workload's health check answers SERVING, or fail with its log."""
        workload = self.workloads[name]
        deadline = time.monotonic() + self._timeout
        if workload.http_health is not None:
            url = f"http://{workload.address}{workload.http_health}"
            while time.monotonic() < deadline:
                self._check_alive(name)
                try:
                    with urllib.request.urlopen(url, timeout=1) as response:
                        if response.status == 200:
                            return
                except OSError:
                    pass
                time.sleep(0.05)
            raise StackError(
                f"{name} was not ready within {self._timeout}s:\n{self.log_tail(name)}"
            )
        with grpc.insecure_channel(workload.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self._check_alive(name)
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        raise StackError(f"{name} was not SERVING within {self._timeout}s:\n{self.log_tail(name)}")

    def exited(self) -> list[str]:
        """Names of workloads whose process is not running."""
        return [name for name, workload in self.workloads.items() if not workload.child.running]

    def _check_alive(self, name: str) -> None:
        child = self.workloads[name].child
        if child.process is not None and not child.running:
            raise StackError(f"{name} exited with {child.returncode}:\n{self.log_tail(name)}")

    def signal(self, name: str, signum: signal.Signals) -> None:
        self.workloads[name].child.signal(signum)

    def stop(self, name: str, *, grace: float = 10.0) -> int | None:
        """SIGTERM the workload and wait for it (SIGKILL after `grace`); returns its exit code."""
        return self.workloads[name].child.stop(grace)

    def kill(self, name: str) -> None:
        """SIGKILL the workload, as a crash would."""
        self.workloads[name].child.kill()

    def stop_all(self) -> None:
        for name in reversed(list(self.workloads)):
            self.signal(name, signal.SIGTERM)
        for name in reversed(list(self.workloads)):
            self.stop(name)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.workloads[name].child.log_tail(lines)
