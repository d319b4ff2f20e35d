"""Telemetry: JSON logs, OpenTelemetry tracing (OTLP only when configured), Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

_STANDARD_RECORD_KEYS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, message and any `extra` fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self._service,
            "pid": record.process,  # tells a service's worker processes apart
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        entry.update((key, fields[key]) for key in fields.keys() - _STANDARD_RECORD_KEYS)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def configure_tracing(service: str, version: str, otlp_endpoint: str) -> bool:
    """Install a tracer provider; spans are recorded and exported only when an OTLP endpoint is
    set (then OTEL_TRACES_SAMPLER applies). Without one, trace ids are still made and propagated
    for the logs and outgoing calls, but no span is recorded. Returns whether spans are recorded
    (also when a provider was already installed, e.g. by a test with an in-memory exporter)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    resource = Resource.create({"service.name": service, "service.version": version})
    if not otlp_endpoint:
        trace.set_tracer_provider(
            TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
        )
        return False
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    return True


class ServerTracing:
    """Continues the caller's trace (W3C `traceparent` metadata) in each RPC, so that logs and
    outgoing calls carry one trace id per request, a saga included.

    When spans are recorded, each RPC gets a SERVER span named by its method, as the
    OpenTelemetry gRPC interceptor makes. When they are not (no exporter), the caller's context
    or a fresh unsampled root is only made current: no span object, sampler or servicer-context
    wrapper per call, which was most of the tracing cost."""

    def __init__(self, record: bool) -> None:
        self._tracer = trace.get_tracer("shop.server") if record else None

    def start(self, method: str, metadata: Mapping[str, Any]) -> tuple[object, trace.Span | None]:
        """Make the RPC's trace current; returns what `finish` needs."""
        parent = propagate.extract(metadata) if "traceparent" in metadata else None
        if self._tracer is None:
            if parent is None:
                root = SpanContext(random.getrandbits(128), random.getrandbits(64), False)
                parent = trace.set_span_in_context(NonRecordingSpan(root))
            return otel_context.attach(parent), None
        service, _, name = method[1:].partition("/")
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        return otel_context.attach(trace.set_span_in_context(span, parent)), span

    @staticmethod
    def finish(token: object, span: trace.Span | None, code: int, code_name: str) -> None:
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code)
            if code_name != "OK":
                span.set_status(Status(StatusCode.ERROR, code_name))
            span.end()
        otel_context.detach(token)  # type: ignore[arg-type]


class AccessLog:
    """One JSON line per RPC on stderr, in `JsonFormatter`'s shape, without the logging
    machinery: a LogRecord, a formatter pass and an unbuffered write cost about 50 µs a line
    under load, this a few. Lines of one event-loop turn go out in one write."""

    def __init__(self, service: str) -> None:
        self._head = (
            f'"level": "info", "service": {json.dumps(service)}, "pid": {os.getpid()},'
            ' "logger": "shop.access", "msg": "rpc"'
        )
        self._pending: list[str] = []

    @staticmethod
    def enabled() -> bool:
        return logging.getLogger("shop.access").isEnabledFor(logging.INFO)

    def write(self, method: str, code: str, seconds: float, request_id: str, trace_id: str) -> None:
        # Method and code names come from the server's own tables; only the id is the caller's.
        self._pending.append(
            f'{{"ts": {time.time():.3f}, {self._head}, "rpc_method": "{method}",'
            f' "grpc_code": "{code}", "duration_ms": {seconds * 1000:.3f},'
            f' "request_id": {json.dumps(request_id)}, "trace_id": "{trace_id}"}}\n'
        )
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        lines, self._pending = "".join(self._pending), []
        sys.stderr.write(lines)


# Buckets from 0.5 ms to 5 s: local RPCs take about a millisecond, sagas tens of milliseconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """Per-method request, error and latency metrics in a registry owned by one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code.",
            ["grpc_method", "grpc_code"],
            registry=self.registry,
        )
        self._errors = Counter(
            "grpc_server_errors",
            "RPCs that ended with a status other than OK, by method.",
            ["grpc_method"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC to its status, by method.",
            ["grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        # Labelled children, looked up once: `labels()` takes a lock and builds keys each call.
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        children = self._children.get((method, code))
        if children is None:
            errors = self._errors.labels(method) if code != "OK" else None
            children = (self._requests.labels(method, code), errors, self._latency.labels(method))
            self._children[(method, code)] = children
        requests, errors, latency = children
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP on a background thread; returns the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
