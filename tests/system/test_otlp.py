"""Spans leave a service over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from mesh.local.stack import LocalStack
from shop.users.v1 import users_pb2, users_pb2_grpc

pytestmark = pytest.mark.system


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> dict[str, set[str]]:
        """Span names by the service.name of the resource that sent them."""
        found: dict[str, set[str]] = {}
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                names = found.setdefault(attributes.get("service.name", "?"), set())
                for scope in resource_spans.scope_spans:
                    names.update(span.name for span in scope.spans)
        return found


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    received = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(0)


def call_users(stack: LocalStack) -> None:
    with grpc.insecure_channel(stack.address("users")) as channel:
        users_pb2_grpc.UserServiceStub(channel).ListUsers(users_pb2.ListUsersRequest(), timeout=5)


def test_spans_are_exported_when_an_endpoint_is_set(
    tmp_path: Path, collector: tuple[Collector, int]
) -> None:
    received, port = collector
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "LOG_LEVEL": "WARNING"}
    with LocalStack(tmp_path, services=["users"], env=env) as stack:
        call_users(stack)
        stack.stop("users")  # shutting down flushes the batch of spans
    deadline = time.monotonic() + 10
    while "users" not in received.spans() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "/shop.users.v1.UserService/ListUsers" in received.spans().get("users", set())
