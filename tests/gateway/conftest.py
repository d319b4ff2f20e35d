"""Fixtures for gateway tests: settings in a temp dir, and a real Envoy rendered from them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from contracts import descriptors
from gateway import auth, render
from gateway.envoy import Envoy
from gateway.settings import Settings, default_upstreams
from mesh.local.stack import free_port


def gateway_settings(workdir: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Settings on free ports with a throwaway key; upstreams where nothing listens."""
    nobody = {f"{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in default_upstreams()}
    return Settings.from_env(
        {
            "GATEWAY_PORT": "0",
            "ADMIN_PORT": "0",
            "JWKS_FILE": str(workdir / "jwks.json"),
            "SIGNING_KEY_FILE": str(workdir / "signing-key.pem"),
            "RATE_LIMIT_PUBLIC": "1000",
            "RATE_LIMIT_READ": "1000",
            "RATE_LIMIT_WRITE": "1000",
            **nobody,
            **(env or {}),
        }
    )


@contextmanager
def running_gateway(
    workdir: Path, env: Mapping[str, str] | None = None, descriptor_set: Path | None = None
) -> Iterator[tuple[Envoy, Settings]]:
    settings = gateway_settings(workdir, env)
    auth.ensure_dev_key(settings)
    shop = descriptors.load(descriptor_set or settings.descriptor_set)
    config = render.write(settings, shop, workdir / "envoy.json")
    with Envoy(settings, config) as envoy:
        yield envoy, settings


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Envoy, Settings]]:
    """One Envoy per module, its upstreams down."""
    with running_gateway(tmp_path_factory.mktemp("gateway")) as running:
        yield running
