"""`make bench`: every hop of the shop side by side in one run, next to the machine's limits.

Variants, all at the same concurrency (h2load, its own process, fixed duration per run):
bare grpc.aio (the ceiling of a Python server), the Go catalog (grpc-go, the machine's physical
reference), the catalog directly with WORKERS=1 (telemetry on and off) and WORKERS=2, then every
service's read directly, through the REST gateway, and through the mesh (gateway and two
sidecars, mTLS); then PlaceOrder through the whole mesh at a fixed rate (ghz). Rounds alternate
the variants of one phase, and medians are reported. Writes build/bench/report.md, report.json
and PNG plots, and prints the ratios: `python -m bench.report --rounds 3`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf.message import Message

from bench import loadgen
from bench.mesh_bench import cpu_seconds
from gateway import auth
from gateway.settings import Settings as GatewaySettings
from mesh.local.stack import LocalStack, free_port, grpc_services
from mesh.local.supervisor import LocalMesh
from services.catalog.demo import seed_deep
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.notifications.v1 import notifications_pb2, notifications_pb2_grpc
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc

ROOT = loadgen.ROOT
PRODUCT = "sku-espresso"
EXTRA_STOCK = 10_000_000
CATALOG_GO = ROOT / "build" / "bin" / "catalog-go"
LIMITS = {f"RATE_LIMIT_{group}": "100000000" for group in ("PUBLIC", "READ", "WRITE")}
PLACE_ORDER = "shop.orders.v1.OrderService/PlaceOrder"
GATEWAY_1W = "gateway-1w"
# Many processes start at once on a small machine; a slow start is not what is measured.
STARTUP_SECONDS = 120.0

# The targets of issue 10, checked on the medians of one run.
TARGET_W1 = 0.8  # GetProduct, telemetry on, one worker, over bare grpc.aio
TARGET_W2 = 1.6  # the same with two workers
TARGET_TELEMETRY_COST = 0.10
TARGET_REST_RATIO = 0.85
TARGET_REST_ADDED_P50_MS = 0.5
TARGET_SIDECAR_P50_MS = 0.3
TARGET_SIDECAR_VCPU = 0.15  # per 1,000 rps
TARGET_ORDER_P99_MS = 25.0


@dataclass
class Sample:
    """One measured run of one variant."""

    variant: str
    hop: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    loadavg: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """What h2load calls for one variant: a gRPC method with its request, or a REST path."""

    variant: str
    hop: str
    url: str
    request: Message | None = None  # gRPC when set
    response: Message | None = None  # expected reply, to tell failed gRPC calls apart
    headers: tuple[str, ...] = ()
    connections: int | None = None  # instead of `--clients`, the same calls in flight


def h2load(target: Target, args: argparse.Namespace, workdir: Path) -> Sample:
    """Warm up with `args.warmup` calls, then measure about `args.seconds` worth of calls (sized
    by the warm-up's rate); every call must succeed."""
    warm = h2load_calls(target, args, workdir, args.warmup)
    return h2load_calls(target, args, workdir, max(args.warmup, int(warm.rps * args.seconds)))


def h2load_calls(target: Target, args: argparse.Namespace, workdir: Path, calls: int) -> Sample:
    log = workdir / "h2load.tsv"
    log.unlink(missing_ok=True)
    connections = target.connections or args.clients
    command = [
        loadgen.ensure_h2load(),
        f"--requests={calls}",
        f"--clients={connections}",
        f"--max-concurrent-streams={args.clients * args.streams // connections}",
        "--threads=1",
        f"--log-file={log}",
    ]
    headers = list(target.headers)
    if target.request is not None:
        body = workdir / "request.bin"
        body.write_bytes(loadgen.grpc_frame(target.request))
        command.append(f"--data={body}")
        headers += ["content-type: application/grpc", "te: trailers"]
    command += [f"--header={header}" for header in headers]
    loadavg = os.getloadavg()[0]
    run = subprocess.run([*command, target.url], capture_output=True, text=True)
    if run.returncode != 0:
        raise loadgen.LoadGenError(f"{target.variant}: h2load failed\n{run.stdout}{run.stderr}")
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", run.stdout)
    succeeded = re.search(r"(\d+) succeeded", run.stdout)
    data = re.search(r"\((\d+)\) data", run.stdout)
    if finished is None or succeeded is None or data is None:
        raise loadgen.LoadGenError(f"cannot read h2load's report:\n{run.stdout}")
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    if int(succeeded[1]) != calls or any(row[1] != "200" for row in rows):
        raise loadgen.LoadGenError(f"{target.variant}: not every call succeeded\n{run.stdout}")
    if target.response is not None:
        # A failed gRPC call is HTTP 200 too, but carries no message.
        frame = len(loadgen.grpc_frame(target.response))
        if int(data[1]) != calls * frame:
            raise loadgen.LoadGenError(
                f"{target.variant}: {data[1]} response bytes for {calls} calls of {frame}"
                f" bytes: some calls failed\n{run.stdout}"
            )
    latencies = sorted(int(row[2]) / 1000 for row in rows)
    return Sample(
        target.variant,
        target.hop,
        rps=float(finished[3]),
        p50_ms=round(loadgen.percentile(latencies, 0.50), 3),
        p99_ms=round(loadgen.percentile(latencies, 0.99), 3),
        requests=calls,
        loadavg=round(loadavg, 2),
        latencies_ms=latencies,
    )


def wait_for_grpc(address: str, call: Callable[[grpc.Channel], Message]) -> Message:
    deadline = time.monotonic() + 60
    while True:
        try:
            with grpc.insecure_channel(address) as channel:
                return call(channel)
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def get_product(channel: grpc.Channel) -> Message:
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    return stub.GetProduct(catalog_pb2.GetProductRequest(product_id=PRODUCT), timeout=5)


def seed_catalog(workdir: Path) -> None:
    """A catalog deep enough that no order of a run runs out of stock."""
    seed_deep(str(workdir / "data" / "catalog.db"), {PRODUCT: EXTRA_STOCK})


def catalog_target(variant: str, hop: str, address: str) -> Target:
    return Target(
        variant,
        hop,
        f"http://{address}/shop.catalog.v1.CatalogService/GetProduct",
        catalog_pb2.GetProductRequest(product_id=PRODUCT),
        wait_for_grpc(address, get_product),
    )


# --- phase 1: the catalog next to its ceilings --------------------------------------------


@contextmanager
def process(command: Sequence[str], env: Mapping[str, str], log: Path) -> Iterator[None]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        child = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        yield
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def catalog_variants(workdir: Path, log_level: str) -> Iterator[list[Target]]:
    """Bare grpc.aio, the Go catalog, and the catalog with WORKERS=1 (telemetry on and off)
    and WORKERS=2, all running at once; they take turns under load."""
    with ExitStack() as stack:
        targets = []
        port = free_port()
        stack.enter_context(
            process(
                [sys.executable, "-m", "bench.bare_catalog", str(port)], {}, workdir / "bare.log"
            )
        )
        targets.append(catalog_target("bare grpc.aio", "ceiling", f"127.0.0.1:{port}"))
        if CATALOG_GO.exists():
            go = workdir / "go"
            seed_catalog(go)
            port = free_port()
            env = {"PORT": str(port), "DATABASE_PATH": str(go / "data" / "catalog.db")}
            stack.enter_context(process([str(CATALOG_GO)], env, workdir / "go.log"))
            targets.append(catalog_target("Go catalog (grpc-go)", "reference", f"127.0.0.1:{port}"))
        for name, workers, telemetry in (
            ("catalog W=1 telemetry on", 1, True),
            ("catalog W=1 telemetry off", 1, False),
            ("catalog W=2 telemetry on", 2, True),
        ):
            home = workdir / name.replace(" ", "-").replace("=", "")
            seed_catalog(home)
            env = {
                "WORKERS": str(workers),
                "TELEMETRY": str(telemetry).lower(),
                "LOG_LEVEL": log_level,
                "METRICS_PORT": "0",
            }
            running = stack.enter_context(
                LocalStack(home, services=["catalog"], env=env, startup_timeout=STARTUP_SECONDS)
            )
            targets.append(catalog_target(name, "direct", running.address("catalog")))
        # One HTTP/2 connection reaches one worker: why Envoy opens several to an app.
        pinned = replace(targets[-1], variant="catalog W=2 one connection", connections=1)
        yield [*targets, pinned]


# --- phases 2 and 3: every service directly, through the gateway, through the mesh ---------


@dataclass
class Shop:
    """A signed-in customer with one confirmed order, and where to reach everything."""

    gateway: str
    token: str
    user_id: str
    order_id: str
    payment_id: str
    apps: dict[str, str]


def gateway_env(workdir: Path) -> dict[str, str]:
    """The gateways' settings, with the signing key made once here, not by two gateways at once."""
    env = {
        "JWKS_FILE": str(workdir / "gateway" / "jwks.json"),
        "SIGNING_KEY_FILE": str(workdir / "gateway" / "signing-key.pem"),
        **LIMITS,
    }
    auth.ensure_dev_key(GatewaySettings.from_env(env))
    return env


def customer(workdir: Path, gateway: str, apps: dict[str, str]) -> Shop:
    """Sign up and place one order through the gateway, as a customer would."""
    with httpx.Client(base_url=f"http://{gateway}", timeout=30) as client:
        created = client.post("/v1/users", json={"email": "bench@example.com", "displayName": "B"})
        created.raise_for_status()
        user_id = created.json()["user"]["userId"]
        token = auth.mint_token(GatewaySettings.from_env(gateway_env(workdir)), user_id)
        headers = {"authorization": f"Bearer {token}"}
        body = {
            "requestId": str(uuid.uuid4()),
            "userId": user_id,
            "paymentToken": "tok_visa",
            "items": [{"productId": PRODUCT, "quantity": 1}],
        }
        placed = client.post("/v1/orders", json=body, headers=headers)
        placed.raise_for_status()
        order = placed.json()["order"]
    return Shop(gateway, token, user_id, order["orderId"], order["paymentId"], apps)


def settled_notifications(address: str, user_id: str) -> Message:
    """The user's notifications once the order's events have all arrived (their reply is the
    expected response, so it must not grow during the run)."""
    request = notifications_pb2.ListNotificationsRequest(user_id=user_id)
    previous: notifications_pb2.ListNotificationsResponse | None = None
    while True:
        with grpc.insecure_channel(address) as channel:
            stub = notifications_pb2_grpc.NotificationServiceStub(channel)
            reply: notifications_pb2.ListNotificationsResponse = stub.ListNotifications(
                request, timeout=5
            )
        if previous is not None and reply == previous and len(reply.notifications) > 0:
            return reply
        previous = reply
        time.sleep(2)


def service_targets(shop: Shop, hop: str, *, direct: bool) -> list[Target]:
    """One read per service: by gRPC on the app's port (`direct`), else REST via the gateway."""
    if not direct:
        bearer = (f"authorization: Bearer {shop.token}",)
        base = f"http://{shop.gateway}/v1"
        return [
            Target("catalog GetProduct", hop, f"{base}/products/{PRODUCT}"),
            Target("users GetUser", hop, f"{base}/users/{shop.user_id}", headers=bearer),
            Target("orders GetOrder", hop, f"{base}/orders/{shop.order_id}", headers=bearer),
            Target(
                "payments GetPayment", hop, f"{base}/payments/{shop.payment_id}", headers=bearer
            ),
            Target(
                "notifications ListNotifications",
                hop,
                f"{base}/users/{shop.user_id}/notifications",
                headers=bearer,
            ),
        ]
    apps = shop.apps
    reads: list[tuple[str, str, str, Message, Callable[[grpc.Channel], Any]]] = [
        (
            "catalog GetProduct",
            "catalog",
            "shop.catalog.v1.CatalogService/GetProduct",
            catalog_pb2.GetProductRequest(product_id=PRODUCT),
            lambda c: catalog_pb2_grpc.CatalogServiceStub(c).GetProduct,
        ),
        (
            "users GetUser",
            "users",
            "shop.users.v1.UserService/GetUser",
            users_pb2.GetUserRequest(user_id=shop.user_id),
            lambda c: users_pb2_grpc.UserServiceStub(c).GetUser,
        ),
        (
            "orders GetOrder",
            "orders",
            "shop.orders.v1.OrderService/GetOrder",
            orders_pb2.GetOrderRequest(order_id=shop.order_id),
            lambda c: orders_pb2_grpc.OrderServiceStub(c).GetOrder,
        ),
        (
            "payments GetPayment",
            "payments",
            "shop.payments.v1.PaymentService/GetPayment",
            payments_pb2.GetPaymentRequest(payment_id=shop.payment_id),
            lambda c: payments_pb2_grpc.PaymentServiceStub(c).GetPayment,
        ),
    ]
    targets = []
    for variant, app, method, request, stub in reads:
        address = apps[app]

        def call(channel: grpc.Channel, stub: Any = stub, request: Message = request) -> Message:
            reply: Message = stub(channel)(request, timeout=5)
            return reply

        response = wait_for_grpc(address, call)
        targets.append(Target(variant, hop, f"http://{address}/{method}", request, response))
    address = apps["notifications"]
    targets.append(
        Target(
            "notifications ListNotifications",
            hop,
            f"http://{address}/shop.notifications.v1.NotificationService/ListNotifications",
            notifications_pb2.ListNotificationsRequest(user_id=shop.user_id),
            settled_notifications(address, shop.user_id),
        )
    )
    return targets


@contextmanager
def plain_shop(workdir: Path, args: argparse.Namespace) -> Iterator[tuple[Shop, str | None]]:
    """The services and the gateway as plain processes (the gateway calls the apps), and with
    `--one-worker-gateway` a second gateway with one Envoy worker; yields the shop and that
    gateway's address."""
    seed_catalog(workdir)
    gateways = {"gateway": args.envoy_concurrency}
    if args.one_worker_gateway:
        gateways[GATEWAY_1W] = 1
    services = grpc_services()
    ports = {name: free_port() for name in [*services, *gateways]}
    peers = {f"{name.upper()}_ADDR": f"127.0.0.1:{ports[name]}" for name in services}
    env = {
        name: {**gateway_env(workdir), **peers, "ENVOY_CONCURRENCY": str(concurrency)}
        for name, concurrency in gateways.items()
    }
    with LocalStack(
        workdir,
        services=[*services, *gateways],
        ports=ports,
        modules={name: "gateway" for name in gateways},
        http_health={name: "/healthz" for name in gateways},
        env={"LOG_LEVEL": args.log_level},
        service_env=env,
        startup_timeout=STARTUP_SECONDS,
    ) as stack:
        apps = {name: stack.address(name) for name in services}
        one_worker = stack.address(GATEWAY_1W) if args.one_worker_gateway else None
        yield customer(workdir, stack.address("gateway"), apps), one_worker


@contextmanager
def meshed_shop(workdir: Path, args: argparse.Namespace) -> Iterator[tuple[Shop, LocalMesh]]:
    seed_catalog(workdir)
    env = {"gateway": gateway_env(workdir)}
    with LocalMesh(workdir, service_env=env) as mesh:
        yield customer(workdir, mesh.address("gateway"), {}), mesh


def place_orders(shop: Shop, args: argparse.Namespace) -> Sample:
    """PlaceOrder at a fixed rate through the whole mesh (ghz on the gateway's gRPC listener,
    with the customer's token), every call counted."""
    total = args.order_rate * args.order_seconds
    data = {
        "request_id": "{{newUUID}}",
        "user_id": shop.user_id,
        "items": [{"product_id": PRODUCT, "quantity": 1}],
        "payment_token": "tok_visa",
    }
    loadavg = os.getloadavg()[0]
    run = subprocess.run(
        [
            str(loadgen.ensure_ghz()),
            "--insecure",
            f"--protoset={args.protoset}",
            f"--call={PLACE_ORDER}",
            f"--data={json.dumps(data)}",
            f"--metadata={json.dumps({'authorization': f'Bearer {shop.token}'})}",
            f"--total={total}",
            f"--rps={args.order_rate}",
            "--concurrency=50",
            "--connections=2",
            "--format=json",
            shop.gateway,
        ],
        capture_output=True,
        text=True,
    )
    if not run.stdout:
        raise loadgen.LoadGenError(f"ghz failed ({run.returncode}):\n{run.stderr}")
    report = json.loads(run.stdout)
    ok = report.get("statusCodeDistribution", {}).get("OK", 0)
    latency = {int(p["percentage"]): p["latency"] / 1e6 for p in report["latencyDistribution"]}
    return Sample(
        f"PlaceOrder at {args.order_rate} rps",
        "whole mesh",
        rps=round(report["rps"], 1),
        p50_ms=round(latency[50], 3),
        p99_ms=round(latency[99], 3),
        requests=total,
        loadavg=round(loadavg, 2),
        extra={"errors": float(total - ok)},
    )


# --- the run ------------------------------------------------------------------------------


def rounds(
    targets: Sequence[Target], args: argparse.Namespace, workdir: Path, samples: list[Sample]
) -> None:
    for number in range(1, args.rounds + 1):
        for target in targets:
            sample = h2load(target, args, workdir)
            samples.append(sample)
            print(
                f"round {number}  {target.hop:<12} {target.variant:<34} {sample.rps:>8.0f} rps"
                f"  p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms"
                f"  load {sample.loadavg}",
                flush=True,
            )


def run(args: argparse.Namespace, workdir: Path) -> list[Sample]:
    samples: list[Sample] = []
    if 1 in args.phases:
        print("phase 1: the catalog next to bare grpc.aio and grpc-go", flush=True)
        with catalog_variants(workdir / "catalog", args.log_level) as targets:
            rounds(targets, args, workdir, samples)
    if 2 in args.phases:
        print("phase 2: every service directly and through the REST gateway", flush=True)
        with plain_shop(workdir / "plain", args) as (shop, one_worker):
            direct = service_targets(shop, "direct", direct=True)
            rest = service_targets(shop, "gateway REST", direct=False)
            paired = [t for pair in zip(direct, rest, strict=True) for t in pair]
            if one_worker is not None:
                url = f"http://{one_worker}/v1/products/{PRODUCT}"
                paired.append(Target("catalog GetProduct", "gateway REST, 1 Envoy worker", url))
            rounds(paired, args, workdir, samples)
    if 3 not in args.phases:
        return samples
    print("phase 3: through the mesh (gateway, two sidecars, mTLS)", flush=True)
    with meshed_shop(workdir / "mesh", args) as (shop, mesh):
        pids = {n: s.process.pid for n, s in mesh.sidecars.items() if s.process is not None}
        sidecars = {name: pids[name] for name in ("gateway", "catalog")}
        for target in service_targets(shop, "mesh REST", direct=False):
            catalog = target.variant.startswith("catalog")
            before = {name: cpu_seconds(pid) for name, pid in sidecars.items()}
            started = time.monotonic()
            rounds([target], args, workdir, samples)
            if catalog:
                elapsed = time.monotonic() - started
                used = {name: cpu_seconds(pid) - before[name] for name, pid in sidecars.items()}
                # CPU over the whole h2load runs (warm-up included) per their mean rate.
                mine = [s for s in samples if s.variant == target.variant and s.hop == "mesh REST"]
                rate = statistics.median(s.rps for s in mine)
                for sample in mine:
                    sample.extra = {
                        f"{name} sidecar vCPU per 1000 rps": round(
                            seconds / elapsed / (rate / 1000), 3
                        )
                        for name, seconds in used.items()
                    }
        for number in range(1, args.rounds + 1):
            sample = place_orders(shop, args)
            samples.append(sample)
            print(
                f"round {number}  whole mesh   {sample.variant:<34} {sample.rps:>8.0f} rps"
                f"  p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms"
                f"  errors {sample.extra['errors']:.0f}  load {sample.loadavg}",
                flush=True,
            )
    return samples


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    variant: str
    hop: str
    rps: float
    p50_ms: float
    p99_ms: float
    loadavg: float
    extra: dict[str, float]
    latencies_ms: list[float]


def medians(samples: Sequence[Sample]) -> list[Row]:
    keys = list(dict.fromkeys((s.variant, s.hop) for s in samples))
    rows = []
    for variant, hop in keys:
        mine = [s for s in samples if (s.variant, s.hop) == (variant, hop)]
        extra_keys = {k for s in mine for k in s.extra}
        rows.append(
            Row(
                variant,
                hop,
                round(statistics.median(s.rps for s in mine), 1),
                round(statistics.median(s.p50_ms for s in mine), 3),
                round(statistics.median(s.p99_ms for s in mine), 3),
                round(statistics.median(s.loadavg for s in mine), 2),
                {k: round(statistics.median(s.extra[k] for s in mine), 3) for k in extra_keys},
                sorted(x for s in mine for x in s.latencies_ms),
            )
        )
    return rows


@dataclass(frozen=True)
class Verdict:
    target: str
    value: str
    met: bool
    gap: str


def verdicts(rows: Sequence[Row]) -> list[Verdict]:
    by = {(row.variant, row.hop): row for row in rows}
    found: list[Verdict] = []

    def check(target: str, value: float, limit: float, higher: bool, unit: str = "") -> None:
        met = value >= limit if higher else value <= limit
        gap = "" if met else f"{abs(value - limit):.3g}{unit} {'short' if higher else 'over'}"
        found.append(Verdict(target, f"{value:.3g}{unit}", met, gap))

    bare = by.get(("bare grpc.aio", "ceiling"))
    w1 = by.get(("catalog W=1 telemetry on", "direct"))
    off = by.get(("catalog W=1 telemetry off", "direct"))
    w2 = by.get(("catalog W=2 telemetry on", "direct"))
    if bare and w1:
        check(
            "GetProduct W=1 telemetry on / bare grpc.aio >= 0.8", w1.rps / bare.rps, TARGET_W1, True
        )
    if bare and w2:
        check(
            "GetProduct W=2 telemetry on / bare grpc.aio >= 1.6", w2.rps / bare.rps, TARGET_W2, True
        )
    if w1 and off:
        check("telemetry cost <= 10%", 1 - w1.rps / off.rps, TARGET_TELEMETRY_COST, False)
    for row in rows:
        if row.hop != "gateway REST":
            continue
        direct = by.get((row.variant, "direct"))
        if direct is None:
            continue
        check(
            f"{row.variant}: REST / direct >= 0.85", row.rps / direct.rps, TARGET_REST_RATIO, True
        )
        check(
            f"{row.variant}: REST added p50 < 0.5 ms",
            row.p50_ms - direct.p50_ms,
            TARGET_REST_ADDED_P50_MS,
            False,
            " ms",
        )
        meshed = by.get((row.variant, "mesh REST"))
        if meshed is not None:
            check(
                f"{row.variant}: added p50 per sidecar < 0.3 ms",
                (meshed.p50_ms - row.p50_ms) / 2,
                TARGET_SIDECAR_P50_MS,
                False,
                " ms",
            )
            for key, value in meshed.extra.items():
                check(f"{row.variant}: {key} <= 0.15", value, TARGET_SIDECAR_VCPU, False)
    order = next((row for row in rows if row.hop == "whole mesh"), None)
    if order is not None:
        check("PlaceOrder p99 at 200 rps <= 25 ms", order.p99_ms, TARGET_ORDER_P99_MS, False, " ms")
        check("PlaceOrder errors == 0", order.extra.get("errors", 0), 0, False)
    return found


def plot(rows: Sequence[Row], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    bars = [row for row in rows if row.hop != "whole mesh"]
    figure, axes = plt.subplots(figsize=(10, 0.35 * len(bars) + 1.5))
    labels = [f"{row.variant} [{row.hop}]" for row in bars]
    axes.barh(labels, [row.rps for row in bars], color="tab:blue")
    axes.invert_yaxis()
    axes.set_xlabel("requests per second (median of rounds)")
    axes.set_title("Throughput per variant, same concurrency")
    figure.tight_layout()
    paths.append(out / "throughput.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(9, 5))
    for row in rows:
        if row.latencies_ms and (
            row.variant.startswith("catalog") or row.hop in ("ceiling", "reference")
        ):
            count = len(row.latencies_ms)
            axes.plot(
                row.latencies_ms,
                [(i + 1) / count for i in range(count)],
                label=f"{row.variant} [{row.hop}]",
            )
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of calls")
    axes.set_title("GetProduct latency CDF per hop")
    axes.legend(fontsize="small")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    paths.append(out / "latency-cdf.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)
    return paths


def markdown(
    rows: Sequence[Row], found: Sequence[Verdict], args: argparse.Namespace, loads: Sequence[float]
) -> str:
    bare = next((row.rps for row in rows if row.hop == "ceiling"), None)
    lines = [
        "# Benchmark report",
        "",
        f"`{' '.join(sys.orig_argv)}` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')};"
        f" {os.cpu_count()} CPUs; 1-minute load average {loads[0]:.2f} at the start,"
        f" {loads[1]:.2f} at the end.",
        f"h2load, {args.clients} connections x {args.streams} streams, about {args.seconds} s"
        f" of calls after {args.warmup} warm-up calls per run; medians of {args.rounds} rounds,"
        " variants"
        " alternating within each round.",
        "",
    ]
    if max(loads) > 1.5:
        lines += [
            f"**The machine was shared (load average up to {max(loads):.1f} on"
            f" {os.cpu_count()} CPUs): absolute figures are low and noisy; read the ratios,"
            " which come from runs taken side by side.**",
            "",
        ]
    lines += [
        "| variant | hop | rps | p50 ms | p99 ms | / bare grpc.aio | load | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = f"{row.rps / bare:.2f}" if bare and row.hop != "whole mesh" else ""
        notes = ", ".join(f"{k} {v:g}" for k, v in sorted(row.extra.items()))
        lines.append(
            f"| {row.variant} | {row.hop} | {row.rps:.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f}"
            f" | {ratio} | {row.loadavg:.1f} | {notes} |"
        )
    lines += [
        "",
        "## Targets (issue 10)",
        "",
        "| target | value | met | gap |",
        "|---|---|---|---|",
    ]
    for verdict in found:
        met = "yes" if verdict.met else "**no**"
        lines.append(f"| {verdict.target} | {verdict.value} | {met} | {verdict.gap} |")
    lines += ["", "![throughput](throughput.png)", "", "![latency CDF](latency-cdf.png)", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=1000, help="warm-up calls per run")
    # Eight connections, so that the kernel spreads them over two workers fairly evenly.
    parser.add_argument("--clients", type=int, default=8, help="h2load connections")
    parser.add_argument("--streams", type=int, default=2, help="streams per connection")
    parser.add_argument("--order-rate", type=int, default=200, help="PlaceOrder calls per second")
    parser.add_argument("--order-seconds", type=int, default=15)
    parser.add_argument(
        "--envoy-concurrency", type=int, default=0, help="gateway Envoy workers (0: per core)"
    )
    parser.add_argument(
        "--one-worker-gateway",
        action="store_true",
        help="also measure a gateway with one Envoy worker (Envoy tuning)",
    )
    parser.add_argument(
        "--phases", type=int, nargs="+", default=[1, 2, 3], help="1 catalog, 2 gateway, 3 mesh"
    )
    parser.add_argument("--log-level", default="INFO", help="LOG_LEVEL of the services")
    parser.add_argument("--protoset", type=Path, default=ROOT / "build" / "shop.binpb")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench")
    return parser.parse_args(argv)


def ensure_catalog_go() -> None:
    """Build the Go catalog on first use (`make catalog-go`), if Go is there."""
    if CATALOG_GO.exists() or shutil.which("go") is None:
        return
    subprocess.run([sys.executable, "-m", "tools.polyglot"], check=True)
    subprocess.run([sys.executable, "-m", "tools.interop", "build", "catalog-go"], check=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.protoset.exists():
        raise SystemExit(f"{args.protoset} is missing: run `make descriptors`")
    loadgen.ensure_h2load()
    loadgen.ensure_ghz()
    ensure_catalog_go()
    start_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        samples = run(args, Path(tmp))
    loads = (start_load, os.getloadavg()[0])
    rows = medians(samples)
    found = verdicts(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    plots = plot(rows, args.out)
    report = args.out / "report.md"
    report.write_text(markdown(rows, found, args, loads))
    raw = [{k: v for k, v in vars(s).items() if k != "latencies_ms"} for s in samples]
    (args.out / "report.json").write_text(json.dumps({"samples": raw}, indent=2) + "\n")
    bare = next((row.rps for row in rows if row.hop == "ceiling"), None)
    print("\nmedians (rps, p50 ms, p99 ms, ratio to bare grpc.aio):")
    for row in rows:
        ratio = f"{row.rps / bare:5.2f}" if bare else ""
        print(
            f"  {row.hop:<12} {row.variant:<34} {row.rps:8.0f} {row.p50_ms:7.2f}"
            f" {row.p99_ms:7.2f}  {ratio}"
        )
    print("\ntargets:")
    for verdict in found:
        print(
            f"  {'met   ' if verdict.met else 'MISSED'} {verdict.target}:"
            f" {verdict.value} {verdict.gap}"
        )
    print(f"\nwritten: {report}, " + ", ".join(str(path) for path in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
