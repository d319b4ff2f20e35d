"""Unknown JSON body fields are refused before the transcoder (gateway/body_fields.lua).

The walker is tested through a real Envoy: first alone, on hand-made tables that cover every kind
of field (maps, any JSON, repeated and nested messages) behind a route that answers 200 when a
body passes; then in the rendered gateway, against the shop's own messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import descriptors
from gateway import auth, body_fields, render
from gateway.envoy import Envoy
from gateway.settings import Settings
from mesh.local.stack import LocalStack
from tests.gateway.conftest import gateway_settings, running_gateway

pytestmark = pytest.mark.system
JSON = dict[str, Any]
MESSAGES: body_fields.Messages = {
    "t.Order": {
        "orderId": ("order_id", "s", None),
        "order_id": ("order_id", "s", None),
        "items": ("items", "m", "t.Item"),
        "labels": ("labels", "k", None),
        "extras": ("extras", "k", "t.Item"),
        "metadata": ("metadata", "a", None),
        "note": ("note", "m", "t.Note"),
    },
    "t.Item": {
        "sku": ("sku", "s", None),
        "count": ("count", "s", None),
        "note": ("note", "m", "t.Note"),
    },
    "t.Note": {"text": ("text", "s", None), "reply": ("reply", "m", "t.Note")},
}
ROOTS: body_fields.Roots = {
    "order": ("t.Order", {}),
    "cancel": ("t.Order", {"orderId": "order_id", "order_id": "order_id"}),
}


def _walker_config(messages: body_fields.Messages, roots: body_fields.Roots) -> JSON:
    """A listener with only the Lua filter and a route per root that answers 200 `passed`."""

    def route(name: str) -> JSON:
        return {
            "name": name,
            "match": {"path": f"/{name}"},
            "direct_response": {"status": 200, "body": {"inline_string": "passed"}},
            "typed_per_filter_config": {
                body_fields.LUA: {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute",
                    "name": body_fields.SOURCE,
                    "filter_context": {"root": name},
                }
            },
        }

    lua = body_fields.lua_source(messages, roots)
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "walker",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "walker",
                    "domains": ["*"],
                    "routes": [
                        *(route(name) for name in roots),
                        {
                            "name": "no-check",
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "passed"}},
                        },
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": body_fields.LUA,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "source_codes": {body_fields.SOURCE: {"inline_string": lua}},
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "gateway",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


@contextmanager
def _serving(
    workdir: Path, messages: body_fields.Messages, roots: body_fields.Roots
) -> Iterator[httpx.Client]:
    workdir.mkdir(exist_ok=True)
    settings = gateway_settings(workdir)
    config = workdir / "envoy.json"
    config.write_text(json.dumps(_walker_config(messages, roots)))
    with Envoy(settings, config) as envoy, httpx.Client(base_url=f"http://{envoy.address}") as c:
        yield c


@pytest.fixture(scope="module")
def walker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with _serving(tmp_path_factory.mktemp("walker"), MESSAGES, ROOTS) as client:
        yield client


def _violations(response: httpx.Response) -> list[str]:
    assert response.status_code == 400, response.text
    status = response.json()
    (detail,) = status["details"]
    assert status["code"] == 3
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    fields = [v["field"] for v in detail["fieldViolations"]]
    assert status["message"] == "invalid request: " + ", ".join(fields)
    return fields


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        " { } ",
        '{"orderId": "o-1", "order_id": "o-2"}',  # JSON and proto names alike
        '{"items": [{"sku": "a", "count": 2}, {"sku": "b", "note": {"text": "x"}}]}',
        '{"items": [], "note": null, "items": null}',
        '{"labels": {"anything": "goes", "bogus": 1}}',  # a map takes any key
        '{"extras": {"k": {"sku": "a"}}}',
        '{"metadata": {"deep": {"er": [1, {"x": null}]}, "@type": "t"}}',  # any JSON
        '{"note": {"reply": {"reply": {"text": "three deep"}}}}',
        '{"orderId": "with \\"quotes\\", {braces} and [brackets]: \\\\"}',
        '{"\\u006frderId": "an escaped known key"}',
        '{"orderId": "\\ud83d\\ude00 \\u00e9 \\/ \\b\\f\\n\\r\\t"}',
        '{"orderId": 1e-7, "items": [{"count": -12.5E+3}], "metadata": [true, false, null]}',
        '{"orderId":"\x7f"}',  # DEL may appear raw in a JSON string
        "",
        # As lenient as the transcoder's parser: unquoted keys, single quotes, any C whitespace,
        # raw control characters in strings, unknown escapes, trailing commas.
        '{orderId: "x", items: [{sku: "a"}]}',
        "{'orderId': 'it\\'s', \"note\": {'text': '\"'}}",
        '{\f"orderId":\v"x"\r\n}',
        '{"orderId": "x", "items": [{"sku": "a",},],}',
        '{"orderId": "raw\x01control\ttab"}',
        '{"orderId": "\\q\\x"}',
        '{"orderId": "\\ud800 lone", "note": {"text": "\\udc00"}}',
    ],
)
def test_known_fields_pass(walker: httpx.Client, body: str) -> None:
    response = walker.post("/order", content=body)
    assert (response.status_code, response.text) == (200, "passed")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ('{"orderId": "o-1", "bogus": 1}', ["bogus"]),
        ('{"bo\\u0067us": {"nested": [1, 2, {"deep": "}"}]}}', ["bogus"]),
        ('{"items": [{"sku": "a"}, {"sku": "b", "colour": "red"}]}', ["items[1].colour"]),
        ('{"note": {"reply": {"reply": {"txt": "x"}}}}', ["note.reply.reply.txt"]),
        ('{"extras": {"k": {"skew": 1}}}', ['extras["k"].skew']),
        ('{"items": [{"note": {"texts": []}}]}', ["items[0].note.texts"]),
        ('{"OrderId": 1, "orderid": 2}', ["OrderId", "orderid"]),  # names are case-sensitive
        ('{"a": 1, "items": [{"b": 2}], "c": 3}', ["a", "items[0].b", "c"]),
        ('{"\\ud83d\\ude00": 1}', ["\U0001f600"]),
        ('{"quote\\"d": 1}', ['quote"d']),
        ("{bogus: 1, $x: 2, _y: 3}", ["bogus", "$x", "_y"]),
        ("{'bogus': 'it\\'s'}", ["bogus"]),
        ('{"bogus": 1,}', ["bogus"]),
        ('{\f"bogus"\v:\f1}', ["bogus"]),
        ('{"bogus": "raw\ncontrol"}', ["bogus"]),
        ('{"order\\Id": 1}', ["order\\Id"]),  # an unknown escape matches no field
        ('{"\\ud800rderId": 1}', ["\ufffdrderId"]),
        (b'{"\xff": 1}', ["\ufffd"]),  # not UTF-8: named all the same
        (b'{"\xed\xa0\x80": 1}', ["\ufffd\ufffd\ufffd"]),
    ],
)
def test_unknown_fields_are_named(
    walker: httpx.Client, body: str | bytes, fields: list[str]
) -> None:
    response = walker.post("/order", content=body)
    assert _violations(response) == fields
    descriptions = [v["description"] for v in response.json()["details"][0]["fieldViolations"]]
    assert all("has no such field" in d for d in descriptions), descriptions


def test_at_most_twenty_violations(walker: httpx.Client) -> None:
    body = json.dumps({f"bogus{n}": n for n in range(50)})
    assert _violations(walker.post("/order", content=body)) == [f"bogus{n}" for n in range(20)]


def test_path_fields_are_not_body_fields(walker: httpx.Client) -> None:
    response = walker.post("/cancel", content='{"orderId": "o-1", "items": []}')
    assert _violations(response) == ["orderId"]
    assert "URL path" in response.json()["details"][0]["fieldViolations"][0]["description"]


@pytest.mark.parametrize(
    "body",
    [
        '{"bogus": 1',  # truncated
        '{"bogus" 1}',
        '{"bogus": 1,,}',
        '{,"bogus": 1}',
        "{1bogus: 1}",
        '{"bogus": 1} trailing',
        '{"bogus": "\\u00"}',
        '{"bogus": 1}}',
        '[{"bogus": 1}]',  # not an object
        '"bogus"',
    ],
)
def test_bodies_it_cannot_read_are_left_to_the_transcoder(walker: httpx.Client, body: str) -> None:
    response = walker.post("/order", content=body)
    assert (response.status_code, response.text) == (200, "passed")


def test_deep_nesting_in_a_skipped_value(walker: httpx.Client) -> None:
    deep = "[" * 20000 + "]" * 20000
    response = walker.post("/order", content=f'{{"metadata": {deep}, "bogus": {deep}}}')
    assert _violations(response) == ["bogus"]


def test_routes_without_the_check_run_nothing(walker: httpx.Client) -> None:
    response = walker.post("/elsewhere", content='{"bogus": 1}')
    assert (response.status_code, response.text) == (200, "passed")


# The rendered gateway, its upstreams down: 503 means a body got past the check and the
# transcoder, on its way to the service.


def _post(envoy: Envoy, settings: Settings, path: str, body: JSON) -> httpx.Response:
    token = auth.mint_token(settings, "usr_fuzz")
    return httpx.post(
        f"http://{envoy.address}{path}", json=body, headers={"authorization": f"Bearer {token}"}
    )


def test_unknown_order_field_is_refused(gateway: tuple[Envoy, Settings]) -> None:
    response = _post(*gateway, "/v1/orders", {"userId": "usr_fuzz", "bogus": 1})
    assert response.headers["content-type"] == "application/json"
    assert _violations(response) == ["bogus"]
    (violation,) = response.json()["details"][0]["fieldViolations"]
    assert violation["description"] == (
        "unknown field `bogus`: shop.orders.v1.PlaceOrderRequest has no such field"
    )


def test_nested_unknown_field_is_named_by_its_path(gateway: tuple[Envoy, Settings]) -> None:
    items = [{"productId": "sku-espresso", "quantity": 1}, {"productId": "x", "colour": "red"}]
    response = _post(*gateway, "/v1/orders", {"userId": "usr_fuzz", "items": items})
    assert _violations(response) == ["items[1].colour"]
    address = {"city": "Turin", "zip": "10100"}
    response = _post(*gateway, "/v2/orders", {"userId": "usr_fuzz", "shippingAddress": address})
    assert _violations(response) == ["shipping_address.zip"]


def test_path_field_in_a_cancel_body_is_refused(gateway: tuple[Envoy, Settings]) -> None:
    response = _post(*gateway, "/v1/orders/ord_1:cancel", {"orderId": "ord_1"})
    assert _violations(response) == ["orderId"]


# JSON the transcoder reads although it is not strict JSON: an unknown field in it must not get
# through (503 would mean it reached the service, the field dropped).
LENIENT = [
    '{userId: "usr_fuzz"%s}',
    "{'userId': 'usr_fuzz'%s}",
    '{\f"userId":\v"usr_fuzz"%s\r}',
    '{"userId": "usr_fuzz"%s,}',
    '{"userId": "raw\x01control\\x"%s}',
    '{"items": [{"productId": "p",},]%s}',
]


@pytest.mark.parametrize("form", LENIENT)
def test_lenient_json_cannot_smuggle_a_field(gateway: tuple[Envoy, Settings], form: str) -> None:
    envoy, settings = gateway
    headers = {
        "authorization": f"Bearer {auth.mint_token(settings, 'usr_fuzz')}",
        "content-type": "application/json",
    }
    url = f"http://{envoy.address}/v1/orders"
    assert httpx.post(url, content=form % "", headers=headers).status_code == 503
    smuggled = httpx.post(url, content=form % ", bogus: 1", headers=headers)
    assert _violations(smuggled) == ["bogus"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/orders", {"userId": "usr_fuzz", "items": [{"productId": "p", "quantity": 1}]}),
        ("/v1/orders", {"user_id": "usr_fuzz", "items": [{"product_id": "p", "quantity": 1}]}),
        ("/v2/orders", {"shipping_address": {"postal_code": "10100"}, "items": []}),
        ("/v1/orders/ord_1:cancel", {"reason": "changed my mind"}),
        ("/v1/orders/ord_1:cancel", {}),
    ],
)
def test_known_fields_reach_the_service(
    gateway: tuple[Envoy, Settings], path: str, body: JSON
) -> None:
    assert _post(*gateway, path, body).status_code == 503


def test_rendered_tables_cover_every_body_route(tmp_path: Path) -> None:
    shop = descriptors.load(Settings().descriptor_set)
    settings = gateway_settings(tmp_path)
    auth.ensure_dev_key(settings)
    config = render.bootstrap(settings, shop)
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in manager["http_filters"]]
    assert names.index(body_fields.LUA) == names.index(render.TRANSCODER) - 1
    checked = {
        route["name"]: route["typed_per_filter_config"][body_fields.LUA]["filter_context"]["root"]
        for route in manager["route_config"]["virtual_hosts"][0]["routes"]
        if body_fields.LUA in route.get("typed_per_filter_config", {})
    }
    assert checked == {name: name for name in checked}
    assert sorted(n.split(":", 1)[1] for n in checked) == [
        "post:/v1/orders",
        "post:/v1/orders/{order_id}:cancel",
        "post:/v1/users",
        "post:/v2/orders",
        "post:/v2/orders/{order_id}:cancel",
    ]
    lua = manager["http_filters"][names.index(body_fields.LUA)]["typed_config"]
    script = lua["source_codes"][body_fields.SOURCE]["inline_string"]
    assert all(f'["{name}"] = {{message = ' in script for name in checked)


def test_proto_names_are_accepted_by_the_real_service(tmp_path: Path) -> None:
    with LocalStack(tmp_path / "stack", services=["users"]) as stack:
        upstreams = {"USERS_ADDR": stack.address("users")}
        with running_gateway(tmp_path / "gateway", upstreams) as (envoy, _):
            email = f"{uuid.uuid4().hex[:8]}@proto.example"
            created = httpx.post(
                f"http://{envoy.address}/v1/users",
                json={"email": email, "display_name": "Proto Name"},
            )
            assert created.status_code == 200, created.text
            assert created.json()["user"]["displayName"] == "Proto Name"
            refused = httpx.post(
                f"http://{envoy.address}/v1/users",
                json={"email": f"x{email}", "displayName": "X", "role": "admin"},
            )
            assert _violations(refused) == ["role"]


# Tables rendered from descriptors with every kind of field the shop's bodies do not have yet.
TEST_PROTO = """
syntax = "proto3";
package shop.test.v1;
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Item { string sku = 1; }
message Request {
  string request_id = 1;
  map<string, Item> items_by_sku = 2;
  map<string, string> labels = 3;
  google.protobuf.Struct extra = 4;
  google.protobuf.Timestamp when = 5;
  google.protobuf.Int32Value limit = 6;
  repeated Item items = 7;
  Request parent = 8;
  string renamed = 9 [json_name = "otherName"];
}
"""


def _test_contracts(tmp_path: Path) -> descriptors.Contracts:
    """TEST_PROTO compiled by grpc_tools' protoc (as `make proto` runs it), imports included."""
    (tmp_path / "test.proto").write_text(TEST_PROTO)
    output = tmp_path / "test.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            "--include_imports",
            f"--descriptor_set_out={output}",
            "test.proto",
        ],
        check=True,
    )
    return descriptors.load(output)


def test_tables_from_descriptors(tmp_path: Path) -> None:
    shop = _test_contracts(tmp_path)
    binding = descriptors.Binding(
        service="shop.test.v1.TestService",
        method="Create",
        context="test",
        verb="post",
        path="/v1/tests/{request_id}",
        body="*",
        input_type="shop.test.v1.Request",
        output_type="shop.test.v1.Item",
        server_streaming=False,
        comment="",
    )
    messages, roots = body_fields.tables(shop, {"create": binding})
    assert roots == {
        "create": ("shop.test.v1.Request", {"requestId": "request_id", "request_id": "request_id"})
    }
    assert set(messages) == {"shop.test.v1.Request", "shop.test.v1.Item"}
    request = messages["shop.test.v1.Request"]
    assert request["itemsBySku"] == ("items_by_sku", "k", "shop.test.v1.Item")
    assert request["labels"] == ("labels", "k", None)
    assert request["extra"] == ("extra", "a", None)
    assert request["when"] == ("when", "s", None)  # a Timestamp is a JSON string
    assert request["limit"] == ("limit", "s", None)
    assert request["items"] == ("items", "m", "shop.test.v1.Item")
    assert request["parent"] == ("parent", "m", "shop.test.v1.Request")
    assert request["otherName"] == request["renamed"] == ("renamed", "s", None)
    with _serving(tmp_path / "envoy", messages, roots) as client:
        passes = {
            "itemsBySku": {"a": {"sku": "a"}},
            "labels": {"any": "key"},
            "extra": {"free": {"form": [1]}},
            "when": "2026-01-01T00:00:00Z",
            "limit": 3,
            "parent": {"items": [{"sku": "b"}], "parent": {"otherName": "x"}},
            "renamed": "y",
        }
        assert client.post("/create", json=passes).text == "passed"
        refused = {
            "itemsBySku": {"a": {"sku": "a", "colour": 1}},
            "parent": {"parent": {"items": [{}, {"size": 2}]}},
            "requestId": "given by the path",
        }
        assert _violations(client.post("/create", json=refused)) == [
            'items_by_sku["a"].colour',
            "parent.parent.items[1].size",
            "requestId",
        ]
