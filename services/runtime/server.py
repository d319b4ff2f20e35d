"""Server bootstrap, written once: health, reflection, interceptors, metrics, graceful stop,
and several worker processes on one port (`WORKERS`, see services/runtime/workers.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.runtime.interceptors import (
    AccessLogging,
    CallMetrics,
    Piece,
    RequestContext,
    RequestInterceptor,
    TraceContext,
)
from services.runtime.settings import ServerSettings
from services.runtime.telemetry import (
    AccessLog,
    Metrics,
    ServerTracing,
    configure_logging,
    configure_tracing,
)
from services.runtime.workers import die_with_parent, supervise

log = logging.getLogger("shop.server")

# The context type servicers accept.
Context = aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class Service:
    """A servicer to mount: its full proto name and the generated `add_*_to_server` function;
    `on_stop` runs when shutdown starts (e.g. to end long-lived streams)."""

    name: str
    add_to_server: Callable[[Any, aio.Server], None]
    servicer: object
    on_stop: Callable[[], None] | None = None


@dataclass
class RunningServer:
    """A started server and what it serves; `stop` flips health first, then drains."""

    server: aio.Server
    health: HealthServicer
    port: int
    metrics_port: int | None
    service_names: tuple[str, ...]
    stop_hooks: tuple[Callable[[], None], ...] = ()

    async def stop(self, grace: float) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for hook in self.stop_hooks:
            hook()
        await self.server.stop(grace)


async def build_server(settings: ServerSettings, services: Sequence[Service]) -> RunningServer:
    """Create, bind and start a grpc.aio server for `services` with the standard extras."""
    metrics = Metrics() if settings.telemetry else None
    # Pieces begin in this order and end in the reverse one, like nested interceptors: the access
    # log is written while the call's request id and trace are still current.
    pieces: list[Piece] = [RequestContext()]
    if settings.telemetry:
        record = configure_tracing(settings.name, settings.version, settings.otlp_endpoint)
        pieces.append(TraceContext(ServerTracing(record)))
    pieces.append(AccessLogging(AccessLog(settings.name)))
    if metrics is not None:
        pieces.append(CallMetrics(metrics))
    interceptors: list[aio.ServerInterceptor] = [RequestInterceptor(pieces)]
    # One process owns its port (a second bind fails loudly); workers share it on purpose.
    reuseport = int(settings.worker_index is not None)
    server = aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", reuseport)])
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = tuple(service.name for service in services)
    for service in services:
        service.add_to_server(service.servicer, server)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(settings.address)
    await server.start()
    for name in ("", *names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_port = None
    if metrics is not None and settings.metrics_port:
        metrics_port = metrics.serve(settings.host, settings.metrics_port)
    hooks = tuple(service.on_stop for service in services if service.on_stop is not None)
    return RunningServer(server, health, port, metrics_port, names, hooks)


async def serve(
    settings: ServerSettings,
    services: Sequence[Service],
    *,
    on_started: Callable[[], Awaitable[None]] | None = None,
    on_stopped: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully: the entry point of every service.

    With `WORKERS` above one this process only supervises that many copies of itself, which
    serve; background jobs (`on_started`) run in the first worker only, so that one consumer
    or relay runs per service, as with one process."""
    configure_logging(settings.name, settings.log_level)
    if settings.workers > 1 and settings.worker_index is None:
        code = await supervise(settings)
        if on_stopped is not None:
            await on_stopped()
        if code:
            raise SystemExit(code)
        return
    if settings.worker_index is not None:
        die_with_parent()
    running = await build_server(settings, services)
    log.info(
        "serving",
        extra={
            "address": f"{settings.host}:{running.port}",
            "metrics_port": running.metrics_port,
            "worker": settings.worker_index,
        },
    )
    if on_started is not None and not settings.worker_index:
        await on_started()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping", extra={"grace_seconds": settings.grace_seconds})
    await running.stop(settings.grace_seconds)
    if on_stopped is not None:
        await on_stopped()
