"""`make metrics`: services' Prometheus text and Envoy's /stats become one row per hop."""

from __future__ import annotations

from prometheus_client import generate_latest

from mesh.local.red import app_hop, envoy_hop, table
from services.runtime.telemetry import Metrics

STATS = """\
cluster.inbound|21445||.grpc.shop.payments.v1.PaymentService.ChargePayment.0: 8
cluster.inbound|21445||.grpc.shop.payments.v1.PaymentService.ChargePayment.9: 2
cluster.inbound|21445||.grpc.shop.payments.v1.PaymentService.ChargePayment.total: 10
cluster.inbound|21445||.grpc.grpc.health.v1.Health.Check.0: 40
http.inbound.downstream_rq_time: P0(nan,1) P25(nan,1.02) P50(nan,1.5) P75(nan,2) P90(nan,3) \
P95(nan,4) P99(nan,9.5) P99.5(nan,10) P99.9(nan,11) P100(nan,12)
"""


def test_a_sidecar_row_counts_calls_by_grpc_code_without_health_checks() -> None:
    hop = envoy_hop("payments", "sidecar in", STATS, "inbound")
    assert (hop.calls, hop.errors(), hop.p50, hop.p99) == (10, "FAILED_PRECONDITION 2", 1.5, 9.5)


def test_an_app_row_reads_the_services_own_metrics() -> None:
    metrics = Metrics()
    for _ in range(98):
        metrics.observe("/shop.payments.v1.PaymentService/ChargePayment", "OK", 0.0008)
    for _ in range(2):
        metrics.observe("/shop.payments.v1.PaymentService/ChargePayment", "UNAVAILABLE", 0.3)
    metrics.observe("/grpc.health.v1.Health/Check", "OK", 0.0001)
    hop = app_hop("payments", generate_latest(metrics.registry).decode())
    assert (hop.calls, hop.errors()) == (100, "UNAVAILABLE 2")
    assert hop.p50 is not None and 0.5 <= hop.p50 <= 1.0  # in the 0.5-1 ms bucket
    assert hop.p99 is not None and hop.p99 > 250
    assert "payments       app                100" in table([hop])
