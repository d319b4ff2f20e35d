"""Events through outbox → stream → feed: events per second and commit-to-feed lag.

Each round runs the five services and places orders with ghz (3 events per confirmed order:
OrderPlaced, PaymentCaptured, OrderConfirmed), twice:

- live: notifications follows while orders are placed at full speed; the lag of each event is
  the time from its producer's commit to its feed entry's commit (both stamped in the databases);
- catch-up: notifications is stopped while the orders are placed, then started; the backlog's
  drain rate is the stream and feed's ceiling, without the saga competing for the CPU.

`python -m bench.events_bench [--rounds 3]`; results also go to build/bench/events-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import grpc

from bench import loadgen
from bench.services_bench import PLACE_ORDER, PRODUCT, stack
from mesh.local.stack import LocalStack, grpc_services
from shop.users.v1 import users_pb2, users_pb2_grpc

PRODUCERS = ("orders", "payments")


def query(running: LocalStack, service: str, sql: str, *args: object) -> list[Any]:
    path = Path(running.workloads[service].env["DATABASE_PATH"])
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


def committed(running: LocalStack, since: float) -> dict[str, float]:
    """Commit time of every event the producers wrote since `since`, by event id."""
    sql = "SELECT event_id, create_time FROM outbox WHERE create_time >= ?"
    return {e: t for service in PRODUCERS for e, t in query(running, service, sql, since)}


def applied(running: LocalStack) -> dict[str, float]:
    sql = "SELECT event_id, applied_time FROM applied_events"
    return dict(query(running, "notifications", sql))


def wait_applied(running: LocalStack, wanted: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        done = applied(running)
        if wanted <= done.keys():
            return done
        if time.monotonic() > deadline:
            missing = len(wanted - done.keys())
            raise loadgen.LoadGenError(f"{missing} events not in the feed after {timeout}s")
        time.sleep(0.1)


def place_orders(args: argparse.Namespace, running: LocalStack, user_id: str, n: int) -> Any:
    data = {
        "request_id": "{{newUUID}}",
        "user_id": user_id,
        "items": [{"product_id": PRODUCT, "quantity": 1}],
        "payment_token": "tok_visa",
    }
    load = {"protoset": args.protoset, "concurrency": args.concurrency, "requests": n}
    return loadgen.ghz(running.address("orders"), PLACE_ORDER, data, **load)


def one_round(args: argparse.Namespace, live: bool) -> dict[str, Any]:
    with stack(grpc_services(), telemetry=True, log_level=args.log_level) as running:
        with grpc.insecure_channel(running.address("users")) as channel:
            user = users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(email="events@example.com", display_name="Bench"),
                timeout=5,
            )
        place_orders(args, running, user.user.user_id, args.warmup_orders)
        wait_applied(running, set(committed(running, 0)), args.timeout)
        if not live:
            running.stop("notifications")
        start = time.time()
        orders = place_orders(args, running, user.user.user_id, args.orders)
        if not live:
            running.start("notifications")
        events = committed(running, start)
        feed = wait_applied(running, set(events), args.timeout)
    lags = sorted((feed[e] - t) * 1000 for e, t in events.items())
    first = min(events.values()) if live else min(feed[e] for e in events)
    seconds = max(feed[e] for e in events) - first
    return {
        "mode": "live" if live else "catch-up",
        "orders": args.orders,
        "orders_per_s": orders.rps,
        "events": len(events),
        "events_per_s": round(len(events) / seconds, 1),
        "lag_p50_ms": round(loadgen.percentile(lags, 0.50), 2) if live else None,
        "lag_p99_ms": round(loadgen.percentile(lags, 0.99), 2) if live else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000, help="orders per measured run")
    parser.add_argument("--warmup-orders", type=int, default=100, help="orders before measuring")
    parser.add_argument("--concurrency", type=int, default=20, help="PlaceOrder calls in flight")
    parser.add_argument("--rounds", type=int, default=1, help="live/catch-up pairs; medians")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the feed")
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the services")
    parser.add_argument("--protoset", type=Path, default=loadgen.ROOT / "build" / "shop.binpb")
    parser.add_argument("--out", type=Path, default=loadgen.ROOT / "build" / "bench")
    args = parser.parse_args()
    if not args.protoset.exists():
        raise SystemExit(f"{args.protoset} is missing: run `make descriptors`")
    loadgen.ensure_ghz()
    runs = []
    for round_no in range(1, args.rounds + 1):
        for live in (True, False):
            run = {"round": round_no, **one_round(args, live)}
            runs.append(run)
            print(json.dumps(run), flush=True)
    print(f"\n{'mode':<10}{'orders/s':>10}{'events/s':>10}{'lag p50 ms':>12}{'lag p99 ms':>12}")
    summary = {}
    for mode in ("live", "catch-up"):
        mine = [r for r in runs if r["mode"] == mode]
        row = {
            key: statistics.median(r[key] for r in mine)
            for key in ("orders_per_s", "events_per_s", "lag_p50_ms", "lag_p99_ms")
            if mine[0][key] is not None
        }
        summary[mode] = row
        lag = f"{row['lag_p50_ms']:>12.1f}{row['lag_p99_ms']:>12.1f}" if "lag_p50_ms" in row else ""
        print(f"{mode:<10}{row['orders_per_s']:>10.0f}{row['events_per_s']:>10.0f}{lag}")
    following, ceiling = summary["live"], summary["catch-up"]
    per_order = following["events_per_s"] / following["orders_per_s"]
    headroom = ceiling["events_per_s"] / following["events_per_s"]
    print(
        f"\nlive: the feed keeps pace with {per_order:.1f} events per order; the catch-up"
        f" ceiling is {headroom:.1f}x the live event rate (medians of {args.rounds} rounds)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"events-{time.strftime('%Y%m%d-%H%M%S')}.json"
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {"cpus": os.cpu_count(), "config": config, "runs": runs, "summary": summary}
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {path.relative_to(loadgen.ROOT)}")


if __name__ == "__main__":
    main()
