"""Settings of the notifications service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Self

from services.runtime.kafka import events_broker
from services.runtime.settings import Env, ServiceSettings


@dataclass(frozen=True)
class Settings(ServiceSettings):
    NAME = "notifications"

    # The producers whose event streams feed the notifications (unused with a broker).
    orders_addr: str = ""
    payments_addr: str = ""
    retry_seconds: float = 0.5
    events_broker: str = ""  # Kafka bootstrap servers to consume from instead; "" for none

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        env = Env(environ)
        broker = events_broker(env)
        producer = "" if broker else None  # the streams' addresses are required only without one
        return replace(
            super().from_env(environ),
            orders_addr=env.string("ORDERS_ADDR", producer),
            payments_addr=env.string("PAYMENTS_ADDR", producer),
            retry_seconds=env.number("EVENTS_RETRY_SECONDS", 0.5),
            events_broker=broker,
        )
