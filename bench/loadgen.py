"""Native load generators in their own processes: h2load for fixed requests, ghz for templated.

A Python client would eat the CPU it measures; h2load needs about 45 µs of CPU per gRPC call here,
ghz about 230 µs, so h2load drives the high-rate reads and ghz the calls that need unique data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from services.runtime.topology import ROOT as ROOT  # re-exported: the tools and benches use it

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.120.0"
GHZ_BIN = ROOT / "build" / "bin" / "ghz"


class LoadGenError(RuntimeError):
    """A load generator is missing, failed, or reported calls that did not succeed."""


@dataclass(frozen=True)
class Result:
    """One measured run: every call succeeded, or `LoadGenError` was raised instead."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_h2load() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise LoadGenError("h2load not found: install it with `apt-get install -y nghttp2-client`")
    return path


def ensure_ghz() -> Path:
    """Return build/bin/ghz, building the pinned version with `go install` on first use."""
    if GHZ_BIN.exists():
        return GHZ_BIN
    go = shutil.which("go")
    if go is None:
        raise LoadGenError(f"ghz needs Go to build: install Go, or put a ghz binary at {GHZ_BIN}")
    GHZ_BIN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", f"{GHZ_MODULE}@{GHZ_VERSION}"],
        env={**os.environ, "GOBIN": str(GHZ_BIN.parent)},
        check=True,
    )
    return GHZ_BIN


def grpc_frame(message: Message) -> bytes:
    """The gRPC length-prefixed message (uncompressed) that carries `message` on the wire."""
    body = message.SerializeToString()
    return b"\0" + struct.pack(">I", len(body)) + body


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def h2load(
    address: str,
    method: str,
    request: Message,
    response: Message,
    *,
    requests: int,
    concurrency: int,
) -> Result:
    """Send `request` `requests` times over one HTTP/2 connection with `concurrency` streams.

    h2load sees HTTP status only, not grpc-status; a failed call carries no response message, so
    the run counts as good only if exactly `requests` copies of `response` came back.
    """
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        data = Path(tmp) / "request.bin"
        data.write_bytes(grpc_frame(request))
        log = Path(tmp) / "requests.tsv"
        run = subprocess.run(
            [
                ensure_h2load(),
                f"--requests={requests}",
                "--clients=1",
                f"--max-concurrent-streams={concurrency}",
                f"--data={data}",
                "--header=content-type: application/grpc",
                "--header=te: trailers",
                f"--log-file={log}",
                f"http://{address}/{method}",
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise LoadGenError(f"h2load failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        latencies = sorted(
            int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line
        )
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", run.stdout)
    succeeded = re.search(r"(\d+) succeeded", run.stdout)
    data_bytes = re.search(r"\((\d+)\) data", run.stdout)
    if finished is None or succeeded is None or data_bytes is None:
        raise LoadGenError(f"cannot read h2load's report:\n{run.stdout}")
    expected_bytes = requests * len(grpc_frame(response))
    if int(succeeded[1]) != requests or int(data_bytes[1]) != expected_bytes:
        raise LoadGenError(
            f"{method}: {succeeded[1]}/{requests} HTTP successes and {data_bytes[1]} response"
            f" bytes (expected {expected_bytes}): some calls failed\n{run.stdout}"
        )
    seconds = float(finished[1]) / (1000 if finished[2] == "ms" else 1)
    return Result(
        requests=requests,
        seconds=round(seconds, 3),
        rps=round(float(finished[3]), 1),
        p50_ms=round(percentile(latencies, 0.50), 3),
        p99_ms=round(percentile(latencies, 0.99), 3),
    )


def ghz(
    address: str,
    method: str,
    data: dict[str, Any],
    *,
    protoset: Path,
    requests: int,
    concurrency: int,
) -> Result:
    """Run ghz with templated `data` (e.g. `{{newUUID}}`) over one connection; all must be OK."""
    run = subprocess.run(
        [
            str(ensure_ghz()),
            "--insecure",
            f"--protoset={protoset}",
            f"--call={method}",
            f"--data={json.dumps(data)}",
            f"--total={requests}",
            f"--concurrency={concurrency}",
            "--connections=1",
            "--format=json",
            address,
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0 and not run.stdout:
        raise LoadGenError(f"ghz failed ({run.returncode}):\n{run.stderr}")
    report = json.loads(run.stdout)
    statuses = report.get("statusCodeDistribution", {})
    if statuses.get("OK", 0) != requests:
        raise LoadGenError(f"{method}: status codes {statuses}: {report.get('errorDistribution')}")
    latency = {int(p["percentage"]): p["latency"] / 1e6 for p in report["latencyDistribution"]}
    return Result(
        requests=requests,
        seconds=round(report["total"] / 1e9, 3),
        rps=round(report["rps"], 1),
        p50_ms=round(latency[50], 3),
        p99_ms=round(latency[99], 3),
    )
