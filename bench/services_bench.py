"""Unary throughput and latency of GetProduct and PlaceOrder, with telemetry on and then off,
next to a bare grpc.aio server's GetProduct as the ceiling.

Each mode gets fresh service processes (catalog alone; orders with users, catalog, payments) and
identical load from a native generator: `python -m bench.services_bench` (or `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from bench import loadgen
from mesh.local.stack import LocalStack, free_port
from services.catalog.demo import seed_deep
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc

GET_PRODUCT = "shop.catalog.v1.CatalogService/GetProduct"
PLACE_ORDER = "shop.orders.v1.OrderService/PlaceOrder"
PRODUCT = "sku-espresso"
# Enough stock that every PlaceOrder of a run confirms: the saga measured is the happy path.
EXTRA_STOCK = 10_000_000
TARGET_GET_PRODUCT_RPS = 4000
ORDER_SERVICES = ["users", "catalog", "payments", "orders"]
TARGET_TELEMETRY_COST = 0.15


@contextmanager
def stack(services: list[str], telemetry: bool, log_level: str) -> Iterator[LocalStack]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        # Seed the catalog before it starts, so its own seeding finds products and stops there.
        seed_deep(str(workdir / "data" / "catalog.db"), {PRODUCT: EXTRA_STOCK})
        env = {"TELEMETRY": str(telemetry).lower(), "LOG_LEVEL": log_level, "METRICS_PORT": "0"}
        with LocalStack(workdir, services=services, env=env) as running:
            yield running


def get_product(address: str) -> catalog_pb2.GetProductResponse:
    with grpc.insecure_channel(address) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        reply: catalog_pb2.GetProductResponse = stub.GetProduct(
            catalog_pb2.GetProductRequest(product_id=PRODUCT), timeout=5
        )
        return reply


def load_get_product(running: LocalStack, args: argparse.Namespace) -> loadgen.Result:
    """GetProduct against the stack's catalog: a warm-up, then the measured run."""
    address = running.address("catalog")
    request = catalog_pb2.GetProductRequest(product_id=PRODUCT)
    response = get_product(address)
    load = {"requests": args.warmup, "concurrency": args.concurrency}
    loadgen.h2load(address, GET_PRODUCT, request, response, **load)
    load["requests"] = args.requests
    return loadgen.h2load(address, GET_PRODUCT, request, response, **load)


def load_place_order(running: LocalStack, args: argparse.Namespace) -> loadgen.Result:
    """PlaceOrder against the stack's orders for a new user: a warm-up, then the measured run;
    fails unless every order confirmed (the stock sold equals the orders placed)."""
    with grpc.insecure_channel(running.address("users")) as channel:
        user = (
            users_pb2_grpc.UserServiceStub(channel)
            .CreateUser(
                users_pb2.CreateUserRequest(email="bench@example.com", display_name="Bench"),
                timeout=5,
            )
            .user
        )
    data = {
        "request_id": "{{newUUID}}",
        "user_id": user.user_id,
        "items": [{"product_id": PRODUCT, "quantity": 1}],
        "payment_token": "tok_visa",
    }
    stock_before = get_product(running.address("catalog")).product.stock
    load = {"protoset": args.protoset, "concurrency": args.concurrency}
    orders = running.address("orders")
    loadgen.ghz(orders, PLACE_ORDER, data, requests=args.warmup_orders, **load)
    result = loadgen.ghz(orders, PLACE_ORDER, data, requests=args.orders, **load)
    sold = stock_before - get_product(running.address("catalog")).product.stock
    if sold != args.warmup_orders + args.orders:
        raise loadgen.LoadGenError(
            f"{sold} units sold for {args.warmup_orders + args.orders} orders:"
            " not every order confirmed"
        )
    return result


def bench_get_product(args: argparse.Namespace, telemetry: bool) -> loadgen.Result:
    with stack(["catalog"], telemetry, args.log_level) as running:
        return load_get_product(running, args)


def bench_place_order(args: argparse.Namespace, telemetry: bool) -> loadgen.Result:
    with stack(ORDER_SERVICES, telemetry, args.log_level) as running:
        return load_place_order(running, args)


def bench_bare_get_product(args: argparse.Namespace) -> loadgen.Result:
    """GetProduct from bench/bare_catalog.py under the same load: the ceiling of this machine."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.bare_catalog", str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = get_product(address)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        request = catalog_pb2.GetProductRequest(product_id=PRODUCT)
        load = {"requests": args.warmup, "concurrency": args.concurrency}
        loadgen.h2load(address, GET_PRODUCT, request, response, **load)
        load["requests"] = args.requests
        return loadgen.h2load(address, GET_PRODUCT, request, response, **load)
    finally:
        server.terminate()
        server.wait()


BENCHES = {"GetProduct": bench_get_product, "PlaceOrder": bench_place_order}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over rounds per RPC and mode, with the telemetry-on/off throughput ratio."""
    rows = []
    for rpc in BENCHES:
        medians = {}
        for telemetry in (True, False):
            mine = [r for r in runs if r["rpc"] == rpc and r["telemetry"] is telemetry]
            medians[telemetry] = {
                key: round(statistics.median(r[key] for r in mine), 3)
                for key in ("rps", "p50_ms", "p99_ms")
            }
        ratio = round(medians[True]["rps"] / medians[False]["rps"], 3)
        for telemetry in (True, False):
            rows.append({"rpc": rpc, "telemetry": telemetry, **medians[telemetry], "ratio": ratio})
    return rows


def print_table(rows: list[dict[str, Any]], bare_rps: float) -> None:
    print(f"\n{'rpc':<12}{'telemetry':>10}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}{'on/off':>8}")
    for row in rows:
        mode = "on" if row["telemetry"] else "off"
        ratio = f"{row['ratio']:.2f}" if row["telemetry"] else ""
        print(
            f"{row['rpc']:<12}{mode:>10}{row['rps']:>10.0f}"
            f"{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{ratio:>8}"
        )
    get = {row["telemetry"]: row for row in rows if row["rpc"] == "GetProduct"}
    print(
        f"\nbare grpc.aio GetProduct (bench/bare_catalog.py): {bare_rps:.0f} rps;"
        f" the catalog reaches {get[True]['rps'] / bare_rps:.0%} of it with telemetry on,"
        f" {get[False]['rps'] / bare_rps:.0%} with it off"
    )
    met = get[True]["rps"] >= TARGET_GET_PRODUCT_RPS
    print(
        f"\ntarget GetProduct >= {TARGET_GET_PRODUCT_RPS} rps with telemetry on:"
        f" {'met' if met else 'missed'} ({get[True]['rps']:.0f})"
    )
    for rpc in BENCHES:
        ratio = next(row["ratio"] for row in rows if row["rpc"] == rpc)
        cost = round(1 - ratio, 3)
        verdict = "met" if cost <= TARGET_TELEMETRY_COST else "missed"
        print(f"target {rpc} telemetry cost <= {TARGET_TELEMETRY_COST:.0%}: {verdict} ({cost:.1%})")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=30_000, help="GetProduct calls per run")
    parser.add_argument("--warmup", type=int, default=3_000, help="GetProduct warm-up calls")
    parser.add_argument("--orders", type=int, default=2_000, help="PlaceOrder calls per run")
    parser.add_argument("--warmup-orders", type=int, default=200, help="PlaceOrder warm-up calls")
    parser.add_argument("--concurrency", type=int, default=50, help="calls in flight (1 conn)")
    parser.add_argument("--rounds", type=int, default=1, help="on/off pairs; medians reported")
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the services")
    parser.add_argument("--protoset", type=Path, default=loadgen.ROOT / "build" / "shop.binpb")
    parser.add_argument("--out", type=Path, default=loadgen.ROOT / "build" / "bench")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.protoset.exists():
        raise SystemExit(f"{args.protoset} is missing: run `make descriptors`")
    loadgen.ensure_h2load()
    loadgen.ensure_ghz()
    runs = []
    bare = []
    for round_no in range(1, args.rounds + 1):
        bare_run = {
            "round": round_no,
            "rpc": "GetProduct (bare)",
            **bench_bare_get_product(args).as_dict(),
        }
        bare.append(bare_run)
        print(json.dumps(bare_run), flush=True)
        for rpc, bench in BENCHES.items():
            for telemetry in (True, False):
                load_before = os.getloadavg()[0]
                result = bench(args, telemetry)
                run = {"round": round_no, "rpc": rpc, "telemetry": telemetry, **result.as_dict()}
                run["loadavg_1m_before"] = round(load_before, 2)
                runs.append(run)
                print(json.dumps(run), flush=True)
    rows = summarise(runs)
    bare_rps = statistics.median(run["rps"] for run in bare)
    print_table(rows, bare_rps)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"services-{time.strftime('%Y%m%d-%H%M%S')}.json"
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {
        "cpus": os.cpu_count(),
        "config": config,
        "bare": bare,
        "runs": runs,
        "summary": rows,
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {path.relative_to(loadgen.ROOT)}")


if __name__ == "__main__":
    main()
