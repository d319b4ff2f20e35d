"""One trace per REST request, through every Envoy and service, as Jaeger shows it.

Starts Jaeger (built on first use into build/bin) and the mesh exporting to it, places orders
through the gateway, and reads the traces back through Jaeger's query API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence

import httpx
import pytest

from gateway import auth
from gateway.settings import Settings as GatewaySettings
from mesh.local import jaeger
from mesh.local.jaeger import Jaeger, Span
from mesh.local.stack import free_port
from mesh.local.supervisor import LocalMesh
from tests.mesh.local.conftest import gateway_env

pytestmark = [pytest.mark.system, pytest.mark.observe]

PLACE = "/shop.orders.v1.OrderService/PlaceOrder"
# The saga's calls: (callee app, method).
PEER_CALLS = [
    ("users", "/shop.users.v1.UserService/GetUser"),
    ("catalog", "/shop.catalog.v1.CatalogService/GetProduct"),
    ("catalog", "/shop.catalog.v1.CatalogService/ReserveStock"),
    ("payments", "/shop.payments.v1.PaymentService/ChargePayment"),
]


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    binary = jaeger.build(jaeger.jaeger_binary())

    directory = tmp_path_factory.mktemp("jaeger")
    with Jaeger(directory, jaeger.Ports(free_port(), free_port(), free_port()), binary) as j:
        yield j


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, viewer: Jaeger) -> Iterator[LocalMesh]:
    workdir = tmp_path_factory.mktemp("traced")
    with LocalMesh(
        workdir, service_env={"gateway": gateway_env(workdir)}, otlp_endpoint=viewer.otlp_endpoint
    ) as running:
        yield running


def place_order(mesh: LocalMesh, payment_token: str) -> tuple[httpx.Response, str]:
    """A new customer places one order over REST; the response and its x-request-id."""
    settings = GatewaySettings.from_env(gateway_env(mesh.workdir))
    with httpx.Client(base_url=f"http://{mesh.address('gateway')}", timeout=30) as client:
        email = f"{uuid.uuid4().hex[:8]}@traced.example"
        created = client.post("/v1/users", json={"email": email, "displayName": "Traced"})
        user_id = created.json()["user"]["userId"]
        response = client.post(
            "/v1/orders",
            headers={"authorization": f"Bearer {auth.mint_token(settings, user_id)}"},
            json={
                "requestId": str(uuid.uuid4()),
                "userId": user_id,
                "paymentToken": payment_token,
                "items": [{"productId": "sku-mug", "quantity": 1}],
            },
        )
    assert response.status_code == 200, response.text
    return response, response.headers["x-request-id"]


def find(spans: Sequence[Span], service: str, kind: str, name: str) -> Span:
    found = [s for s in spans if (s.service, s.kind, s.name) == (service, kind, name)]
    assert len(found) == 1, f"{service} {kind} {name}: {len(found)} spans\n" + outline(spans)
    return found[0]


def outline(spans: Sequence[Span]) -> str:
    return "\n".join(sorted(f"  {s.service} {s.kind} {s.name} <- {s.parent_id}" for s in spans))


def hop_chain(spans: Sequence[Span], parent: Span, callee: str, method: str) -> list[Span]:
    """orders' client span -> its sidecar's (egress) -> the callee sidecar's (ingress) -> the
    callee's server span, each the child of the one before; the four spans."""
    chain = [
        find(spans, "orders", "client", method),
        find(spans, "orders.default", "client", method),
        find(spans, f"{callee}.default", "server", method),
        find(spans, callee, "server", method),
    ]
    for child, expected in zip(chain, [parent, *chain[:-1]], strict=True):
        assert child.parent_id == expected.span_id, f"{child} is not a child of {expected}"
    return chain


def order_trace(viewer: Jaeger, request_id: str, complete: int) -> list[Span]:
    """The one trace whose gateway span carries `request_id`, once it has `complete` spans."""
    tags = {"guid:x-request-id": request_id}
    traces: list[list[Span]] = []
    for _ in range(60):
        traces = viewer.query.traces("gateway", "POST /v1/orders", limit=5, tags=tags)
        if traces:
            break
        time.sleep(0.5)
    assert len(traces) == 1, f"{len(traces)} traces for request {request_id}"
    trace_id = traces[0][0].trace_id
    return viewer.query.wait_for_trace(trace_id, lambda spans: len(spans) >= complete)


def test_a_rest_order_is_one_trace_through_every_sidecar_and_service(
    traced: LocalMesh, viewer: Jaeger
) -> None:
    response, request_id = place_order(traced, "tok_visa")
    assert response.json()["order"]["status"] == "ORDER_STATUS_CONFIRMED"
    # gateway, its sidecar, orders' sidecar and app, four spans per peer call, three events.
    spans = order_trace(viewer, request_id, complete=4 + 4 * len(PEER_CALLS) + 3)
    assert len({s.trace_id for s in spans}) == 1

    gateway = find(spans, "gateway", "server", "POST /v1/orders")
    assert gateway.parent_id == ""  # the trace starts at the edge
    egress = find(spans, "gateway.default", "client", PLACE)
    ingress = find(spans, "orders.default", "server", PLACE)
    place = find(spans, "orders", "server", PLACE)
    assert (egress.parent_id, ingress.parent_id, place.parent_id) == (
        gateway.span_id,
        egress.span_id,
        ingress.span_id,
    )
    for callee, method in PEER_CALLS:
        hop_chain(spans, place, callee, method)
    for subject in ("shop.orders.OrderPlaced", "shop.orders.OrderConfirmed"):
        applied = find(spans, "notifications", "consumer", f"apply {subject}")
        assert applied.parent_id == place.span_id
    charged = find(spans, "payments", "server", "/shop.payments.v1.PaymentService/ChargePayment")
    captured = find(spans, "notifications", "consumer", "apply shop.payments.PaymentCaptured")
    assert captured.parent_id == charged.span_id
    assert not [s for s in spans if s.error], outline([s for s in spans if s.error])


def test_a_declined_payment_marks_the_failing_hop_and_only_it(
    traced: LocalMesh, viewer: Jaeger
) -> None:
    response, request_id = place_order(traced, "tok_decline")
    assert response.json()["order"]["status"] == "ORDER_STATUS_CANCELLED"
    # As above without the capture, plus the compensation (ReleaseStock) and OrderCancelled.
    spans = order_trace(viewer, request_id, complete=4 + 4 * (len(PEER_CALLS) + 1) + 2)
    place = find(spans, "orders", "server", PLACE)
    client, egress, ingress, charge = hop_chain(
        spans, place, "payments", "/shop.payments.v1.PaymentService/ChargePayment"
    )
    # The caller's side of the hop fails; every span of it carries FAILED_PRECONDITION (9).
    assert client.error and egress.error
    assert client.tags["rpc.grpc.status_code"] == 9
    assert egress.tags["grpc.status_code"] == "9"
    assert ingress.tags["grpc.status_code"] == "9"
    assert charge.tags["rpc.grpc.status_code"] == 9
    hop_chain(spans, place, "catalog", "/shop.catalog.v1.CatalogService/ReleaseStock")
    # A refusal is an answer, not a failure of the request: the rest of the trace is clean.
    # A refusal is an answer, not a failure of the request: nothing outside that hop is marked
    # (whether the callee's own span is, is the service's choice; Envoy's server span is not).
    failing = {s.span_id for s in spans if s.error}
    hop = {client.span_id, egress.span_id, ingress.span_id, charge.span_id}
    assert {client.span_id, egress.span_id} <= failing <= hop - {ingress.span_id}, outline(
        [s for s in spans if s.error]
    )
    cancelled = find(spans, "notifications", "consumer", "apply shop.orders.OrderCancelled")
    assert cancelled.parent_id == place.span_id
