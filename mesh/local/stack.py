"""Start the shop's service processes on loopback, wait until each reports SERVING, stop them.

Used by `make up` and by the system tests, so that both run the services the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
    env: dict[str, str]
    log_path: Path
    module: str = ""
    command: tuple[str, ...] = ()  # what runs instead of `python -m module` (a Go service)
    http_health: str | None = None  # an HTTP path answering 200 when ready; else gRPC health
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


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
            self.workloads[name] = Workload(
                name,
                chosen[name],
                workload_env,
                workdir / "logs" / f"{name}.log",
                module=(modules or {}).get(name, f"services.{name}"),
                command=tuple((commands or {}).get(name, ())),
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
        workload = self.workloads[name]
        workload.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Each run's log starts empty (`make up` follows it from the top); a restart within the
        # run appends, so a crash and its recovery read as one story.
        workload.log_file = workload.log_path.open("wb" if workload.log_file is None else "ab")
        workload.process = subprocess.Popen(
            list(workload.command) or [sys.executable, "-m", workload.module],
            env=workload.env,
            stdout=workload.log_file,
            stderr=subprocess.STDOUT,
        )
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
        return [
            name
            for name, workload in self.workloads.items()
            if workload.process is None or workload.process.poll() is not None
        ]

    def _check_alive(self, name: str) -> None:
        process = self.workloads[name].process
        if process is not None and process.poll() is not None:
            raise StackError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def signal(self, name: str, signum: signal.Signals) -> None:
        process = self.workloads[name].process
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    def stop(self, name: str, *, grace: float = 10.0) -> int | None:
        """SIGTERM the workload and wait for it (SIGKILL after `grace`); returns its exit code."""
        workload = self.workloads[name]
        process = workload.process
        if process is None:
            return None
        self.signal(name, signal.SIGTERM)
        try:
            code = process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if workload.log_file is not None:
            workload.log_file.close()
        workload.process = None
        return code

    def kill(self, name: str) -> None:
        """SIGKILL the workload, as a crash would."""
        self.signal(name, signal.SIGKILL)
        self.stop(name)

    def stop_all(self) -> None:
        for name in reversed(list(self.workloads)):
            self.signal(name, signal.SIGTERM)
        for name in reversed(list(self.workloads)):
            self.stop(name)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workloads[name].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
