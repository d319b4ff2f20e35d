"""A program this process started and owns: its log file, a graceful stop, a kill.

Every long-running child (Envoy, the apps, Jaeger, Kafka, PostgreSQL) is started and stopped
through this one class, so that each stops the same way and shows the end of its log on failure.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


class Child:
    """`command` run with its output appended to `log_path`. The first start of a `Child`
    truncates the log; a restart appends, so a crash and its recovery read as one story.
    `own_session` keeps a terminal's Ctrl-C away from it, so that its owner stops it in order;
    `user` runs it as another account (PostgreSQL refuses to run as root)."""

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        own_session: bool = False,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = None if env is None else dict(env)  # read at each start
        self._own_session = own_session
        self._user = user
        self._stop_signal = stop_signal
        self._log: IO[bytes] | None = None
        self._started = False
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab" if self._started else "wb")
        self._started = True
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self._own_session,
            user=self._user,
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended; None while it runs or before it started."""
        return None if self.process is None else self.process.poll()

    def signal(self, signum: signal.Signals) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def stop(self, grace: float = 5.0) -> int | None:
        """The stop signal (SIGTERM unless told), wait up to `grace`, then SIGKILL; the exit code
        (None if never started)."""
        process = self.process
        if process is None:
            return None
        self.signal(self._stop_signal)
        try:
            code = process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
