"""The gateway's own behaviour against a real Envoy whose upstreams are all down."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import jwt
import pytest

from contracts import descriptors
from gateway import auth, openapi
from gateway.envoy import Envoy
from gateway.settings import Settings
from services.runtime.topology import ROOT
from tests.gateway.conftest import running_gateway

pytestmark = pytest.mark.system
ALLOWED_ORIGIN = "http://localhost:3000"


def get(envoy: Envoy, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(f"http://{envoy.address}{path}", **kwargs)  # type: ignore[arg-type]


def assert_status_body(response: httpx.Response, code: int) -> dict[str, object]:
    """Every error is a google.rpc.Status JSON with the gRPC code for the HTTP status."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and isinstance(body["details"], list)
    return dict(body)


def test_healthz(gateway: tuple[Envoy, Settings]) -> None:
    response = get(gateway[0], "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "SERVING"}


def test_openapi_document_is_served(gateway: tuple[Envoy, Settings]) -> None:
    envoy, settings = gateway
    response = get(envoy, "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == openapi.document(descriptors.load(settings.descriptor_set))


@pytest.mark.parametrize(
    ("path", "status", "code", "words"),
    [
        ("/v1/nope", 404, 5, "/v1/nope"),
        ("/v1/products/x/extra", 404, 5, "/v1/products/x/extra"),
        ("/v1/products?colour=red", 400, 3, "colour"),
        ("/v1/products?pageSize=abc", 400, 3, "page_size"),
        ("/v1/users/u-1", 401, 16, "Jwt is missing"),
        ("/v1/products", 503, 14, "upstream"),
        # Rejected before routing, where Envoy itself gives no body: the gateway explains.
        ("/v1/products/a%2Fb", 400, 3, "encoded slash"),
        ("/v1/products/a%5Cb", 400, 3, "backslash"),
        ("/v1/products/a%00b", 400, 3, "NUL"),
    ],
)
def test_errors_are_status_json(
    gateway: tuple[Envoy, Settings], path: str, status: int, code: int, words: str
) -> None:
    response = get(gateway[0], path)
    assert response.status_code == status, response.text
    assert words in str(assert_status_body(response, code)["message"])


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/products", "GET"),
        ("PUT", "/v1/products/p-1", "GET"),
        ("GET", "/v1/orders/o-1:cancel", "POST"),  # not taken for GET /v1/orders/{order_id}
        ("POST", "/v1/orders/o-1:watch", "GET"),
        ("PATCH", "/v1/orders", "POST"),
        ("TRACE", "/healthz", "GET"),
        ("DELETE", "/openapi.json", "GET"),
        # ListUsers is in-mesh only: the gateway serves POST /v1/users and nothing else there.
        ("GET", "/v1/users", "POST"),
    ],
)
def test_undeclared_methods_get_405_with_allow(
    gateway: tuple[Envoy, Settings], method: str, path: str, allow: str
) -> None:
    """No token needed to learn a method is not allowed (RFC 9110; schemathesis ST204)."""
    response = httpx.request(method, f"http://{gateway[0].address}{path}")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    message = str(assert_status_body(response, 12)["message"])
    assert method in message and allow in message


def test_query_method_gets_405_on_known_paths_and_is_explained_elsewhere(
    gateway: tuple[Envoy, Settings],
) -> None:
    """Envoy refuses a QUERY without a content-type before routing; known paths still say 405."""
    address = gateway[0].address
    for path, allow in (("/v1/products", "GET"), ("/healthz", "GET"), ("/v1/orders/o-1", "GET")):
        bare = httpx.request("QUERY", f"http://{address}{path}")
        assert (bare.status_code, bare.headers.get("allow")) == (405, allow), path
        assert "QUERY not allowed: " in str(assert_status_body(bare, 12)["message"])
    unknown = httpx.request("QUERY", f"http://{address}/v1/nowhere")
    assert unknown.status_code == 400
    assert "QUERY" in str(assert_status_body(unknown, 3)["message"])
    typed = httpx.request(
        "QUERY",
        f"http://{address}/v1/products",
        headers={"content-type": "application/json"},
        content=b"{}",
    )
    assert typed.status_code == 405 and typed.headers["allow"] == "GET"


def test_bad_tokens_are_rejected(gateway: tuple[Envoy, Settings], tmp_path: Path) -> None:
    envoy, settings = gateway
    good = auth.mint_token(settings, "u-1")
    other_key = Settings(jwks_file=tmp_path / "jwks.json", signing_key_file=tmp_path / "key.pem")
    cases = {
        "expired": auth.mint_token(settings, "u-1", ttl_seconds=-600),  # past the 60 s skew
        "foreign key": auth.mint_token(other_key, "u-1"),
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
    }
    for name, token in cases.items():
        response = get(envoy, "/v1/users/u-1", headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert_status_body(response, 16)
    # The good token passes the edge and meets the (absent) service.
    response = get(envoy, "/v1/users/u-1", headers={"authorization": f"Bearer {good}"})
    assert response.status_code == 503


@pytest.mark.parametrize("subject", [None, ""])
def test_a_token_naming_no_user_is_refused(
    gateway: tuple[Envoy, Settings], subject: str | None
) -> None:
    """Without `sub` no caller header would reach the services, which would then take the call
    for a trusted in-mesh one and skip every ownership check."""
    envoy, settings = gateway
    claims = jwt.decode(auth.mint_token(settings, "u-1"), options={"verify_signature": False})
    claims.pop("sub")
    if subject is not None:
        claims["sub"] = subject
    token = jwt.encode(
        claims,
        settings.signing_key_file.read_bytes(),
        algorithm="RS256",
        headers={"kid": auth.KEY_ID},
    )
    response = get(envoy, "/v1/users/u-1", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "sub" in str(assert_status_body(response, 16)["message"])


def test_grpc_response_headers_do_not_leak(gateway: tuple[Envoy, Settings]) -> None:
    response = get(gateway[0], "/v1/products?colour=red")
    assert not [name for name in response.headers if name.startswith("grpc-")]


def test_cors_preflight_allows_only_listed_origins(gateway: tuple[Envoy, Settings]) -> None:
    envoy, _ = gateway
    preflight = {"access-control-request-method": "POST"}
    allowed = httpx.options(
        f"http://{envoy.address}/v1/orders", headers={"origin": ALLOWED_ORIGIN, **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"]
    denied = httpx.options(
        f"http://{envoy.address}/v1/orders",
        headers={"origin": "https://evil.example", **preflight},
    )
    assert "access-control-allow-origin" not in denied.headers


def test_native_grpc_reaches_only_bound_methods(gateway: tuple[Envoy, Settings]) -> None:
    envoy, settings = gateway

    def grpcurl(method: str) -> str:
        result = subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "grpcurl"),
                "-plaintext",
                "-protoset",
                str(settings.descriptor_set),
                "-d",
                "{}",
                envoy.address,
                method,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout + result.stderr

    # Bound and public: passes the edge, then finds the service down.
    assert "Unavailable" in grpcurl("shop.catalog.v1.CatalogService/ListProducts")
    # Bound but private: the same token rule as REST.
    assert "Unauthenticated" in grpcurl("shop.users.v1.UserService/GetUser")
    # Bound but in-mesh only (gateway/policy.py): not routed at all.
    assert "Unimplemented" in grpcurl("shop.users.v1.UserService/ListUsers")
    assert "Unimplemented" in grpcurl("shop.catalog.v1.CatalogService/ReserveStock")


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    with running_gateway(tmp_path, {"RATE_LIMIT_PUBLIC": "3/60"}) as (envoy, _):
        statuses = [get(envoy, "/v1/products").status_code for _ in range(5)]
        assert statuses == [503, 503, 503, 429, 429]
        limited = get(envoy, "/v1/products")
        assert limited.headers["retry-after"] == "60"
        assert_status_body(limited, 8)
        # Other groups keep their own buckets.
        assert get(envoy, "/v1/users/u-1").status_code == 401
