"""Typed, frozen settings read once from the environment, with errors that name the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from services.runtime import topology


class SettingsError(ValueError):
    """A required variable is missing or has a value of the wrong shape."""


class Env:
    """Reads typed values from an environment mapping; every failure names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def string(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name, default)
        if value is None or value == "":
            if default is not None:
                return default
            raise SettingsError(f"{name} must be set")
        return value

    def integer(self, name: str, default: int | None = None) -> int:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            if default is None:
                raise SettingsError(f"{name} must be set")
            return default
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None

    def number(self, name: str, default: float) -> float:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None

    def flag(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name)
        if raw is None or raw == "":
            return default
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def database(self, default_path: str) -> str:
        """`DATABASE_URL` (PostgreSQL) when set, else the SQLite file `DATABASE_PATH`."""
        return self.string("DATABASE_URL", "") or self.string("DATABASE_PATH", default_path)


@dataclass(frozen=True)
class ServerSettings:
    """What every service process needs to serve: address, logging, telemetry, shutdown."""

    name: str
    host: str
    port: int
    metrics_port: int
    log_level: str
    version: str
    grace_seconds: float
    telemetry: bool
    otlp_endpoint: str
    call_timeout_seconds: float
    workers: int = 1  # processes serving the port; more than one share it with SO_REUSEPORT
    worker_index: int | None = None  # set by the parent in each worker it starts

    @classmethod
    def from_env(
        cls, name: str, environ: Mapping[str, str], default_port: int | None = None
    ) -> ServerSettings:
        """`default_port` when PORT is unset; if not given, the port of the Service `name` in
        mesh/base (services/runtime/topology.py)."""
        env = Env(environ)
        if default_port is None and "PORT" not in environ:
            default_port = topology.load().port(name)
        return cls(
            name=name,
            host=env.string("HOST", "127.0.0.1"),
            port=env.integer("PORT", default_port),
            metrics_port=env.integer("METRICS_PORT", 0),
            log_level=env.string("LOG_LEVEL", "INFO").upper(),
            version=env.string("SERVICE_VERSION", "v1"),
            grace_seconds=env.number("GRACE_SECONDS", 5.0),
            telemetry=env.flag("TELEMETRY", True),
            otlp_endpoint=env.string("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            call_timeout_seconds=env.number("CALL_TIMEOUT_SECONDS", 5.0),
            workers=max(1, env.integer("WORKERS", len(os.sched_getaffinity(0)))),
            worker_index=env.integer("WORKER_INDEX") if environ.get("WORKER_INDEX") else None,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of a service that serves gRPC and owns one database. Every service's settings
    are a subclass: it names the service and adds its own fields (with defaults), read in its
    `from_env` on top of these."""

    NAME: ClassVar[str]

    server: ServerSettings
    database: str  # a PostgreSQL URL or an SQLite path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        return cls(
            server=ServerSettings.from_env(cls.NAME, environ),
            database=Env(environ).database(f"var/{cls.NAME}.db"),
        )
