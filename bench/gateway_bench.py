"""Benchmark (not a test): GetProduct by direct gRPC vs REST through the gateway.

Same concurrency and request count for both; h2load (nghttp2-client) is the load generator in
its own process. Run: `python -m bench.gateway_bench [--requests N --clients C --streams S]`.

`--body-check` measures the unknown-JSON-field check (gateway/body_fields.py) instead: GET
/v1/products/{id} and POST /v1/users through two gateways, one with the check and one rendered
without it, in alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from contracts import descriptors
from gateway import auth, body_fields, render
from gateway.envoy import Envoy
from gateway.settings import Settings
from mesh.local.stack import LocalStack, free_port
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


def h2load(
    name: str, url: str, workdir: Path, args: argparse.Namespace, *extra: str, status: str = "200"
) -> Run:
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
    ok = [row for row in rows if row[1] == status]
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
    parser.add_argument(
        "--body-check", action="store_true", help="measure the unknown-body-field check instead"
    )
    parser.add_argument("--rounds", type=int, default=3, help="--body-check rounds (medians)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as temp:
        workdir = Path(temp)
        limits = {f"RATE_LIMIT_{g}": "1000000" for g in ("PUBLIC", "READ", "WRITE")}
        services = ["catalog", "users"] if args.body_check else ["catalog"]
        with LocalStack(workdir / "stack", services=services) as stack:
            settings = Settings.from_env(
                {
                    "GATEWAY_PORT": "0",
                    "ADMIN_PORT": "0",
                    **{f"{name.upper()}_ADDR": stack.address(name) for name in services},
                    # Nothing listens here: --body-check's orders POSTs stop at the gateway (503).
                    "ORDERS_ADDR": f"127.0.0.1:{free_port()}",
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
            if args.body_check:
                body_check(settings, config, workdir, args)
                return 0
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


def without_body_check(config: dict[str, Any]) -> dict[str, Any]:
    """The rendered bootstrap less the Lua filter and its per-route configs: the gateway as it
    was before the check."""
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["http_filters"] = [f for f in manager["http_filters"] if f["name"] != body_fields.LUA]
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            route.get("typed_per_filter_config", {}).pop(body_fields.LUA, None)
    return config


def body_check(settings: Settings, config: Path, workdir: Path, args: argparse.Namespace) -> None:
    """GET and POST through the gateway with the check and without it, in alternating rounds."""
    plain = workdir / "envoy-without-check.json"
    plain.write_text(json.dumps(without_body_check(json.loads(config.read_text()))))
    user = {"email": "bench@bench.example", "displayName": "Bench User"}
    body = workdir / "user.json"
    body.write_text(json.dumps(user))
    post = ("-d", str(body), "-H", "content-type: application/json")
    # A larger body (three items) whose walk is all the gateway does besides routing: its upstream
    # is down, so the 503 costs the same with or without the check.
    place = workdir / "order.json"
    place.write_text(
        json.dumps(
            {
                "requestId": "req-bench-0001",
                "userId": "usr_bench",
                "paymentToken": "tok_visa",
                "items": [
                    {"productId": product, "quantity": 2}
                    for product in ("sku-espresso", "sku-grinder", "sku-filter-papers")
                ],
            }
        )
    )
    token = auth.mint_token(settings, "usr_bench")
    orders = (
        *("-d", str(place), "-H", "content-type: application/json"),
        *("-H", f"authorization: Bearer {token}"),
    )
    runs: dict[tuple[str, str], list[Run]] = {}
    # The gateway Envoy's own CPU per request: under a loaded machine it varies less than
    # throughput, which the Python services behind it bound.
    cpu: dict[tuple[str, str], list[float]] = {}
    with Envoy(settings, config) as checked, Envoy(settings, plain) as unchecked:
        gateways = {"with": checked, "without": unchecked}
        configs = {"with": config, "without": plain}

        def measure(method: str, name: str, url: str, *extra: str, status: str = "200") -> None:
            before = _cpu_seconds(configs[name])
            run = h2load(
                f"{method.replace(' ', '-')}-{name}-{len(runs.get((method, name), []))}",
                url,
                workdir,
                args,
                *extra,
                status=status,
            )
            used = _cpu_seconds(configs[name]) - before
            runs.setdefault((method, name), []).append(run)
            cpu.setdefault((method, name), []).append(used / run.ok * 1e6)

        # The user exists from here on: every measured POST is a 409 from the users service.
        httpx.post(f"http://{checked.address}/v1/users", json=user).raise_for_status()
        for round_ in range(args.rounds):
            order = ["without", "with"] if round_ % 2 == 0 else ["with", "without"]
            for name in order:
                address = gateways[name].address
                get = f"http://{address}/v1/products/{PRODUCT}"
                users = f"http://{address}/v1/users"
                if round_ == 0:
                    h2load(f"warmup-get-{name}", get, workdir, _scaled(args, 10))
                    h2load(
                        f"warmup-post-{name}",
                        users,
                        workdir,
                        _scaled(args, 10),
                        *post,
                        status="409",
                    )
                measure("GET", name, get)
                measure("POST", name, users, *post, status="409")
                measure("POST 503", name, f"http://{address}/v1/orders", *orders, status="503")
    print(
        f"Unknown-field check: {args.requests} requests x {args.rounds} rounds (medians), "
        f"{args.clients} connections x {args.streams} streams, h2load, "
        f"Envoy concurrency {args.envoy_concurrency}"
    )
    print(f"POST /v1/users body: {len(body.read_bytes())} bytes (answered 409 by the service)")
    print(f"POST 503: /v1/orders, {len(place.read_bytes())} bytes, its upstream down")
    print(
        f"{'request':<8} {'check':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'Envoy CPU us/req':>17}"
    )
    for (method, name), measured in runs.items():
        print(
            f"{method:<8} {name:<8} {statistics.median(r.throughput for r in measured):>9.0f} "
            f"{statistics.median(r.percentile(50) for r in measured):>8.2f} "
            f"{statistics.median(r.percentile(99) for r in measured):>8.2f} "
            f"{statistics.median(cpu[method, name]):>17.1f}"
        )


def _cpu_seconds(config: Path) -> float:
    """User and system CPU seconds of the Envoy running `config` (found by its command line)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if str(config).encode() not in command:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        # utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no Envoy runs {config}")


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
