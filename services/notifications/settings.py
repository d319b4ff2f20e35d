"""Settings of the notifications service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.runtime.settings import Env, ServerSettings


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    database_path: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            server=ServerSettings.from_env("notifications", environ, default_port=50055),
            database_path=Env(environ).string("DATABASE_PATH", "var/notifications.db"),
        )
