"""`make up` / `make down` / `make mesh-apply` / `make mesh-status`: the shop on this machine.

`up` runs every workload with its Envoy sidecar (`--mesh off`: plain processes), stays in the
foreground, prefixes each service's log lines with its name, and stops everything gracefully on
Ctrl-C, SIGTERM, or `make down` from another terminal. `apply` switches the running sidecars to
a scenario without restarting anything; `status` shows what each sidecar routes. With
`--observe on`, Jaeger runs too and every app and Envoy sends it spans; `metrics` prints the
RED table of a running stack; `jaeger` only builds Jaeger.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from mesh.check import MeshError, Settings
from mesh.local import jaeger, red
from mesh.local.jaeger import Jaeger, JaegerError
from mesh.local.stack import HOST, LocalStack, StackError, free_port
from mesh.local.supervisor import ApplyError, LocalMesh
from runner.envoy import EnvoyError
from services.runtime import topology
from shop.users.v1 import users_pb2, users_pb2_grpc

DEMO_EMAIL = "demo@shop.example"


def usual_ports() -> dict[str, int]:
    """`make up`'s fixed app ports: each app's first version on its Service's port (mesh/base),
    as grpcurl and the README expect; other versions take free ports. Keyed by app and by
    Deployment (`orders` and `orders-v1`), since only the mesh runs every Deployment."""
    shop = topology.load()
    return {key: shop.port(app) for app, w in shop.standalone().items() for key in (app, w.name)}


def usual_metrics_ports() -> dict[str, int]:
    """`make up MESH=off`'s fixed /metrics ports: 9101 and up, in the order of the apps' ports."""
    apps = [app for app, w in topology.load().standalone().items() if w.grpc]
    return {app: 9100 + index for index, app in enumerate(apps, start=1)}


def seed_demo_user(address: str) -> str:
    """Create the demo customer once; return its id."""
    with grpc.insecure_channel(address) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        try:
            reply = stub.CreateUser(
                users_pb2.CreateUserRequest(email=DEMO_EMAIL, display_name="Demo Customer"),
                timeout=5,
            )
            return str(reply.user.user_id)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        page = stub.ListUsers(users_pb2.ListUsersRequest(page_size=100), timeout=5)
        return next(str(u.user_id) for u in page.users if u.email == DEMO_EMAIL)


def follow_logs(stack: LocalStack, stop: threading.Event) -> None:
    """Print new lines of every service log, prefixed with the service name."""
    width = max(len(name) for name in stack.workloads)
    offsets = {name: 0 for name in stack.workloads}
    while not stop.is_set():
        for name, workload in stack.workloads.items():
            if not workload.log_path.exists():
                continue
            with workload.log_path.open("rb") as log:
                log.seek(offsets[name])
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[name] += len(complete)
            for line in complete.decode(errors="replace").splitlines():
                print(f"{name:<{width}} | {line}", flush=True)
        stop.wait(0.2)


def banner(shop: LocalMesh, demo_user: str) -> str:
    orders, catalog = shop.address("orders"), shop.address("catalog")
    health = '{"service":"shop.orders.v1.OrderService"}'
    gateway = f"http://{shop.address('gateway')}"
    rows = [f"  {'service':<14} {'gRPC address':<18} metrics"]
    rows += [
        f"  {name:<14} {shop.address(name):<18} http://{HOST}:{shop.metrics_ports[name]}/metrics"
        for name, w in shop.workloads.items()
        if w.grpc
    ]
    rows.append(f"  {'gateway':<14} {gateway:<18} (REST; {gateway}/openapi.json)")
    place = (
        f'{{"request_id":"demo-1","user_id":"{demo_user}","payment_token":"tok_visa",'
        f'"items":[{{"product_id":"sku-espresso","quantity":1}}]}}'
    )
    feed = f"{gateway}/v1/users/{demo_user}/notifications"
    rest_order = (
        f'{{"requestId":"demo-2","userId":"{demo_user}","paymentToken":"tok_visa",'
        f'"items":[{{"productId":"sku-mug","quantity":1}}]}}'
    )
    return "\n".join(
        [
            "",
            "The shop is up (Ctrl-C or `make down` stops it).",
            *rows,
            f"  demo user: {demo_user} ({DEMO_EMAIL})",
            "",
            "Try (grpcurl is in .venv/bin):",
            f"  grpcurl -plaintext {orders} list",
            f"  grpcurl -plaintext {orders} describe shop.orders.v2.OrderService",
            f"  grpcurl -plaintext -d '{health}' {orders} grpc.health.v1.Health/Check",
            f"  grpcurl -plaintext {catalog} shop.catalog.v1.CatalogService/ListProducts",
            f"  grpcurl -plaintext -d '{place}' {orders} shop.orders.v1.OrderService/PlaceOrder",
            f"  curl -s {gateway}/v1/products",
            f"  TOKEN=$(.venv/bin/python -m gateway token {demo_user})",
            f"  curl -s -H \"authorization: Bearer $TOKEN\" -d '{rest_order}' {gateway}/v1/orders",
            "  # the feed notifications builds from orders' and payments' events",
            f'  curl -s -H "authorization: Bearer $TOKEN" {feed}',
            "",
        ]
    )


def mesh_banner(mesh: LocalMesh, demo_user: str) -> str:
    gateway = f"http://{mesh.address('gateway')}"
    payments = mesh.sidecars["payments"]
    certs = mesh.sidecars["gateway"].directory / "certs"

    def place(request_id: str) -> str:
        return (
            f'{{"requestId":"{request_id}","userId":"{demo_user}","paymentToken":"tok_visa",'
            f'"items":[{{"productId":"sku-espresso","quantity":1}}]}}'
        )

    rows = [f"  {'workload':<14} {'app (plain gRPC)':<18} {'sidecar inbound (mTLS)':<24} admin"]
    rows += [
        f"  {name:<14} {mesh.address(name):<18} "
        f"{mesh.inbound(name) if mesh.plan[name].inbound else '-':<24} http://{sidecar.admin}"
        for name, sidecar in mesh.sidecars.items()
    ]
    auth = '-H "authorization: Bearer $TOKEN"'
    tls = f"-cacert {certs}/ca.pem -cert {certs}/cert.pem -key {certs}/key.pem"
    return "\n".join(
        [
            "",
            "The shop is up with Envoy sidecars (Ctrl-C or `make down` stops it).",
            *rows,
            f"  demo user: {demo_user} ({DEMO_EMAIL})",
            f"  sidecar logs: {payments.log_path.parent.parent}/*/envoy.log",
            "",
            "Try:",
            f"  curl -s {gateway}/v1/products",
            f"  TOKEN=$(.venv/bin/python -m gateway token {demo_user})",
            f"  curl -s {auth} -d '{place('demo-1')}' {gateway}/v1/orders",
            f"  curl -s {auth} {gateway}/v1/users/{demo_user}/notifications   # the event feed",
            "  make mesh-apply SCENARIO=mesh/scenarios/orders-header-beta-to-v2.yaml",
            f"  curl -s -H 'x-user-tier: beta' {auth} -d '{place('demo-2')}' {gateway}/v1/orders",
            "  make mesh-apply SCENARIO=mesh/scenarios/orders-canary-90-10.yaml",
            "  make mesh-status",
            "  # the gateway's identity may not charge: PERMISSION_DENIED from the sidecar",
            f"  .venv/bin/grpcurl -protoset build/shop.binpb {tls} \\",
            f"    -servername payments.default.svc.cluster.local {mesh.inbound('payments')} \\",
            "    shop.payments.v1.PaymentService/ChargePayment",
            "",
        ]
    )


# Jaeger's usual ports for `make up OBSERVE=on`, if free (its UI is :16686 everywhere).
JAEGER_PORTS = jaeger.Ports(otlp=4317, query=16686, query_grpc=16685)


@contextlib.contextmanager
def observing(workdir: Path, observe: bool) -> Iterator[Jaeger | None]:
    """Jaeger for the run (built first if need be), or nothing."""
    if not observe:
        yield None
        return
    jaeger.build(jaeger.jaeger_binary())
    usual = (JAEGER_PORTS.otlp, JAEGER_PORTS.query, JAEGER_PORTS.query_grpc)
    ports = jaeger.Ports(*(port if _free(port) else free_port() for port in usual))
    with Jaeger(workdir / "jaeger", ports) as running:
        yield running


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def sample_trace(gateway: str) -> str:
    """Browse the catalog through the gateway under a trace id chosen here; that id."""
    trace_id = secrets.token_hex(16)
    request = urllib.request.Request(
        f"{gateway}/v1/products?pageSize=3",
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    return trace_id


def observe_banner(viewer: Jaeger | None, gateway: str) -> str:
    if viewer is None:
        return "  metrics: make metrics (RED per workload; make up OBSERVE=on adds traces)\n"
    trace_id = sample_trace(gateway)
    return "\n".join(
        [
            "Traces (Jaeger):",
            f"  traces: {viewer.ui} (Jaeger query API {viewer.ui}/api/traces?service=gateway)",
            f"  sample trace: {viewer.ui}/trace/{trace_id}",
            f"    curl -s {viewer.ui}/api/traces/{trace_id}",
            "  metrics: make metrics (RED per workload)",
            "",
        ]
    )


def up(
    workdir: Path, *, mesh: bool = True, scenario: Path | None = None, observe: bool = False
) -> int:
    pid_file = workdir / "run" / "up.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    with (
        observing(workdir, observe) as viewer,
        LocalMesh(
            workdir,
            scenario=scenario,
            sidecars=mesh,
            app_ports=usual_ports(),
            metrics_ports=None if mesh else usual_metrics_ports(),
            otlp_endpoint="" if viewer is None else viewer.otlp_endpoint,
        ) as shop,
    ):
        assert shop.stack is not None

        def alive() -> list[str]:
            dead = shop.check_alive()
            return dead if viewer is None or viewer.alive() else [*dead, "jaeger"]

        def welcome() -> str:
            demo_user = seed_demo_user(shop.address("users"))
            text = mesh_banner(shop, demo_user) if mesh else banner(shop, demo_user)
            return text + observe_banner(viewer, f"http://{shop.address('gateway')}")

        serve(shop.stack, pid_file, stopping, welcome, alive)
    pid_file.unlink(missing_ok=True)
    return 0


def serve(
    stack: LocalStack,
    pid_file: Path,
    stopping: threading.Event,
    welcome: Callable[[], str],
    exited: Callable[[], list[str]],
) -> None:
    """Follow the logs in the foreground until asked to stop, or until a process exits."""
    pid_file.write_text(str(os.getpid()))
    threading.Thread(target=follow_logs, args=(stack, stopping), daemon=True).start()
    print(welcome(), flush=True)
    while not stopping.is_set():
        dead = exited()
        if dead:
            print(f"{', '.join(dead)} exited unexpectedly; stopping", file=sys.stderr)
            stopping.set()
        stopping.wait(0.5)
    print("stopping the shop ...", flush=True)


def apply(workdir: Path, scenario: Path | None) -> int:
    try:
        mesh = LocalMesh.attach(workdir, Settings.from_env())
        version = mesh.apply(scenario)
    except (MeshError, ApplyError) as error:
        print(
            f"mesh-apply FAILED (the running mesh keeps its configuration):\n{error}",
            file=sys.stderr,
        )
        return 1
    what = scenario or "the base mesh"
    print(f"applied {what} to {len(mesh.sidecars)} sidecars (version {version})")
    return 0


def status(workdir: Path) -> int:
    try:
        print(LocalMesh.attach(workdir, Settings.from_env()).status())
    except (MeshError, ApplyError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def down(workdir: Path) -> int:
    pid_file = workdir / "run" / "up.pid"
    if not pid_file.exists():
        print("nothing to stop: `make up` is not running from this checkout")
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return 0
    while pid_file.exists():
        time.sleep(0.1)
    print("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.local", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "apply", "status", "metrics", "jaeger"])
    parser.add_argument("scenario", nargs="?", type=Path, help="apply: a mesh/scenarios file")
    parser.add_argument("--workdir", type=Path, default=Path("var"), help="data, logs and pid")
    parser.add_argument("--mesh", choices=["on", "off"], default="on", help="up: with sidecars?")
    parser.add_argument("--scenario", dest="start_scenario", type=Path, help="up: start with it")
    parser.add_argument("--observe", choices=["on", "off"], default="off", help="up: Jaeger too?")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(
                args.workdir,
                mesh=args.mesh == "on",
                scenario=args.start_scenario,
                observe=args.observe == "on",
            )
        if args.command == "jaeger":
            print(jaeger.build(jaeger.jaeger_binary()))
            return 0
    except (MeshError, EnvoyError, StackError, JaegerError) as error:
        print(f"make {args.command} FAILED:\n{error}", file=sys.stderr)
        return 1
    if args.command == "metrics":
        return red.main(args.workdir)
    if args.command == "apply":
        return apply(args.workdir, args.scenario)
    if args.command == "status":
        return status(args.workdir)
    return down(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
