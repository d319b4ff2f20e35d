"""Start the shop's service processes on loopback, wait until each reports SERVING, stop them.

Used by `make up` and by the system tests, so that both run the services the same way.
"""

from __future__ import annotations

import os
import random
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
from services.runtime import topology

HOST = "127.0.0.1"
GATEWAY_MODULE = "gateway"


class PortPicker:
    """Distinct free ports below the kernel's ephemeral range.

    A stack's ports are chosen before anything binds them; picking from the ephemeral range
    (port 0) risks meeting the source port of some client's connection in the meantime.
    """

    def __init__(self, low: int = 20000, high: int = 32000) -> None:
        self._low, self._high = low, high
        self._taken: set[int] = set()

    def pick(self) -> int:
        for _ in range(1000):
            port = random.randint(self._low, self._high)
            if port not in self._taken and _bindable(port):
                self._taken.add(port)
                return port
        raise StackError(f"no free port between {self._low} and {self._high}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


_PORTS = PortPicker()


def free_port() -> int:
    """A port no other caller in this process has been given, free when picked."""
    return _PORTS.pick()


def listener(module: str, port: int, metrics_port: int | None) -> dict[str, str]:
    """The settings that tell a workload where to listen on loopback: the services read HOST and
    PORT, the REST gateway GATEWAY_HOST and GATEWAY_PORT (its metrics are its Envoy's admin)."""
    if module == GATEWAY_MODULE:
        admin = str(metrics_port or 0)  # 0: a free port, so that several gateways can run
        return {"GATEWAY_HOST": HOST, "GATEWAY_PORT": str(port), "ADMIN_PORT": admin}
    metrics = {} if metrics_port is None else {"METRICS_PORT": str(metrics_port)}
    return {"HOST": HOST, "PORT": str(port), **metrics}


def grpc_services() -> list[str]:
    """The apps that serve gRPC, as the stack runs them without a mesh (mesh/base)."""
    return [app for app, w in topology.load().standalone().items() if w.grpc]


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
        services: Sequence[str] | None = None,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        startup_timeout: float = 20.0,
        modules: Mapping[str, str] | None = None,
        http_health: Mapping[str, str] | None = None,
        commands: Mapping[str, Sequence[str]] | None = None,
        metrics_ports: Mapping[str, int] | None = None,
    ) -> None:
        """`services` name apps of mesh/base (default: every one serving gRPC) or Deployments
        (orders-v1), each run as its Deployment says and given the addresses of its peers in this
        stack; `modules` runs a workload under a name of its own from a module (orders as
        `orders-a` and `orders-b`), `commands` one that is not Python (the Go catalog) from its
        executable and arguments. `env` goes to every workload, `service_env` to one."""
        self.workdir = workdir
        self._timeout = startup_timeout
        shop = topology.load()
        known = {**shop.workloads, **shop.standalone()}
        services = grpc_services() if services is None else list(services)
        chosen = {name: (ports or {}).get(name) or free_port() for name in services}
        self.workloads: dict[str, Workload] = {}
        for name in services:
            app = known.get(name)
            module = (modules or {}).get(name) or (app.module if app else f"services.{name}")
            workload_env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                # Versions of one app share its database, as pods share a database server.
                "DATABASE_PATH": str(workdir / "data" / f"{app.app if app else name}.db"),
                **listener(module, chosen[name], (metrics_ports or {}).get(name)),
                **(env or {}),
                **(service_env or {}).get(name, {}),
            }
            for setting, peer in (app.peers if app else {}).items():
                if peer in chosen:
                    workload_env.setdefault(setting, f"{HOST}:{chosen[peer]}")
            command = list((commands or {}).get(name, ())) or [sys.executable, "-m", module]
            health = (http_health or {}).get(name) or (app.http_health if app else "")
            self.workloads[name] = Workload(
                name,
                chosen[name],
                Child(command, workdir / "logs" / f"{name}.log", env=workload_env),
                http_health=health or None,
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
