"""Chaos under load, then an audit of what the shop committed.

PlaceOrder goes through the REST gateway and the local mesh (sidecars, mTLS) at a fixed rate,
half of a capacity measured first, while a schedule SIGKILLs and restarts every app, every
sidecar and the gateway in turn and applies the fault scenarios. Clients retry with the same
request id, as a real client would. Afterwards, from each service's own database:

- every order is CONFIRMED or CANCELLED, and every accepted request has its order;
- charges equal confirmed orders (one captured payment each, none for a cancelled order);
- stock equals the initial stock minus what confirmed orders bought;
- every committed event is in the feed exactly once, none set aside;
- the clients' errors, counted by HTTP status and reason.

`python -m bench.chaos [--seconds 120]`, and `--soak 300` for a run without faults that reports
each process's RSS and open files over time. tests/system/test_chaos.py runs a short version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from gateway import auth
from gateway.settings import Settings as GatewaySettings
from mesh.check import Settings
from mesh.local.supervisor import LocalMesh
from services.catalog.demo import seed_deep

SCENARIOS = Settings().mesh_dir / "scenarios"
FAULTS = ("payments-delay.yaml", "payments-abort.yaml", "catalog-retries.yaml")
PRODUCTS = ("sku-espresso", "sku-mug", "sku-grinder", "sku-limited-edition")
EXTRA_STOCK = 100_000
DECLINE_SHARE = 0.1
RETRY_FOR_SECONDS = 30.0


def gateway_env(workdir: Path) -> dict[str, str]:
    limits = {f"RATE_LIMIT_{group}": "100000000" for group in ("PUBLIC", "READ", "WRITE")}
    return {
        "JWKS_FILE": str(workdir / "gateway" / "jwks.json"),
        "SIGNING_KEY_FILE": str(workdir / "gateway" / "signing-key.pem"),
        **limits,
    }


@dataclass
class Shop:
    mesh: LocalMesh
    client: httpx.Client
    user_id: str
    token: str
    initial_stock: dict[str, int]

    def db(self, app: str, query: str) -> list[tuple[Any, ...]]:
        path = self.mesh.workdir / "data" / f"{app}.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute(query).fetchall()


@contextmanager
def running_shop(workdir: Path) -> Iterator[Shop]:
    """The whole local mesh, with a deep catalog and a signed-in customer."""
    seed_deep(str(workdir / "data" / "catalog.db"), dict.fromkeys(PRODUCTS[:-1], EXTRA_STOCK))
    saga = {"SAGA_RECOVERY_SECONDS": "0.5", "SAGA_LEASE_SECONDS": "2", "LOG_LEVEL": "WARNING"}
    env = {
        "gateway": gateway_env(workdir),
        **{name: saga for name in ("orders-v1", "orders-v2")},
    }
    with LocalMesh(workdir, service_env=env) as mesh:
        base = f"http://{mesh.address('gateway')}"
        with httpx.Client(base_url=base, timeout=10) as client:
            created = client.post(
                "/v1/users", json={"email": "chaos@example.com", "displayName": "Chaos"}
            )
            created.raise_for_status()
            user_id = created.json()["user"]["userId"]
            token = auth.mint_token(GatewaySettings.from_env(gateway_env(workdir)), user_id)
            shop = Shop(mesh, client, user_id, token, {})
            shop.initial_stock = dict(shop.db("catalog", "SELECT product_id, stock FROM products"))
            yield shop


@dataclass
class Load:
    """Orders at a fixed rate from a pool of clients; each retries its request id until accepted."""

    shop: Shop
    rate: float
    accepted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def place(self, request_id: str) -> None:
        product = random.choice(PRODUCTS)
        token = "tok_decline" if random.random() < DECLINE_SHARE else "tok_visa"
        body = {
            "requestId": request_id,
            "userId": self.shop.user_id,
            "paymentToken": token,
            "items": [{"productId": product, "quantity": 1}],
        }
        headers = {"authorization": f"Bearer {self.shop.token}"}
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        while True:
            try:
                reply = self.shop.client.post("/v1/orders", json=body, headers=headers)
                outcome = f"{reply.status_code} {error_reason(reply)}".rstrip()
            except httpx.HTTPError as error:
                reply, outcome = None, type(error).__name__
            with self._lock:
                if reply is not None and reply.status_code == 200:
                    self.accepted.add(request_id)
                    return
                self.errors[outcome] += 1
                if (
                    reply is not None
                    and 400 <= reply.status_code < 500
                    and reply.status_code != 429
                ):
                    self.refused.add(request_id)  # a client error: retrying cannot help
                    return
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def run(self, seconds: float, stop: threading.Event) -> int:
        """Send for `seconds` (or until `stop`); returns how many orders were sent."""
        sent = 0
        start = time.monotonic()
        with ThreadPoolExecutor(32) as pool:
            while time.monotonic() - start < seconds and not stop.is_set():
                pool.submit(self.place, f"chaos-{uuid.uuid4()}")
                sent += 1
                time.sleep(max(0.0, start + sent / self.rate - time.monotonic()))
        return sent


def error_reason(reply: httpx.Response) -> str:
    """The ErrorInfo reason of an error reply, else its message; "" for a success."""
    if reply.status_code == 200:
        return ""
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:60]
    reasons = [d.get("reason") for d in body.get("details", []) if d.get("reason")]
    return str(reasons[0] if reasons else body.get("message", ""))[:60]


def capacity(shop: Shop, seconds: float = 5.0, workers: int = 8) -> float:
    """Orders per second the mesh completes with `workers` clients in a closed loop."""
    load = Load(shop, rate=1.0)
    done = 0
    end = time.monotonic() + seconds

    def worker() -> int:
        count = 0
        while time.monotonic() < end:
            load.place(f"calibrate-{uuid.uuid4()}")
            count += 1
        return count

    with ThreadPoolExecutor(workers) as pool:
        done = sum(pool.map(lambda _: worker(), range(workers)))
    return done / seconds


def descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [p for child in map(int, children) for p in (child, *descendants(child))]


def crash_app(mesh: LocalMesh, name: str) -> None:
    """SIGKILL an app and whatever it started (the gateway's Envoy), then start it again."""
    assert mesh.stack is not None
    process = mesh.stack.workloads[name].child.process
    if process is not None:
        for pid in [*descendants(process.pid), process.pid]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    mesh.stack.kill(name)
    mesh.stack.start(name)


def crash_sidecar(mesh: LocalMesh, name: str) -> None:
    sidecar = mesh.sidecars[name]
    sidecar.kill()
    sidecar.start()
    sidecar.wait_ready()


Action = tuple[str, Callable[[], object]]


def schedule(
    mesh: LocalMesh, names: Sequence[str] = (), faults: Sequence[str] = FAULTS
) -> list[Action]:
    """Each app and its sidecar (default: every workload) killed once, with the fault scenarios
    applied and lifted in between."""
    actions: list[Action] = []
    names = names or list(mesh.workloads)
    pending = iter(faults)
    for index, name in enumerate(names):
        actions.append((f"kill {name}", partial(crash_app, mesh, name)))
        actions.append((f"kill {name} sidecar", partial(crash_sidecar, mesh, name)))
        fault = next(pending, None) if index % 2 == 0 else None
        if fault is not None:
            actions.append((f"apply {fault}", partial(mesh.apply, SCENARIOS / fault)))
            actions.append(("lift faults", partial(mesh.apply, None)))
    return actions


def run_chaos(
    shop: Shop, seconds: float, rate: float, actions: list[Action], log: Callable[[str], None]
) -> Load:
    """Send orders for `seconds` while `actions` happen at even intervals."""
    load = Load(shop, rate)
    stop = threading.Event()
    sender = threading.Thread(target=load.run, args=(seconds, stop))
    sender.start()
    pause = seconds / (len(actions) + 1)
    try:
        for what, action in actions:
            time.sleep(pause)
            started = time.monotonic()
            action()
            log(f"{time.strftime('%H:%M:%S')} {what} ({time.monotonic() - started:.1f}s)")
    finally:
        shop.mesh.apply(None)
        sender.join()
    return load


def quiesce(shop: Shop, timeout: float = 90) -> None:
    """Until no saga runs and the feed holds every committed event, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = shop.db("orders", "SELECT count(*) FROM orders WHERE status = 'PENDING'")[0][0]
        if pending == 0 and set(events(shop)) <= applied(shop):
            return
        time.sleep(0.5)


def events(shop: Shop) -> list[str]:
    return [
        e for app in ("orders", "payments") for (e,) in shop.db(app, "SELECT event_id FROM outbox")
    ]


def applied(shop: Shop) -> set[str]:
    return {e for (e,) in shop.db("notifications", "SELECT event_id FROM applied_events")}


def audit(shop: Shop, load: Load) -> dict[str, Any]:
    """Each check's verdict and the numbers behind it."""
    orders = shop.db("orders", "SELECT order_id, request_id, status, items FROM orders")
    status = Counter(s for _, _, s, _ in orders)
    by_request = {r: s for _, r, s, _ in orders}
    confirmed = {o: json.loads(items) for o, _, s, items in orders if s == "CONFIRMED"}
    payments = shop.db("payments", "SELECT idempotency_key, state FROM payments")
    captured = Counter(key for key, state in payments if state == "CAPTURED")
    sold: Counter[str] = Counter()
    for items in confirmed.values():
        for product, quantity, _ in items:
            sold[product] += quantity
    stock = dict(shop.db("catalog", "SELECT product_id, stock FROM products"))
    committed = events(shop)
    feed = shop.db("notifications", "SELECT notification_id FROM notifications")
    checks = {
        "every order is final": status.get("PENDING", 0) == 0,
        "every accepted request has an order": all(r in by_request for r in load.accepted),
        "charges equal confirmed orders": captured == Counter(confirmed.keys()),
        "stock is initial minus confirmed": all(
            stock[p] == shop.initial_stock[p] - sold[p] for p in shop.initial_stock
        ),
        "every event is in the feed once": sorted(committed) == sorted(n for (n,) in feed)
        and len(set(committed)) == len(committed),
        "no event was set aside": shop.db("notifications", "SELECT count(*) FROM dead_letters")
        == [(0,)],
    }
    return {
        "checks": checks,
        "orders": dict(status),
        "accepted": len(load.accepted),
        "refused": len(load.refused),
        "captured": sum(captured.values()),
        "events": len(committed),
        "feed": len(feed),
        "client_errors": dict(load.errors.most_common()),
    }


def sample(mesh: LocalMesh) -> dict[str, tuple[int, int]]:
    """RSS (KiB) and open files of every app and sidecar process."""
    assert mesh.stack is not None
    pids = {f"{n} sidecar": s.process.pid for n, s in mesh.sidecars.items() if s.process}
    pids |= {n: w.child.process.pid for n, w in mesh.stack.workloads.items() if w.child.process}
    found = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(
                next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
            )
            found[name] = (rss, len(os.listdir(f"/proc/{pid}/fd")))
        except (OSError, StopIteration):
            continue
    return found


def soak(shop: Shop, seconds: float, rate: float, log: Callable[[str], None]) -> dict[str, Any]:
    load = Load(shop, rate)
    stop = threading.Event()
    sender = threading.Thread(target=load.run, args=(seconds, stop))
    first = sample(shop.mesh)
    sender.start()
    while sender.is_alive():
        sender.join(timeout=min(30, seconds / 5))
        log(f"{time.strftime('%H:%M:%S')} soak: {len(load.accepted)} orders accepted")
    last = sample(shop.mesh)
    growth = {
        name: {"rss_kib": last[name][0] - rss, "open_files": last[name][1] - files}
        for name, (rss, files) in first.items()
        if name in last
    }
    return {"load": load, "growth": growth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120, help="how long the chaos lasts")
    parser.add_argument("--rate", type=float, default=0, help="orders/s (default: half capacity)")
    parser.add_argument("--soak", type=float, default=0, help="then soak this long, no faults")
    parser.add_argument("--out", type=Path, default=Path("build") / "bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, running_shop(Path(tmp)) as shop:
        rate = args.rate or round(capacity(shop) / 2, 1)
        print(
            f"load: {rate} orders/s for {args.seconds:.0f}s through the gateway and mesh",
            flush=True,
        )
        actions = schedule(shop.mesh)
        load = run_chaos(shop, args.seconds, rate, actions, lambda line: print(line, flush=True))
        quiesce(shop)
        report: dict[str, Any] = {"rate": rate, "seconds": args.seconds, **audit(shop, load)}
        if args.soak:
            soaked = soak(shop, args.soak, rate, lambda line: print(line, flush=True))
            quiesce(shop)
            report["soak"] = {
                "seconds": args.soak,
                "growth": soaked["growth"],
                **{k: v for k, v in audit(shop, soaked["load"]).items() if k == "checks"},
            }
    print(json.dumps(report, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, ok in report["checks"].items() if not ok]
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'every check passed'}; {path}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
