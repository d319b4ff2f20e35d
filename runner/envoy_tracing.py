"""Envoy's OpenTelemetry tracer, written once for the REST gateway and every local sidecar.

Spans go over OTLP/gRPC to one collector cluster; W3C `traceparent` carries the context, so a
request that arrives sampled stays sampled and a new one is sampled at `sampling` percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

JSON = dict[str, Any]
TYPES = "type.googleapis.com/envoy."
COLLECTOR_CLUSTER = "opentelemetry_collector"
# Envoy batches spans for 5 s by default; one second lets a person see a trace right away and
# still sends one export per second at most.
RUNTIME: JSON = {
    "layers": [
        {
            "name": "tracing",
            "static_layer": {"tracing.opentelemetry.flush_interval_ms": 1000},
        }
    ]
}


class TracingError(ValueError):
    """An OTLP endpoint that Envoy cannot use; the message names the setting."""


@dataclass(frozen=True)
class Tracing:
    """Where an Envoy sends its spans (an OTLP/gRPC `host:port`), and what share of requests
    that arrive without a trace it starts one for."""

    host: str
    port: int
    sampling: float = 100.0

    @classmethod
    def from_endpoint(cls, endpoint: str, sampling: float = 100.0) -> Tracing | None:
        """`http://host:port` or `host:port` as in OTEL_EXPORTER_OTLP_ENDPOINT; None if empty."""
        if not endpoint:
            return None
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise TracingError(
                f"OTEL_EXPORTER_OTLP_ENDPOINT must be http://host:port (plain OTLP/gRPC), "
                f"got {endpoint!r}"
            )
        if not 0 <= sampling <= 100:
            raise TracingError(f"trace sampling must be 0-100 percent, got {sampling}")
        return cls(parts.hostname, parts.port, sampling)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def http_tracing(self, service_name: str, operation: str = "") -> JSON:
        """The `tracing` block of an HTTP connection manager: its spans carry `service_name`,
        and are named by `operation` (an Envoy format string) unless a route decorates them."""
        return {
            **({"operation": operation} if operation else {}),
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": TYPES + "config.trace.v3.OpenTelemetryConfig",
                    "grpc_service": {
                        "envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER},
                        "timeout": "1s",
                    },
                    "service_name": service_name,
                },
            },
            "random_sampling": {"value": self.sampling},
        }

    def cluster(self) -> JSON:
        """The collector as an HTTP/2 cluster (OTLP/gRPC)."""
        return {
            "name": COLLECTOR_CLUSTER,
            "type": "STRICT_DNS",
            "connect_timeout": "1s",
            "dns_lookup_family": "V4_PREFERRED",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": TYPES + "extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                }
            },
            "load_assignment": {
                "cluster_name": COLLECTOR_CLUSTER,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": self.host,
                                            "port_value": self.port,
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
