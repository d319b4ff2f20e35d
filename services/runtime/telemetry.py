"""Telemetry: JSON logs, OpenTelemetry tracing (OTLP only when configured), Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
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


def configure_tracing(service: str, version: str, otlp_endpoint: str) -> None:
    """Install a tracer provider; spans are recorded and exported only when an OTLP endpoint is
    set (then OTEL_TRACES_SAMPLER applies). Without one, trace ids are still made and propagated
    for the logs, but only spans whose caller sampled them are recorded, which is far cheaper."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # already configured, e.g. by a test with an in-memory exporter
    resource = Resource.create({"service.name": service, "service.version": version})
    if not otlp_endpoint:
        trace.set_tracer_provider(
            TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_OFF))
        )
        return
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)


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

    def observe(self, method: str, code: str, seconds: float) -> None:
        self._requests.labels(method, code).inc()
        if code != "OK":
            self._errors.labels(method).inc()
        self._latency.labels(method).observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP on a background thread; returns the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
