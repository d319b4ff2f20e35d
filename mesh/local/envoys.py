"""Sidecar Envoy processes: write their xDS files atomically, run them, and confirm each apply.

Envoy reloads file-based resources on a rename into the watched directory, and reports a
rejected file only in its stats, so every apply waits until each subscription shows the new
version (or a rejection) on the admin port.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesh.local.sidecar import Rendered
from mesh.local.xds import JSON
from runner.envoy import EnvoyProcess

APPLY_TIMEOUT = 10.0
# Subscriptions whose version_text tells that a file was taken: LDS, CDS and each RDS config.
_SUBSCRIPTIONS = (".lds.", ".cds.", ".rds.")


class Sidecar(EnvoyProcess):
    """One Envoy with its bootstrap, watched xDS directory, admin port and log under `directory`."""

    def __init__(self, name: str, directory: Path, envoy_bin: str) -> None:
        super().__init__(
            f"{name} sidecar",
            directory / "envoy.json",
            directory,
            envoy_bin,
            [
                # A listener change (an EnvoyFilter) takes over its connections within a second.
                "--drain-time-s",
                "1",
                "--drain-strategy",
                "immediate",
                # A typo in an EnvoyFilter value is an error, not a silently ignored field.
                "--reject-unknown-dynamic-fields",
                "--concurrency",
                "1",
                "--log-level",
                "warning",
            ],
            own_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
        )
        self.name = name
        self.xds_dir = directory / "xds"
        self._staging = directory / "staging"

    # --- configuration ---------------------------------------------------------------------

    def write_bootstrap(self, bootstrap: JSON) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(bootstrap, indent=2))

    def write(self, rendered: Rendered, version: str) -> None:
        """Swap in every xDS file: clusters first, so that new routes never name a missing one.

        Each file is written beside the watched directory, then renamed into it (atomic).
        """
        self.xds_dir.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        files = rendered.files(version)
        order = sorted(files, key=lambda f: (f != "cds.json", f != "lds.json", f))
        for name in order:
            staged = self._staging / name
            staged.write_text(json.dumps(files[name], indent=2))
            os.replace(staged, self.xds_dir / name)

    # --- admin -----------------------------------------------------------------------------

    def stats(self, prefix: str = "") -> dict[str, str]:
        """Counters, gauges and text readouts by name (`prefix` filters, as a plain prefix)."""
        result = {}
        for line in self.get("/stats").splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(prefix):
                result[name] = value.strip().strip('"')
        return result

    def counter(self, name: str) -> int:
        value = self.stats(name).get(name, "0")
        return int(value) if value.isdigit() else 0

    def config_dump(self, resource: str) -> list[Any]:
        dump = json.loads(self.get(f"/config_dump?resource={resource}"))
        return list(dump.get("configs", []))

    def confirm(
        self, version: str, before: Mapping[str, str], timeout: float = APPLY_TIMEOUT
    ) -> list[str]:
        """Wait until every xDS subscription took `version`; the problems found, if any.

        Success is every subscription at `version`. A rejection counted on the way may come from
        a reload of an older file (a rename reloads them all), so it only explains a failure.
        """
        deadline = time.monotonic() + timeout
        rejected_since: float | None = None
        while True:
            stats = self.stats()
            stale = sorted(
                f"{name} is still {value!r}"
                for name, value in stats.items()
                if name.endswith(".version_text") and _is_subscription(name) and value != version
            )
            if not stale:
                return []
            rejected = [
                f"{name} went from {before.get(name, '0')} to {value}"
                for name, value in stats.items()
                if name.endswith((".update_rejected", ".update_failure"))
                and _is_subscription(name)
                and value != before.get(name, "0")
            ]
            now = time.monotonic()
            if rejected and rejected_since is None:
                rejected_since = now
            if now > deadline or (rejected_since is not None and now - rejected_since > 1.0):
                log = [line for line in self.log_tail(40).splitlines() if "rejected" in line]
                return rejected + stale + log[-3:]
            time.sleep(0.05)


def _is_subscription(stat: str) -> bool:
    return any(part in stat for part in _SUBSCRIPTIONS)
