"""Settings of the orders service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Self

from services.orders.domain import SagaOptions, Step
from services.runtime.kafka import events_broker
from services.runtime.settings import Env, ServiceSettings, SettingsError


@dataclass(frozen=True)
class Settings(ServiceSettings):
    NAME = "orders"

    users_addr: str = ""
    catalog_addr: str = ""
    payments_addr: str = ""
    saga: SagaOptions = field(default_factory=SagaOptions)
    recovery_interval_seconds: float = 5.0
    events_broker: str = ""  # Kafka bootstrap servers the outbox is relayed to; "" for none

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        env = Env(environ)
        hold = env.string("SAGA_HOLD_AFTER", "")
        if hold and hold not in (Step.RESERVING.value, Step.CHARGING.value):
            raise SettingsError(f"SAGA_HOLD_AFTER must be RESERVING or CHARGING, got {hold!r}")
        return replace(
            super().from_env(environ),
            users_addr=env.string("USERS_ADDR"),
            catalog_addr=env.string("CATALOG_ADDR"),
            payments_addr=env.string("PAYMENTS_ADDR"),
            saga=SagaOptions(
                lease_seconds=env.number("SAGA_LEASE_SECONDS", 30.0),
                hold_after=Step[hold] if hold else None,
            ),
            recovery_interval_seconds=env.number("SAGA_RECOVERY_SECONDS", 5.0),
            events_broker=events_broker(env),
        )
