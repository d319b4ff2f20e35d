"""Gateway settings: defaults, environment parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from gateway.settings import RateLimit, Settings
from services.runtime.settings import SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.admin_port) == ("127.0.0.1", 8080, 9901)
    assert settings.upstream("orders") == "127.0.0.1:50054"
    assert settings.rate_limits["write"] == RateLimit(10, 1)
    assert settings.envoy_bin.endswith("envoy")


def test_environment_overrides() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_PORT": "0",
            "ORDERS_ADDR": "orders.shop.svc:50054",
            "REVIEWS_ADDR": "127.0.0.1:6000",
            "CORS_ORIGINS": "https://a.example, https://b.example",
            "RATE_LIMIT_PUBLIC": "30/10",
            "ENVOY_BIN": "/opt/envoy",
        }
    )
    assert settings.port == 0
    assert settings.upstream("orders") == "orders.shop.svc:50054"
    assert settings.upstream("reviews") == "127.0.0.1:6000"
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.rate_limits["public"] == RateLimit(30, 10)
    assert settings.envoy_bin == "/opt/envoy"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_PORT", "http"),
        ("ADMIN_PORT", "70000"),
        ("USERS_ADDR", "localhost"),
        ("RATE_LIMIT_WRITE", "0"),
        ("RATE_LIMIT_READ", "5/s"),
        ("ENVOY_CONCURRENCY", "two"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_unknown_context_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="SHIPPING_ADDR"):
        Settings.from_env({}).upstream("shipping")
