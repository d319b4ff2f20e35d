"""Benchmark (not a test): the cost of tracing, one read through the meshed gateway with spans
exported to Jaeger and without.

GetProduct crosses the gateway, its sidecar, catalog's sidecar and catalog: with tracing on, the
three Envoys and catalog each make a span per call and export it over OTLP to Jaeger (built into
build/bin on first use). Every request is sampled by default (the mesh's Telemetry), the worst
case; `--sampling 1` is Istio's default. Run: `python -m bench.tracing_bench`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.mesh_bench import Measured, gateway_env, measure
from mesh.local import jaeger
from mesh.local.jaeger import Jaeger
from mesh.local.stack import free_port
from mesh.local.supervisor import LocalMesh


@contextmanager
def meshed(
    workdir: Path, otlp_endpoint: str, sampling: float = 100.0
) -> Iterator[tuple[str, dict[str, int]]]:
    # The gateway starts every trace here; the sidecars and apps follow its decision.
    gateway = {**gateway_env(workdir), "TRACE_SAMPLING": str(sampling)}
    with LocalMesh(workdir, service_env={"gateway": gateway}, otlp_endpoint=otlp_endpoint) as mesh:
        pids = {n: s.process.pid for n, s in mesh.sidecars.items() if s.process is not None}
        yield mesh.address("gateway"), {n: pids[n] for n in ("gateway", "catalog")}


def report(off: Measured, on: Measured, traces: int) -> dict[str, object]:
    def side(m: Measured) -> dict[str, object]:
        return {"c1": m.c1.as_dict(), "c16": m.c16.as_dict()}

    def vcpu(m: Measured) -> float:
        total = sum(m.sidecar_cpu_seconds.values())
        return round(total / m.c16.seconds / (m.c16.rps / 1000) / len(m.sidecar_cpu_seconds), 3)

    return {
        "read": "GetProduct through the meshed gateway (gateway, 2 sidecars, catalog)",
        "tracing_off": side(off),
        "tracing_exporting": side(on),
        "added_ms_c1": {
            "p50": round(on.c1.p50_ms - off.c1.p50_ms, 3),
            "p99": round(on.c1.p99_ms - off.c1.p99_ms, 3),
        },
        "throughput_ratio_c16": round(on.c16.rps / off.c16.rps, 3),
        "sidecar_vcpu_per_1000_rps": {"off": vcpu(off), "on": vcpu(on)},
        "catalog_traces_in_jaeger": f"{traces} (asked for 100)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=20000, help="requests at concurrency 16")
    parser.add_argument("--sampling", type=float, default=100.0, help="percent of requests traced")
    args = parser.parse_args(argv)
    binary = jaeger.build(jaeger.jaeger_binary())
    with tempfile.TemporaryDirectory(prefix="tracing-bench-") as tmp:
        with meshed(Path(tmp) / "off", "") as (address, sidecars):
            off = measure(address, sidecars, args.requests)

        ports_of = jaeger.Ports(free_port(), free_port(), free_port())
        with Jaeger(Path(tmp) / "jaeger", ports_of, binary) as viewer:
            on_mesh = meshed(Path(tmp) / "on", viewer.otlp_endpoint, args.sampling)
            with on_mesh as (address, sidecars):
                on = measure(address, sidecars, args.requests)
            traces = len(viewer.query.traces("catalog", limit=100))
    print(json.dumps(report(off, on, traces), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
