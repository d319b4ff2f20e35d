"""Spans leave a service over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from mesh.local.stack import LocalStack
from shop.orders.v1 import orders_pb2, orders_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.system.conftest import create_user

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


def spans_named(collector: Collector, service: str, name: str) -> list[Any]:
    return [
        span
        for request in collector.requests
        for resource_spans in request.resource_spans
        if any(
            a.key == "service.name" and a.value.string_value == service
            for a in resource_spans.resource.attributes
        )
        for scope in resource_spans.scope_spans
        for span in scope.spans
        if span.name == name
    ]


def test_a_placed_orders_trace_continues_into_the_event_handling(
    tmp_path: Path, collector: tuple[Collector, int]
) -> None:
    received, port = collector
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "LOG_LEVEL": "WARNING"}
    with LocalStack(tmp_path, env=env) as stack:
        user = create_user(stack, "traced@example.com")
        with grpc.insecure_channel(stack.address("orders")) as channel:
            orders_pb2_grpc.OrderServiceStub(channel).PlaceOrder(
                orders_pb2.PlaceOrderRequest(
                    request_id="traced-1",
                    user_id=user,
                    items=[orders_pb2.OrderItem(product_id="sku-mug", quantity=1)],
                    payment_token="tok_visa",
                ),
                timeout=10,
            )
        applied = "apply shop.orders.OrderPlaced"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stack.stop("notifications")  # stopping flushes the spans it has
            if spans_named(received, "notifications", applied):
                break
            stack.start("notifications")
    (place,) = spans_named(received, "orders", "/shop.orders.v1.OrderService/PlaceOrder")
    (handled,) = spans_named(received, "notifications", applied)
    assert handled.trace_id == place.trace_id
    assert handled.parent_span_id == place.span_id
