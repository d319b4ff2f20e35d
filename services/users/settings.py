"""Settings of the users service, read once from the environment."""

from __future__ import annotations

from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    NAME = "users"
