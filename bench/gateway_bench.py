"""Benchmark (not a test): GetProduct by direct gRPC vs REST through the gateway.

Same concurrency and request count for both; h2load (nghttp2-client) is the load generator in
its own process. Run: `python -m bench.gateway_bench [--requests N --clients C --streams S]`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from contracts import descriptors
from gateway import auth, render
from gateway.envoy import Envoy
from gateway.settings import Settings
from mesh.local.stack import LocalStack
from shop.catalog.v1 import catalog_pb2

PRODUCT = "sku-espresso"


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    ok: int
    latencies_us: list[int]

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds

    def percentile(self, p: float) -> float:
        return statistics.quantiles(self.latencies_us, n=100)[int(p) - 1] / 1000


def h2load(name: str, url: str, workdir: Path, args: argparse.Namespace, *extra: str) -> Run:
    log = workdir / f"{name}.log"
    command = [
        args.h2load,
        "-n",
        str(args.requests),
        "-c",
        str(args.clients),
        "-m",
        str(args.streams),
        "-t",
        "1",
        "--log-file",
        str(log),
        *extra,
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finished = next(line for line in output.splitlines() if line.startswith("finished in"))
    seconds = _seconds(finished.split()[2].rstrip(","))
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    ok = [row for row in rows if row[1] == "200"]
    if len(ok) != len(rows):
        raise SystemExit(f"{name}: {len(rows) - len(ok)} requests failed\n{output}")
    return Run(name, seconds, len(ok), [int(row[2]) for row in ok])


def _seconds(text: str) -> float:
    for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * scale
    raise ValueError(f"unexpected h2load duration {text!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--h2load", default=shutil.which("h2load") or "h2load")
    parser.add_argument(
        "--envoy-concurrency", type=int, default=1, help="gateway Envoy workers (0: one per core)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as temp:
        workdir = Path(temp)
        limits = {f"RATE_LIMIT_{g}": "1000000" for g in ("PUBLIC", "READ", "WRITE")}
        with LocalStack(workdir / "stack", services=["catalog"]) as stack:
            settings = Settings.from_env(
                {
                    "GATEWAY_PORT": "0",
                    "ADMIN_PORT": "0",
                    "CATALOG_ADDR": stack.address("catalog"),
                    "JWKS_FILE": str(workdir / "jwks.json"),
                    "SIGNING_KEY_FILE": str(workdir / "key.pem"),
                    "ENVOY_CONCURRENCY": str(args.envoy_concurrency),
                    **limits,
                }
            )
            auth.ensure_dev_key(settings)
            config = render.write(
                settings, descriptors.load(settings.descriptor_set), workdir / "envoy.json"
            )
            with Envoy(settings, config) as envoy:
                rest_url = f"http://{envoy.address}/v1/products/{PRODUCT}"
                assert httpx.get(rest_url).json()["product"]["productId"] == PRODUCT
                request = catalog_pb2.GetProductRequest(product_id=PRODUCT).SerializeToString()
                body = workdir / "request.bin"
                body.write_bytes(struct.pack(">?I", False, len(request)) + request)
                grpc_url = (
                    f"http://{stack.address('catalog')}/shop.catalog.v1.CatalogService/GetProduct"
                )
                grpc_headers = (
                    "-d",
                    str(body),
                    "-H",
                    "content-type: application/grpc",
                    "-H",
                    "te: trailers",
                )
                # Warm both paths, then measure each once.
                h2load("warmup-grpc", grpc_url, workdir, _scaled(args, 10), *grpc_headers)
                h2load("warmup-rest", rest_url, workdir, _scaled(args, 10))
                direct = h2load("grpc", grpc_url, workdir, args, *grpc_headers)
                rest = h2load("rest", rest_url, workdir, args)
    report(direct, rest, args)
    return 0


def _scaled(args: argparse.Namespace, divisor: int) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "requests": max(args.requests // divisor, 100)})


def report(direct: Run, rest: Run, args: argparse.Namespace) -> None:
    print(
        f"GetProduct, {args.requests} requests, {args.clients} connections x "
        f"{args.streams} streams, h2load"
    )
    print(f"{'path':<6} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for run in (direct, rest):
        print(
            f"{run.name:<6} {run.throughput:>10.0f} {run.percentile(50):>8.2f} "
            f"{run.percentile(99):>8.2f}"
        )
    print(f"REST/gRPC throughput ratio: {rest.throughput / direct.throughput:.2f}")
    print(
        f"added p50: {rest.percentile(50) - direct.percentile(50):.2f} ms, "
        f"added p99: {rest.percentile(99) - direct.percentile(99):.2f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
