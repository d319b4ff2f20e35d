"""PlaceOrder on SQLite and on PostgreSQL in one run: users, catalog, payments and orders as real
processes on each backend in turn, the same ghz load, medians of the rounds and the ratio.

`python -m bench.database_bench [--rounds 3]`. PostgreSQL is tools/postgres.py's throwaway server
(a test server: fsync is off, which flatters its writes); each service gets its own database.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import grpc

from bench import loadgen
from bench.services_bench import PLACE_ORDER, PRODUCT
from mesh.local.stack import LocalStack
from services.catalog.demo import seed_deep
from shop.users.v1 import users_pb2, users_pb2_grpc
from tools.postgres import TempPostgres

SERVICES = ["users", "catalog", "payments", "orders"]
EXTRA_STOCK = 10_000_000


def place_orders(args: argparse.Namespace, databases: dict[str, str]) -> loadgen.Result:
    with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
        workdir = Path(tmp)
        catalog = databases.get("catalog") or str(workdir / "data" / "catalog.db")
        seed_deep(catalog, {PRODUCT: EXTRA_STOCK})
        env = {"LOG_LEVEL": "WARNING", "METRICS_PORT": "0", "WORKERS": "1"}
        service_env = {name: {"DATABASE_URL": url} for name, url in databases.items()}
        service_env.setdefault("catalog", {})["DATABASE_PATH"] = catalog
        with LocalStack(workdir, services=SERVICES, env=env, service_env=service_env) as stack:
            with grpc.insecure_channel(stack.address("users")) as channel:
                user = users_pb2_grpc.UserServiceStub(channel).CreateUser(
                    users_pb2.CreateUserRequest(email="db@example.com", display_name="Bench"),
                    timeout=10,
                )
            data = {
                "request_id": "{{newUUID}}",
                "user_id": user.user.user_id,
                "items": [{"product_id": PRODUCT, "quantity": 1}],
                "payment_token": "tok_visa",
            }
            load = {"protoset": args.protoset, "concurrency": args.concurrency}
            address = stack.address("orders")
            loadgen.ghz(address, PLACE_ORDER, data, requests=args.warmup, **load)
            return loadgen.ghz(address, PLACE_ORDER, data, requests=args.orders, **load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=1000, help="PlaceOrder calls per run")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--protoset", type=Path, default=loadgen.ROOT / "build" / "shop.binpb")
    args = parser.parse_args()
    loadgen.ensure_ghz()
    results: dict[str, list[loadgen.Result]] = {"sqlite": [], "postgres": []}
    with TempPostgres() as postgres:
        for round_no in range(1, args.rounds + 1):
            for backend in results:
                databases = (
                    {name: postgres.create_database(name) for name in SERVICES}
                    if backend == "postgres"
                    else {}
                )
                result = place_orders(args, databases)
                results[backend].append(result)
                print(f"round {round_no} {backend:<9} {result.as_dict()}", flush=True)
    medians = {
        backend: {
            k: statistics.median(getattr(r, k) for r in runs) for k in ("rps", "p50_ms", "p99_ms")
        }
        for backend, runs in results.items()
    }
    print(f"\n{'backend':<10}{'rps':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for backend, row in medians.items():
        print(f"{backend:<10}{row['rps']:>8.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}")
    ratio = medians["postgres"]["rps"] / medians["sqlite"]["rps"]
    print(f"\nPlaceOrder on PostgreSQL is {ratio:.2f}x SQLite (medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
