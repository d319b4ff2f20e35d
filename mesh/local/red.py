"""`make metrics`: rate, errors and duration (RED) per hop of the running local mesh.

Each gRPC workload gives two rows: its inbound sidecar (Envoy's `grpc_stats` counters by method
and status, and `http.inbound.downstream_rq_time`) and its app (`grpc_server_handled_total` and
`grpc_server_handling_seconds` from /metrics). The REST gateway's row is its Envoy's listener.
Health checks are left out.
"""

from __future__ import annotations

import re
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from mesh.local.supervisor import ApplyError, Running

CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
HEALTH = "/grpc.health.v1.Health/"
# cluster.inbound|<port>||.grpc.<package.Service>.<Method>.<code>
_ENVOY_GRPC = re.compile(r"^cluster\.inbound\|[^.]*\.grpc\.(?P<method>.+)\.(?P<code>\d+)$")
_PERCENTILE = re.compile(r"P(?P<q>[\d.]+)\((?P<interval>[^,]+),(?P<total>[^)]+)\)")


@dataclass
class Hop:
    """Calls seen at one point of the path, by status, with their latency percentiles (ms)."""

    workload: str
    where: str
    codes: Counter[str] = field(default_factory=Counter)
    p50: float | None = None
    p99: float | None = None

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def errors(self) -> str:
        failed = {c: n for c, n in self.codes.items() if n and c not in ("OK", "1xx", "2xx")}
        return ", ".join(f"{code} {n}" for code, n in sorted(failed.items())) or "-"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def app_hop(workload: str, metrics: str) -> Hop:
    """From a service's Prometheus text: calls by code and histogram percentiles."""
    hop = Hop(workload, "app")
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            method = sample.labels.get("grpc_method", "")
            if method.startswith(HEALTH):
                continue
            if sample.name == "grpc_server_handled_total":
                hop.codes[sample.labels["grpc_code"]] += int(sample.value)
            elif sample.name == "grpc_server_handling_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    hop.p50 = _quantile(buckets, 0.5)
    hop.p99 = _quantile(buckets, 0.99)
    return hop


def _quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets, in milliseconds."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] == 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound * 1000
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 0
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return None


def envoy_hop(workload: str, where: str, stats: str, prefix: str) -> Hop:
    """From Envoy's /stats: gRPC calls by method and code (sidecar inbound), or HTTP responses
    by class (the gateway), and `http.<prefix>.downstream_rq_time` percentiles."""
    hop = Hop(workload, where)
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        match = _ENVOY_GRPC.match(name)
        if match:
            if not match["method"].startswith("grpc.health."):
                hop.codes[CODE_NAMES.get(int(match["code"]), match["code"])] += int(value)
        elif prefix == "gateway" and re.fullmatch(rf"http\.{prefix}\.downstream_rq_\dxx", name):
            hop.codes[name.rsplit("_", 1)[1]] += int(value)
        elif name == f"http.{prefix}.downstream_rq_time":
            percentiles = {m["q"]: m["total"] for m in _PERCENTILE.finditer(value)}
            hop.p50 = _number(percentiles.get("50"))
            hop.p99 = _number(percentiles.get("99"))
    return hop


def _number(text: str | None) -> float | None:
    if text is None or text == "nan":
        return None
    return float(text)


def collect(running: Running) -> list[Hop]:
    hops = []
    for name in sorted(running.plan):
        metrics_port = running.metrics.get(name, 0)
        if running.plan[name].inbound:
            stats = _get(f"http://{running.admins[name]}/stats?filter=inbound")
            hops.append(envoy_hop(name, "sidecar in", stats, "inbound"))
            if metrics_port:
                hops.append(app_hop(name, _get(f"http://127.0.0.1:{metrics_port}/metrics")))
        elif metrics_port:  # the REST gateway: its Envoy's admin
            stats = _get(f"http://127.0.0.1:{metrics_port}/stats?filter=^http.gateway")
            hops.append(envoy_hop(name, "gateway envoy", stats, "gateway"))
    return hops


def table(hops: Iterable[Hop]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    lines = [f"{'workload':<15}{'hop':<15}{'calls':>7}  {'p50 ms':>7}{'p99 ms':>8}  errors"]
    for hop in hops:
        lines.append(
            f"{hop.workload:<15}{hop.where:<15}{hop.calls:>7}  {ms(hop.p50):>7}{ms(hop.p99):>8}"
            f"  {hop.errors()}"
        )
    return "\n".join(lines)


def main(workdir: Path) -> int:
    try:
        running = Running.read(workdir)
        print(table(collect(running)))
    except (ApplyError, OSError) as error:
        print(f"make metrics FAILED: {error}", file=sys.stderr)
        return 1
    print("\ncalls and errors since start; errors by gRPC code (the gateway: HTTP class)")
    return 0
