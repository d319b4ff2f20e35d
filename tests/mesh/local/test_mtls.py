"""mTLS and authorization at the sidecars' inbound ports: who may call which method.

Each call presents a certificate from the mesh's CA (or another) for a SPIFFE identity, exactly
as a calling workload's sidecar would.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.local.ca import Identity, LocalCA
from mesh.local.supervisor import LocalMesh
from services.runtime.topology import ROOT
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.events.v1 import events_pb2, events_pb2_grpc
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc
from tests.mesh.local.conftest import secure_channel

pytestmark = pytest.mark.system
RBAC_DENIED = "RBAC: access denied"


def identity(mesh: LocalMesh, account: str, directory: Path) -> Identity:
    return mesh.ca.issue(account, directory / account)


def charge(channel: grpc.Channel) -> grpc.RpcError:
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    request = payments_pb2.ChargePaymentRequest(
        idempotency_key="mtls-test",
        user_id="usr_nobody",
        amount_cents=100,
        payment_token="tok_visa",
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.ChargePayment(request, timeout=5)
    return caught.value


def get_payment(channel: grpc.Channel) -> grpc.RpcError:
    stub = payments_pb2_grpc.PaymentServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetPayment(payments_pb2.GetPaymentRequest(payment_id="pay_missing"), timeout=5)
    return caught.value


def test_plaintext_to_any_inbound_port_fails(mesh: LocalMesh) -> None:
    inbound = [name for name, ports in mesh.plan.items() if ports.inbound]
    assert inbound == [name for name in mesh.workloads if name != "gateway"]
    for name in inbound:
        with (
            grpc.insecure_channel(mesh.inbound(name)) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, name


def test_tls_without_a_client_certificate_fails_fast_and_says_why(mesh: LocalMesh) -> None:
    """STRICT mTLS refuses in the handshake, at once, not when the caller's deadline passes."""
    credentials = grpc.ssl_channel_credentials(root_certificates=mesh.ca.cert_path.read_bytes())
    for name, ports in mesh.plan.items():
        if not ports.inbound:
            continue
        server = f"{mesh.workloads[name].app}.default.svc.cluster.local"
        options = [("grpc.ssl_target_name_override", server)]
        started = time.monotonic()
        with (
            grpc.secure_channel(mesh.inbound(name), credentials, options=options) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert time.monotonic() - started < 2, name
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, name
        assert "HANDSHAKE_FAILURE" in (caught.value.details() or ""), caught.value.details()


def test_a_go_client_without_a_certificate_sees_the_handshake_fail(mesh: LocalMesh) -> None:
    """grpcurl is grpc-go: under TLS 1.3 it saw only "context deadline exceeded"."""
    started = time.monotonic()
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "grpcurl"),
            "-cacert",
            str(mesh.ca.cert_path),
            "-authority",
            "payments.default.svc.cluster.local",
            "-max-time",
            "10",
            mesh.inbound("payments"),
            "grpc.health.v1.Health/Check",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert time.monotonic() - started < 2
    assert "tls: handshake failure" in result.stderr, result.stderr


def test_a_certificate_from_another_ca_fails(mesh: LocalMesh, tmp_path: Path) -> None:
    rogue = LocalCA(tmp_path / "rogue-ca").issue("orders", tmp_path / "rogue")
    # Trust the mesh's root, so that only our certificate is wrong, not our view of theirs.
    rogue = Identity(rogue.account, rogue.cert, rogue.key, mesh.ca.cert_path)
    with secure_channel(rogue, mesh.inbound("payments"), "payments") as channel:
        assert get_payment(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_an_identity_the_policy_does_not_name_is_denied(mesh: LocalMesh, tmp_path: Path) -> None:
    notifications = identity(mesh, "notifications", tmp_path)
    with secure_channel(notifications, mesh.inbound("payments"), "payments") as channel:
        error = get_payment(channel)
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, RBAC_DENIED)


def test_allowed_callers_reach_the_app(mesh: LocalMesh, tmp_path: Path) -> None:
    orders = identity(mesh, "orders", tmp_path)
    with secure_channel(orders, mesh.inbound("payments"), "payments") as channel:
        error = get_payment(channel)  # the app itself answers: no such payment
    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    with secure_channel(orders, mesh.inbound("users"), "users") as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetUser(users_pb2.GetUserRequest(user_id="usr_missing"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_gateway_may_browse_but_not_charge_or_reserve(mesh: LocalMesh, tmp_path: Path) -> None:
    gateway = identity(mesh, "gateway", tmp_path)
    with secure_channel(gateway, mesh.inbound("payments"), "payments") as channel:
        error = charge(channel)
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, RBAC_DENIED)
    with secure_channel(gateway, mesh.inbound("catalog"), "catalog") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        assert stub.ListProducts(catalog_pb2.ListProductsRequest(), timeout=5).products
        with pytest.raises(grpc.RpcError) as caught:
            stub.ReserveStock(catalog_pb2.ReserveStockRequest(reservation_id="r-1"), timeout=5)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        RBAC_DENIED,
    )


def test_the_gateway_sidecar_calls_with_the_gateway_identity(mesh: LocalMesh) -> None:
    """The gateway app speaks plaintext to its own sidecar, which adds mTLS and its identity."""
    with grpc.insecure_channel(mesh.outbound("gateway", "catalog")) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        assert stub.GetProduct(catalog_pb2.GetProductRequest(product_id="sku-mug"), timeout=5)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ReleaseStock(catalog_pb2.ReleaseStockRequest(reservation_id="r-1"), timeout=5)
    assert caught.value.details() == RBAC_DENIED


@pytest.mark.parametrize("producer", ["orders", "payments"])
def test_only_notifications_may_subscribe_to_events(
    mesh: LocalMesh, tmp_path: Path, producer: str
) -> None:
    workload = "orders-v1" if producer == "orders" else producer

    def subscribe_and_ack(account: str) -> grpc.StatusCode:
        """The status of a subscription (OK while it waits for events) and of an ack."""
        caller = identity(mesh, account, tmp_path)
        with secure_channel(caller, mesh.inbound(workload), producer) as channel:
            stub = events_pb2_grpc.EventStreamServiceStub(channel)
            stream = stub.Subscribe(events_pb2.SubscribeRequest(consumer="test"), timeout=1)
            try:
                next(stream)
                subscribed = grpc.StatusCode.OK
            except grpc.RpcError as error:
                subscribed = error.code()
            if subscribed is grpc.StatusCode.DEADLINE_EXCEEDED:  # admitted; no events yet
                subscribed = grpc.StatusCode.OK
            try:
                stub.Ack(events_pb2.AckRequest(consumer="test", offset=0), timeout=5)
                acked = grpc.StatusCode.OK
            except grpc.RpcError as error:
                acked = error.code()
        assert subscribed == acked, (subscribed, acked)
        return acked

    other = "orders" if producer == "payments" else "payments"
    assert subscribe_and_ack("gateway") == grpc.StatusCode.PERMISSION_DENIED
    assert subscribe_and_ack(other) == grpc.StatusCode.PERMISSION_DENIED
    assert subscribe_and_ack("notifications") == grpc.StatusCode.OK
