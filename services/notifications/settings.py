"""Settings of the notifications service, read once from the environment."""

from __future__ import annotations

from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    NAME = "notifications"
    DEFAULT_PORT = 50055
