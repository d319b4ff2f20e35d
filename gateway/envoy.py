"""Run the gateway's Envoy as a child this process owns, and find the port it listens on."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import TracebackType

from gateway.settings import Settings
from runner.envoy import EnvoyProcess


class Envoy:
    """A running gateway Envoy with `config`; a context manager that always stops it."""

    def __init__(self, settings: Settings, config: Path) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="gateway-envoy-")
        concurrency = settings.envoy_concurrency
        self._process = EnvoyProcess(
            "envoy",
            config,
            Path(self._workdir.name),
            settings.envoy_bin,
            [
                "--log-level",
                settings.log_level,
                *(["--concurrency", str(concurrency)] if concurrency else []),
            ],
        )
        self.address = ""  # the gateway listener's host:port

    @property
    def admin(self) -> str:
        return self._process.admin

    def __enter__(self) -> Envoy:
        self._process.start()
        try:
            self._process.wait_ready()
            self.address = self._listener_address()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait(self) -> int:
        assert self._process.process is not None
        return self._process.process.wait()

    def stop(self) -> None:
        self._process.stop(grace=10)
        self._workdir.cleanup()

    def _listener_address(self) -> str:
        statuses = json.loads(self._process.get("/listeners?format=json"))["listener_statuses"]
        socket = next(s for s in statuses if s["name"] == "gateway")["local_address"]
        return f"{socket['socket_address']['address']}:{socket['socket_address']['port_value']}"
