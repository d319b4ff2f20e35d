"""Settings of the payments service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Self

from services.runtime.kafka import events_broker
from services.runtime.settings import Env, ServiceSettings


@dataclass(frozen=True)
class Settings(ServiceSettings):
    NAME = "payments"

    events_broker: str = ""  # Kafka bootstrap servers the outbox is relayed to; "" for none

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        return replace(super().from_env(environ), events_broker=events_broker(Env(environ)))
