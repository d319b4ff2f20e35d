"""Run Envoy as a child this process owns: start, wait until ready, find its ports, stop."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from gateway.settings import Settings

READY_TIMEOUT = 30.0


class EnvoyError(RuntimeError):
    """Envoy did not start; the message carries the end of its log."""


class Envoy:
    """A running Envoy with `config`; a context manager that always stops it."""

    def __init__(self, settings: Settings, config: Path) -> None:
        self.settings = settings
        self.config = config
        self._workdir = tempfile.TemporaryDirectory(prefix="gateway-envoy-")
        self._process: subprocess.Popen[bytes] | None = None
        self.admin = ""  # host:port
        self.address = ""  # the gateway listener's host:port

    def __enter__(self) -> Envoy:
        workdir = Path(self._workdir.name)
        admin_file = workdir / "admin-address"
        self._log = (workdir / "envoy.log").open("wb")
        self._process = subprocess.Popen(
            [
                self.settings.envoy_bin,
                "--config-path",
                str(self.config),
                "--admin-address-path",
                str(admin_file),
                # Shared base ids clash with other Envoys on the machine.
                "--disable-hot-restart",
                "--log-level",
                self.settings.log_level,
                *(
                    ["--concurrency", str(self.settings.envoy_concurrency)]
                    if self.settings.envoy_concurrency
                    else []
                ),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(admin_file)
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
        assert self._process is not None
        return self._process.wait()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        self._workdir.cleanup()

    def log_tail(self, lines: int = 20) -> str:
        path = Path(self._workdir.name) / "envoy.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, admin_file: Path) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EnvoyError(
                    f"envoy exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if admin_file.exists() and admin_file.read_text().strip():
                self.admin = admin_file.read_text().strip()
                try:
                    if self._get("/ready").strip() == "LIVE":
                        self.address = self._listener_address()
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise EnvoyError(f"envoy not ready after {READY_TIMEOUT}s:\n{self.log_tail()}")

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=2) as response:
            return str(response.read().decode())

    def _listener_address(self) -> str:
        statuses = json.loads(self._get("/listeners?format=json"))["listener_statuses"]
        socket = next(s for s in statuses if s["name"] == "gateway")["local_address"]
        return f"{socket['socket_address']['address']}:{socket['socket_address']['port_value']}"
