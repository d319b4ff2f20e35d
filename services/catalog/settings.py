"""Settings of the catalog service, read once from the environment."""

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
            server=ServerSettings.from_env("catalog", environ, default_port=50052),
            database_path=Env(environ).string("DATABASE_PATH", "var/catalog.db"),
        )
