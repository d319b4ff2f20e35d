"""The gateway's settings, read once from the environment into a frozen object."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.envoy import envoy_binary
from runner.envoy_tracing import Tracing, TracingError
from services.runtime import topology
from services.runtime.settings import SettingsError
from services.runtime.topology import ROOT

DEV_DIR = ROOT / "var" / "gateway"
ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def default_upstreams() -> dict[str, str]:
    """The services the gateway's Deployment names, by bounded context, at their local ports."""
    return topology.load().upstreams("gateway")


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `requests` per `seconds`, refilled whole at each interval."""

    requests: int
    seconds: int = 1


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = field(default_factory=lambda: topology.load().port("gateway"))
    # The admin interface always binds loopback; only its port is configurable.
    admin_port: int = 9901
    upstreams: Mapping[str, str] = field(default_factory=default_upstreams)
    envoy_bin: str = ""
    # Envoy worker threads; 0 means one per core. On a small machine shared with the services,
    # one worker leaves them more CPU.
    envoy_concurrency: int = 0
    descriptor_set: Path = ROOT / "build" / "shop.binpb"
    jwt_issuer: str = "shop-dev"
    jwt_audience: str = "shop-gateway"
    jwks_file: Path = DEV_DIR / "jwks.json"
    signing_key_file: Path = DEV_DIR / "signing-key.pem"
    cors_origins: tuple[str, ...] = ("http://localhost:3000",)
    # Per route group: browsing without a token, authenticated reads, authenticated writes.
    rate_limits: Mapping[str, RateLimit] = field(
        default_factory=lambda: {
            "public": RateLimit(100),
            "read": RateLimit(50),
            "write": RateLimit(10),
        }
    )
    log_level: str = "warning"
    # Spans go over OTLP/gRPC when set; TRACE_SAMPLING is the percentage of requests that come
    # without a `traceparent` for which the gateway starts a trace.
    tracing: Tracing | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables; a bad value fails with its name."""
        defaults = cls()
        upstreams = default_upstreams()
        known = set(upstreams)
        for name, value in environ.items():
            if not name.endswith("_ADDR"):
                continue
            context = name.removesuffix("_ADDR").lower()
            if context in known:
                upstreams[context] = _address(name, value)
            elif ADDRESS.match(value):
                # A context added to the contracts later needs no code change here.
                upstreams[context] = value
        limits = dict(defaults.rate_limits)
        for group in limits:
            name = f"RATE_LIMIT_{group.upper()}"
            if name in environ:
                limits[group] = _rate_limit(name, environ[name])
        origins = environ.get("CORS_ORIGINS")
        return cls(
            host=environ.get("GATEWAY_HOST", defaults.host),
            port=_port("GATEWAY_PORT", environ.get("GATEWAY_PORT"), defaults.port),
            admin_port=_port("ADMIN_PORT", environ.get("ADMIN_PORT"), defaults.admin_port),
            upstreams=upstreams,
            envoy_bin=envoy_binary(environ),
            envoy_concurrency=_count("ENVOY_CONCURRENCY", environ.get("ENVOY_CONCURRENCY")),
            descriptor_set=Path(environ.get("DESCRIPTOR_SET", defaults.descriptor_set)),
            jwt_issuer=environ.get("JWT_ISSUER", defaults.jwt_issuer),
            jwt_audience=environ.get("JWT_AUDIENCE", defaults.jwt_audience),
            jwks_file=Path(environ.get("JWKS_FILE", defaults.jwks_file)),
            signing_key_file=Path(environ.get("SIGNING_KEY_FILE", defaults.signing_key_file)),
            cors_origins=(
                defaults.cors_origins
                if origins is None
                else tuple(o.strip() for o in origins.split(",") if o.strip())
            ),
            rate_limits=limits,
            log_level=environ.get("LOG_LEVEL", defaults.log_level).lower(),
            tracing=_tracing(environ),
        )

    def upstream(self, context: str) -> str:
        try:
            return self.upstreams[context]
        except KeyError:
            raise SettingsError(
                f"{context.upper()}_ADDR is not set: the contracts have a `{context}` service"
            ) from None


def _tracing(environ: Mapping[str, str]) -> Tracing | None:
    raw = environ.get("TRACE_SAMPLING") or "100"
    try:
        sampling = float(raw)
    except ValueError:
        raise SettingsError(f"TRACE_SAMPLING must be a percentage, got {raw!r}") from None
    try:
        return Tracing.from_endpoint(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""), sampling)
    except TracingError as error:
        raise SettingsError(str(error)) from None


def _port(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) > 65535:
        raise SettingsError(f"{name} must be a port number (0-65535), got {value!r}")
    return int(value)


def _count(name: str, value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not value.isdigit():
        raise SettingsError(f"{name} must be a whole number (0 = one per core), got {value!r}")
    return int(value)


def _address(name: str, value: str) -> str:
    match = ADDRESS.match(value)
    if match is None or int(match["port"]) > 65535:
        raise SettingsError(f"{name} must be host:port, got {value!r}")
    return value


def _rate_limit(name: str, value: str) -> RateLimit:
    """`N` (per second) or `N/S` (N requests per S seconds)."""
    match = re.fullmatch(r"(\d+)(?:/(\d+))?", value.strip())
    if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
        raise SettingsError(
            f"{name} must be REQUESTS or REQUESTS/SECONDS (both >= 1), got {value!r}"
        )
    return RateLimit(int(match[1]), int(match[2] or 1))
