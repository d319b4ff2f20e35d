"""Several worker processes for one service, sharing its port with SO_REUSEPORT.

The pattern of grpc's multiprocessing example: the parent reserves the port, starts `WORKERS`
copies of the same command (each with its own event loop and gRPC server bound with
`grpc.so_reuseport`), serves their metrics merged (Prometheus multiprocess mode), forwards
SIGTERM for a graceful stop, and takes the workers down with it if it dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import tempfile

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from services.runtime.settings import ServerSettings

log = logging.getLogger("shop.workers")

WORKER_INDEX = "WORKER_INDEX"
PARENT_PID = "WORKERS_PARENT_PID"
PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_PR_SET_PDEATHSIG = 1
# Time a worker gets beyond its own grace period before it is killed.
_STOP_MARGIN_SECONDS = 5.0


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0))


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) a SO_REUSEPORT socket that holds `port` (or picks one for 0)
    for as long as the workers live; the kernel balances connections over their listeners."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # As every server does: connections of a previous run in TIME_WAIT must not hold the port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def die_with_parent() -> None:
    """In a worker: have the kernel SIGKILL this process when its parent dies, so a crashed
    parent never leaves workers holding the port. Set here, after exec, rather than between fork
    and exec: a parent with gRPC threads (a service with client channels) must not run Python
    in a forked child, and without a `preexec_fn` the child is spawned with vfork."""
    parent = os.environ.get(PARENT_PID)
    if parent is None:
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


async def supervise(settings: ServerSettings) -> int:
    """Run `settings.workers` copies of this process's command as workers until SIGTERM or
    SIGINT, or until one exits on its own; returns the exit code for the parent."""
    reserved = reserve_port(settings.host, settings.port)
    port = reserved.getsockname()[1]
    with reserved, tempfile.TemporaryDirectory(prefix=f"{settings.name}-metrics-") as metrics_dir:
        env = {
            **os.environ,
            "PORT": str(port),
            "METRICS_PORT": "0",  # the parent serves every worker's metrics, merged
            PROMETHEUS_MULTIPROC_DIR: metrics_dir,
            PARENT_PID: str(os.getpid()),
        }
        command = [sys.executable, *sys.orig_argv[1:]]
        workers = [
            await asyncio.create_subprocess_exec(*command, env={**env, WORKER_INDEX: str(index)})
            for index in range(settings.workers)
        ]
        metrics_port = None
        if settings.telemetry and settings.metrics_port:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
            server, _ = start_http_server(settings.metrics_port, settings.host, registry)
            metrics_port = server.server_address[1]
        log.info(
            "supervising",
            extra={
                "address": f"{settings.host}:{port}",
                "workers": [worker.pid for worker in workers],
                "metrics_port": metrics_port,
            },
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        exits = [asyncio.ensure_future(worker.wait()) for worker in workers]
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
        crashed = not stop.is_set()
        if crashed:
            early = {w.pid: w.returncode for w in workers if w.returncode is not None}
            log.error("a worker exited; stopping the others", extra={"exit_codes": early})
        stopping.cancel()
        for worker in workers:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
        _, late = await asyncio.wait(exits, timeout=settings.grace_seconds + _STOP_MARGIN_SECONDS)
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
        await asyncio.gather(*exits)
        codes = [worker.returncode for worker in workers]
        log.info("workers stopped", extra={"exit_codes": codes, "killed": len(late)})
    return 1 if crashed or late or any(codes) else 0
