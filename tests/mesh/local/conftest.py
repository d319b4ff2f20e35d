"""A running local mesh (apps, sidecars, gateway) and clients that speak to it as its workloads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from gateway import auth
from gateway.settings import Settings as GatewaySettings
from mesh.check import Settings
from mesh.local.ca import Identity
from mesh.local.supervisor import LocalMesh

SCENARIOS = Settings().mesh_dir / "scenarios"


def gateway_env(workdir: Path) -> dict[str, str]:
    return {
        "JWKS_FILE": str(workdir / "gateway" / "jwks.json"),
        "SIGNING_KEY_FILE": str(workdir / "gateway" / "signing-key.pem"),
        # The tests place thousands of orders; the edge's rate limits are not under test here.
        "RATE_LIMIT_PUBLIC": "1000000",
        "RATE_LIMIT_READ": "1000000",
        "RATE_LIMIT_WRITE": "1000000",
    }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    workdir = tmp_path_factory.mktemp("mesh")
    with LocalMesh(workdir, service_env={"gateway": gateway_env(workdir)}) as running:
        yield running


@dataclass
class Shop:
    """A REST client of the gateway, signed in as a fresh customer."""

    client: httpx.Client
    user_id: str
    token: str

    def place_order(self, product: str = "sku-mug", **headers: str) -> httpx.Response:
        return self.client.post(
            "/v1/orders",
            headers={"authorization": f"Bearer {self.token}", **headers},
            json={
                "requestId": str(uuid.uuid4()),
                "userId": self.user_id,
                "paymentToken": "tok_visa",
                "items": [{"productId": product, "quantity": 1}],
            },
        )

    def get(self, path: str) -> dict[str, Any]:
        response = self.client.get(path, headers={"authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def shop(mesh: LocalMesh) -> Iterator[Shop]:
    settings = GatewaySettings.from_env(gateway_env(mesh.workdir))
    with httpx.Client(base_url=f"http://{mesh.address('gateway')}", timeout=30) as client:
        email = f"{uuid.uuid4().hex[:8]}@shop.example"
        created = client.post("/v1/users", json={"email": email, "displayName": "Mesh Tester"})
        assert created.status_code == 200, created.text
        user_id = created.json()["user"]["userId"]
        yield Shop(client, user_id, auth.mint_token(settings, user_id))


def secure_channel(identity: Identity, target: str, server: str) -> grpc.Channel:
    """A channel that presents `identity` and expects `server`'s sidecar (by its DNS SAN)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=identity.ca.read_bytes(),
        private_key=identity.key.read_bytes(),
        certificate_chain=identity.cert.read_bytes(),
    )
    return grpc.secure_channel(
        target,
        credentials,
        options=[("grpc.ssl_target_name_override", f"{server}.default.svc.cluster.local")],
    )
