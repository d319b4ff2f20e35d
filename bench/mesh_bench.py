"""Benchmark (not a test): one read through the gateway, without and with Envoy sidecars.

GetProduct goes gateway -> catalog. Without the mesh the gateway calls the app directly; with it,
the call crosses one mesh hop: the gateway's sidecar and catalog's sidecar, mTLS between them.
Same load for both, h2load in its own process. Run: `python -m bench.mesh_bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.loadgen import Result, h2load
from mesh.local.stack import LocalStack, grpc_services
from mesh.local.supervisor import LocalMesh
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

METHOD = "shop.catalog.v1.CatalogService/GetProduct"
REQUEST = catalog_pb2.GetProductRequest(product_id="sku-mug")
HOPS = 1  # gateway -> catalog: one hop, two sidecars
LIMITS = {f"RATE_LIMIT_{g}": "100000000" for g in ("PUBLIC", "READ", "WRITE")}


@dataclass(frozen=True)
class Measured:
    c1: Result
    c16: Result
    sidecar_cpu_seconds: Mapping[str, float]  # during the c16 run


def gateway_env(workdir: Path) -> dict[str, str]:
    return {
        "JWKS_FILE": str(workdir / "gateway" / "jwks.json"),
        "SIGNING_KEY_FILE": str(workdir / "gateway" / "signing-key.pem"),
        **LIMITS,
    }


@contextmanager
def plain(workdir: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """The services and the gateway as plain processes: the gateway calls apps directly."""
    with LocalStack(
        workdir,
        services=[*grpc_services(), "gateway"],
        service_env={"gateway": gateway_env(workdir)},
    ) as gateway:
        yield gateway.address("gateway"), {}


@contextmanager
def meshed(workdir: Path) -> Iterator[tuple[str, dict[str, int]]]:
    with LocalMesh(workdir, service_env={"gateway": gateway_env(workdir)}) as mesh:
        pids = {n: s.process.pid for n, s in mesh.sidecars.items() if s.process is not None}
        yield mesh.address("gateway"), {n: pids[n] for n in ("gateway", "catalog")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(address: str, sidecars: Mapping[str, int], requests: int) -> Measured:
    with grpc.insecure_channel(address) as channel:
        response = catalog_pb2_grpc.CatalogServiceStub(channel).GetProduct(REQUEST, timeout=10)
    response = catalog_pb2.GetProductResponse.FromString(response.SerializeToString())

    def run(count: int, concurrency: int) -> Result:
        return h2load(address, METHOD, REQUEST, response, requests=count, concurrency=concurrency)

    run(min(500, requests), 4)  # warm up connections and caches
    c1 = run(requests // 5, 1)
    before = {name: cpu_seconds(pid) for name, pid in sidecars.items()}
    c16 = run(requests, 16)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in sidecars.items()}
    return Measured(c1, c16, used)


def report(without: Measured, with_mesh: Measured) -> dict[str, object]:
    added_p50 = with_mesh.c1.p50_ms - without.c1.p50_ms
    added_p99 = with_mesh.c1.p99_ms - without.c1.p99_ms
    rps = with_mesh.c16.rps
    cpu = {
        name: round(seconds / with_mesh.c16.seconds / (rps / 1000), 3)
        for name, seconds in with_mesh.sidecar_cpu_seconds.items()
    }
    return {
        "read": f"{METHOD} through the gateway (native gRPC on its listener)",
        "without_sidecars": {"c1": without.c1.as_dict(), "c16": without.c16.as_dict()},
        "with_sidecars": {"c1": with_mesh.c1.as_dict(), "c16": with_mesh.c16.as_dict()},
        "added_per_hop_ms": {"p50": round(added_p50 / HOPS, 3), "p99": round(added_p99 / HOPS, 3)},
        "added_per_sidecar_ms": {
            "p50": round(added_p50 / HOPS / 2, 3),
            "p99": round(added_p99 / HOPS / 2, 3),
        },
        "throughput_ratio_c16": round(rps / without.c16.rps, 3),
        "sidecar_vcpu_per_1000_rps": {
            **cpu,
            "per_sidecar_mean": round(sum(cpu.values()) / len(cpu), 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mesh_bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=20000, help="requests at concurrency 16")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as tmp:
        with plain(Path(tmp) / "plain") as (address, sidecars):
            without = measure(address, sidecars, args.requests)
        with meshed(Path(tmp) / "mesh") as (address, sidecars):
            with_mesh = measure(address, sidecars, args.requests)
    print(json.dumps(report(without, with_mesh), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
