"""The rendered Envoy bootstrap: routes from bindings, policy per route, error types included."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import descriptor_pb2

from contracts import descriptors
from gateway import auth, openapi, policy, render
from gateway.settings import Settings
from services.runtime.settings import SettingsError
from services.runtime.topology import ROOT
from tests.gateway.conftest import gateway_settings, running_gateway
from tools.protos import build_descriptor_set


@pytest.fixture(scope="module")
def shop() -> descriptors.Contracts:
    return descriptors.load(Settings().descriptor_set)


@pytest.fixture
def config(tmp_path: Path, shop: descriptors.Contracts) -> dict[str, Any]:
    settings = gateway_settings(tmp_path)
    auth.ensure_dev_key(settings)
    return render.bootstrap(settings, shop)


def manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    return dict(listener["filter_chains"][0]["filters"][0]["typed_config"])


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    return list(manager(config)["route_config"]["virtual_hosts"][0]["routes"])


def filter_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in manager(config)["http_filters"] if f["name"] == name)


@pytest.mark.parametrize(
    ("template", "matches", "misses"),
    [
        ("/v1/users", ["/v1/users"], ["/v1/users/", "/v1/users/x"]),
        ("/v1/users/{user_id}", ["/v1/users/u-1"], ["/v1/users/", "/v1/users/a/b"]),
        ("/v1/orders/{order_id}:cancel", ["/v1/orders/o-1:cancel"], ["/v1/orders/o-1"]),
        ("/v1/{name=shelves/*}/books", ["/v1/shelves/s1/books"], ["/v1/shelves/books"]),
        ("/v1/files/{path=**}", ["/v1/files/a/b/c"], ["/v2/files/a"]),
    ],
)
def test_path_regex(template: str, matches: list[str], misses: list[str]) -> None:
    pattern = re.compile(render.path_regex(template))
    assert all(pattern.match(path) for path in matches)
    assert not any(pattern.match(path) for path in misses)


def test_every_served_binding_has_a_rest_route_and_a_grpc_route(
    shop: descriptors.Contracts, config: dict[str, Any]
) -> None:
    names = {route["name"] for route in routes(config)}
    for binding in shop.bindings:
        served = binding.full_method not in policy.IN_MESH_METHODS
        assert (f"{binding.full_method}:{binding.verb}:{binding.path}" in names) is served
        assert (binding.full_method in names) is served
        assert f"405:{binding.path}" in names or not served
    clusters = {c["name"] for c in config["static_resources"]["clusters"]}
    assert clusters == {"users", "catalog", "payments", "orders", "notifications"}


def test_verb_routes_precede_their_plain_twins(config: dict[str, Any]) -> None:
    order = [route["name"] for route in routes(config)]
    watch = order.index("shop.orders.v1.OrderService.WatchOrder:get:/v1/orders/{order_id}:watch")
    get = order.index("shop.orders.v1.OrderService.GetOrder:get:/v1/orders/{order_id}")
    assert watch < get


def test_per_route_policy(config: dict[str, Any]) -> None:
    by_name = {route["name"]: route for route in routes(config)}
    public = by_name["shop.catalog.v1.CatalogService.ListProducts:get:/v1/products"]
    private = by_name["shop.orders.v1.OrderService.PlaceOrder:post:/v1/orders"]
    watch = by_name["shop.orders.v1.OrderService.WatchOrder:get:/v1/orders/{order_id}:watch"]
    jwt, limit = render.JWT, render.RATE_LIMIT
    assert public["typed_per_filter_config"][jwt]["disabled"] is True
    assert public["request_headers_to_remove"] == ["x-user-id"]
    assert private["typed_per_filter_config"][jwt]["requirement_name"] == render.REQUIREMENT
    assert private["typed_per_filter_config"][limit]["stat_prefix"] == "rate_limit_write"
    assert watch["route"]["timeout"] == "0s"
    assert private["route"]["timeout"] == render.UNARY_TIMEOUT


def test_identity_comes_only_from_the_token(config: dict[str, Any]) -> None:
    provider = filter_config(config, render.JWT)["providers"][render.PROVIDER]
    assert provider["claim_to_headers"] == [{"header_name": "x-user-id", "claim_name": "sub"}]
    assert provider["forward"] is True


def test_transcoder_knows_every_service_and_the_error_details(
    shop: descriptors.Contracts, config: dict[str, Any]
) -> None:
    transcoder = filter_config(config, render.TRANSCODER)
    assert transcoder["services"] == list(shop.services)
    assert transcoder["request_validation_options"]["reject_unknown_query_parameters"] is True
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(base64.b64decode(transcoder["proto_descriptor_bin"]))
    names = [file.name for file in files.file]
    assert "google/rpc/error_details.proto" in names
    # Dependencies precede their dependants, as Envoy builds the pool in order.
    assert names.index("google/protobuf/duration.proto") < names.index(
        "google/rpc/error_details.proto"
    )


def test_admin_binds_loopback_only(config: dict[str, Any]) -> None:
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_missing_upstream_names_its_variable(tmp_path: Path, shop: descriptors.Contracts) -> None:
    settings = gateway_settings(tmp_path)
    auth.ensure_dev_key(settings)
    partial = Settings(
        jwks_file=settings.jwks_file,
        upstreams={k: v for k, v in settings.upstreams.items() if k != "payments"},
    )
    with pytest.raises(SettingsError, match="PAYMENTS_ADDR"):
        render.bootstrap(partial, shop)


NEW_RPC = """
  // CountProducts says how many products the catalog holds.
  rpc CountProducts(CountProductsRequest) returns (CountProductsResponse) {
    option (google.api.http) = {get: "/v1/products:count"};
  }
"""
NEW_MESSAGES = """
// CountProductsRequest asks for the catalog's size.
message CountProductsRequest {}

// CountProductsResponse is the catalog's size.
message CountProductsResponse {
  // Number of products.
  int32 count = 1;
}
"""


def scratch_descriptor_set(workspace: Path) -> Path:
    """A copy of the contracts with one more bound RPC, built by buf like `make proto`."""
    shutil.copytree(ROOT / "proto", workspace / "proto")
    shutil.copy(ROOT / "buf.yaml", workspace / "buf.yaml")
    catalog = workspace / "proto" / "shop" / "catalog" / "v1" / "catalog.proto"
    text = catalog.read_text()
    anchor = "service CatalogService {\n"
    catalog.write_text(text.replace(anchor, anchor + NEW_RPC, 1) + NEW_MESSAGES)
    return build_descriptor_set(workspace / "build" / "shop.binpb", workspace, "proto")


@pytest.mark.system
def test_a_new_bound_rpc_is_reachable_with_no_other_change(tmp_path: Path) -> None:
    scratch = descriptors.load(scratch_descriptor_set(tmp_path / "contracts"))
    paths = openapi.document(scratch)["paths"]
    assert paths["/v1/products:count"]["get"]["operationId"].endswith("CountProducts")

    def answers(descriptor_set: Path, workdir: Path) -> tuple[int, int]:
        workdir.mkdir()
        with running_gateway(workdir, descriptor_set=descriptor_set) as (envoy, settings):
            url = f"http://{envoy.address}/v1/products:count"
            token = auth.mint_token(settings, "u-1")
            anonymous = httpx.get(url).status_code
            return anonymous, httpx.get(
                url, headers={"authorization": f"Bearer {token}"}
            ).status_code

    before = answers(Settings().descriptor_set, tmp_path / "before")
    after = answers(tmp_path / "contracts" / "build" / "shop.binpb", tmp_path / "after")
    assert before == (404, 404)
    # Private by default, then on to the (absent) catalog: routed, not unknown.
    assert after == (401, 503)


@pytest.mark.system
def test_envoy_validates_the_rendered_config(tmp_path: Path, shop: descriptors.Contracts) -> None:
    settings = gateway_settings(tmp_path)
    auth.ensure_dev_key(settings)
    path = render.write(settings, shop, tmp_path / "envoy.json")
    result = subprocess.run(
        [
            settings.envoy_bin,
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "--log-level",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
