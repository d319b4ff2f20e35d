"""`make up` / `make down`: run the whole shop locally with demo data, or stop it.

`up` stays in the foreground, prefixes each service's log lines with its name, and stops every
service gracefully on Ctrl-C, SIGTERM, or `make down` from another terminal.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import grpc

from mesh.local.stack import DEFAULT_PORTS, HOST, LocalStack
from shop.users.v1 import users_pb2, users_pb2_grpc

DEMO_EMAIL = "demo@shop.example"
METRICS_PORTS = {name: 9100 + index for index, name in enumerate(DEFAULT_PORTS, start=1)}


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


def banner(stack: LocalStack, demo_user: str) -> str:
    orders, catalog = stack.address("orders"), stack.address("catalog")
    health = '{"service":"shop.orders.v1.OrderService"}'
    rows = [f"  {'service':<14} {'gRPC address':<18} metrics"]
    rows += [
        f"  {name:<14} {w.address:<18} http://{HOST}:{METRICS_PORTS[name]}/metrics"
        for name, w in stack.workloads.items()
    ]
    place = (
        f'{{"request_id":"demo-1","user_id":"{demo_user}","payment_token":"tok_visa",'
        f'"items":[{{"product_id":"sku-espresso","quantity":1}}]}}'
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
            "",
        ]
    )


def up(workdir: Path) -> int:
    pid_file = workdir / "run" / "up.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    service_env = {name: {"METRICS_PORT": str(port)} for name, port in METRICS_PORTS.items()}
    with LocalStack(workdir, ports=DEFAULT_PORTS, service_env=service_env) as stack:
        pid_file.write_text(str(os.getpid()))
        logs = threading.Thread(target=follow_logs, args=(stack, stopping), daemon=True)
        logs.start()
        print(banner(stack, seed_demo_user(stack.address("users"))), flush=True)
        while not stopping.is_set():
            for name, workload in stack.workloads.items():
                if workload.process is not None and workload.process.poll() is not None:
                    print(f"{name} exited unexpectedly; stopping", file=sys.stderr)
                    stopping.set()
            stopping.wait(0.5)
        print("stopping the shop ...", flush=True)
    pid_file.unlink(missing_ok=True)
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
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--workdir", type=Path, default=Path("var"), help="data, logs and pid")
    args = parser.parse_args(argv)
    return up(args.workdir) if args.command == "up" else down(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
