"""Jaeger v2 as the local trace viewer: built once with Go into build/bin, run with in-memory
storage and OTLP in, and read through its query API (`/api/traces`).

The Go module ships no UI assets (jaeger-ui is built with npm, outside the module), so the query
server serves `mesh/local/viewer/index.html`, a small page over the same API, as its UI.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from runner.child import Child
from services.runtime.topology import ROOT

# tools/jaeger/go.mod pins the version: `go install ...@version` refuses Jaeger's module, whose
# go.mod has a replace directive, so the build runs inside a module that copies it.
MODULE_DIR = ROOT / "tools" / "jaeger"
BINARY = ROOT / "build" / "bin" / "jaeger"
VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
BUILD_TIMEOUT = 1800.0  # a first build on two shared cores takes several minutes
READY_TIMEOUT = 30.0
HOST = "127.0.0.1"


class JaegerError(RuntimeError):
    """Jaeger could not be built or started, or its API failed; the message says why."""


def jaeger_binary(environ: Mapping[str, str] = os.environ) -> Path:
    """`JAEGER_BIN` if set, else build/bin/jaeger (which `build` makes)."""
    return Path(environ["JAEGER_BIN"]) if environ.get("JAEGER_BIN") else BINARY


def build(binary: Path = BINARY, timeout: float = BUILD_TIMEOUT) -> Path:
    """Build the pinned Jaeger into `binary`'s folder unless it is there; one build at a time."""
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".jaeger.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build finishes; then we find its binary
        if binary.exists():
            return binary
        print(f"building Jaeger into {binary} (once; several minutes) ...", flush=True)
        try:
            result = subprocess.run(
                ["go", "install", "github.com/jaegertracing/jaeger/cmd/jaeger"],
                cwd=MODULE_DIR,
                env={**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-buildvcs=false"},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise JaegerError("building Jaeger needs Go (`go` is not on PATH)") from None
        except subprocess.TimeoutExpired:
            raise JaegerError(f"building Jaeger took more than {timeout:.0f}s") from None
        if result.returncode != 0:
            raise JaegerError(f"go install of Jaeger failed:\n{result.stderr[-3000:]}")
    return binary


@dataclass(frozen=True)
class Ports:
    """Where Jaeger listens: OTLP/gRPC in, and the query API (HTTP) with the viewer."""

    otlp: int
    query: int
    query_grpc: int


def config(ports: Ports, viewer: Path = VIEWER_DIR) -> dict[str, Any]:
    """A Jaeger v2 (OpenTelemetry Collector) configuration: OTLP/gRPC in, memory storage,
    query API and viewer on loopback, no listeners of its own beyond those."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            # The collector's own metrics would bind :8888.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memory": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {
                "storage": {"traces": "memory"},
                "http": {"endpoint": f"{HOST}:{ports.query}"},
                "grpc": {"endpoint": f"{HOST}:{ports.query_grpc}"},
                "ui": {"assets_path": str(viewer)},
            },
        },
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{HOST}:{ports.otlp}"}}}},
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory"}},
    }


@dataclass(frozen=True)
class Span:
    """One span as the query API returns it, with its service and parent resolved."""

    trace_id: str
    span_id: str
    parent_id: str
    service: str
    name: str
    kind: str  # server, client, consumer, ... (OTel span kinds, lower case)
    tags: Mapping[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> bool:
        return self.tags.get("error") is True or self.tags.get("otel.status_code") == "ERROR"


def spans_of(trace: Mapping[str, Any]) -> list[Span]:
    """The spans of one trace in the query API's JSON (`data[i]` of `/api/traces`)."""
    processes = {key: p["serviceName"] for key, p in trace.get("processes", {}).items()}
    found = []
    for span in trace.get("spans", []):
        parents = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        found.append(
            Span(
                trace_id=span["traceID"],
                span_id=span["spanID"],
                parent_id=parents[0] if parents else "",
                service=processes.get(span["processID"], "?"),
                name=span["operationName"],
                kind=str(tags.get("span.kind", "")),
                tags=tags,
            )
        )
    return found


class JaegerQuery:
    """A client of Jaeger's query API (the one the UI uses)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def _get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {"data": []}
            raise JaegerError(f"GET {url}: {error.code} {error.read()[:300]!r}") from None

    def services(self) -> list[str]:
        return sorted(self._get("/api/services").get("data") or [])

    def traces(
        self,
        service: str,
        operation: str | None = None,
        limit: int = 20,
        tags: Mapping[str, str] | None = None,
    ) -> list[list[Span]]:
        """The newest traces with a span of `service` (and `operation`, and `tags`)."""
        found = self._get(
            "/api/traces",
            service=service,
            operation=operation,
            limit=limit,
            tags=json.dumps(tags) if tags else None,
        )
        return [spans_of(trace) for trace in found.get("data") or []]

    def trace(self, trace_id: str) -> list[Span]:
        """Every span of one trace (none if Jaeger does not have it yet)."""
        found = self._get(f"/api/traces/{trace_id}").get("data") or []
        return spans_of(found[0]) if found else []

    def wait_for_trace(
        self, trace_id: str, done: Any, timeout: float = 30.0, poll: float = 0.5
    ) -> list[Span]:
        """Poll until `done(spans)` holds for the trace (spans arrive in batches); its spans."""
        deadline = time.monotonic() + timeout
        spans = self.trace(trace_id)
        while not done(spans) and time.monotonic() < deadline:
            time.sleep(poll)
            spans = self.trace(trace_id)
        return spans


class Jaeger:
    """A Jaeger process this process owns, with its config and log under `directory`."""

    def __init__(self, directory: Path, ports: Ports, binary: Path | None = None) -> None:
        self.directory = directory
        self.ports = ports
        self.binary = binary or jaeger_binary()
        config_path = directory / "jaeger.yaml"
        # Ctrl-C reaches the supervisor, which stops Jaeger in order.
        self.child = Child(
            [str(self.binary), "--config", str(config_path)],
            directory / "jaeger.log",
            own_session=True,
        )
        self.query = JaegerQuery(self.ui)

    @property
    def otlp_endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT should say for the apps and Envoys."""
        return f"http://{HOST}:{self.ports.otlp}"

    @property
    def ui(self) -> str:
        return f"http://{HOST}:{self.ports.query}"

    def __enter__(self) -> Jaeger:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if not self.binary.exists():
            raise JaegerError(f"{self.binary} is missing: build it with `make observe-build`")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "jaeger.yaml").write_text(
            yaml.safe_dump(config(self.ports), sort_keys=False)
        )
        self.child.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.child.running:
                raise JaegerError(f"Jaeger exited:\n{self.child.log_tail()}")
            try:
                self.query.services()
                return
            except (OSError, JaegerError):
                time.sleep(0.1)
        raise JaegerError(f"Jaeger not ready after {timeout}s:\n{self.child.log_tail()}")

    def alive(self) -> bool:
        return self.child.running

    def stop(self, grace: float = 5.0) -> None:
        self.child.stop(grace)
