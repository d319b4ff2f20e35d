"""The OpenAPI document: valid 3.1, complete, and faithful to the proto3 JSON mapping."""

from __future__ import annotations

import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from contracts import descriptors
from gateway import openapi, policy
from gateway.settings import Settings


@pytest.fixture(scope="module")
def shop() -> descriptors.Contracts:
    return descriptors.load(Settings().descriptor_set)


@pytest.fixture(scope="module")
def document(shop: descriptors.Contracts) -> dict[str, Any]:
    return openapi.document(shop)


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(document["components"]["schemas"][name])


def test_document_is_valid_openapi_31(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_every_binding_is_an_operation(
    shop: descriptors.Contracts, document: dict[str, Any]
) -> None:
    operations = {
        (verb, path): operation["operationId"]
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }
    missing = [
        b.full_method
        for b in policy.served(shop.bindings)
        if operations.get((b.verb, b.path)) != b.full_method
    ]
    assert missing == []
    # In-mesh methods are not documented: the gateway does not serve them.
    assert not set(policy.IN_MESH_METHODS) & set(operations.values())
    # Both order versions, and every shop service.
    assert ("post", "/v1/orders") in operations and ("post", "/v2/orders") in operations
    # (shop.events.v1 is service-to-service only and has no bindings.)
    assert {b.context for b in shop.bindings} == {
        "users",
        "catalog",
        "payments",
        "orders",
        "notifications",
    }


def test_parameters_come_from_the_binding(document: dict[str, Any]) -> None:
    get_order = document["paths"]["/v1/orders/{order_id}"]["get"]
    assert [(p["name"], p["in"], p["required"]) for p in get_order["parameters"]] == [
        ("order_id", "path", True)
    ]
    assert get_order["parameters"][0]["description"] == "Identifier of the order."
    listing = document["paths"]["/v1/users/{user_id}/orders"]["get"]
    assert [(p["name"], p["in"]) for p in listing["parameters"]] == [
        ("user_id", "path"),
        ("pageSize", "query"),
        ("pageToken", "query"),
    ]
    place = document["paths"]["/v1/orders"]["post"]
    assert "parameters" not in place
    body = place["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["requestId", "userId", "items", "paymentToken"]
    cancel = document["paths"]["/v1/orders/{order_id}:cancel"]["post"]
    cancel_body = cancel["requestBody"]["content"]["application/json"]["schema"]
    assert set(cancel_body["properties"]) == {"reason"}  # order_id is in the path


def test_schemas_follow_the_proto3_json_mapping(document: dict[str, Any]) -> None:
    order = schema(document, "shop.orders.v1.Order")
    fields = order["properties"]
    assert fields["totalCents"]["type"] == "string"  # int64
    assert fields["totalCents"]["format"] == "int64"
    assert fields["status"]["enum"][:2] == ["ORDER_STATUS_UNSPECIFIED", "ORDER_STATUS_PENDING"]
    assert fields["createTime"]["format"] == "date-time"
    assert fields["items"]["type"] == "array"
    assert fields["items"]["items"] == {"$ref": "#/components/schemas/shop.orders.v1.OrderItem"}
    assert order["description"] == "Order is a customer's purchase."
    assert fields["userId"]["description"] == "Who placed the order."
    item = schema(document, "shop.orders.v1.OrderItem")
    assert item["required"] == ["productId", "quantity"]
    assert item["properties"]["unitPriceCents"]["readOnly"] is True
    assert item["properties"]["quantity"] == {
        "type": "integer",
        "format": "int32",
        "minimum": 1,
        "maximum": 1000,
        "description": "Units ordered; at least 1.",
    }


def test_bounds_and_formats_come_from_the_field_rules(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path in ("/v1/products", "/v1/users/{user_id}/orders", "/v1/users/{user_id}/notifications"):
        (page_size,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "pageSize"]
        assert (page_size["schema"]["minimum"], page_size["schema"]["maximum"]) == (0, 100)
    create = paths["/v1/users"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["properties"]["email"]["format"] == "email"
    assert create["properties"]["displayName"]["maxLength"] == 100
    place = paths["/v2/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert place["properties"]["requestId"]["maxLength"] == 100
    assert (place["properties"]["items"]["minItems"], place["properties"]["items"]["maxItems"]) == (
        1,
        50,
    )
    address = schema(document, "shop.orders.v2.ShippingAddress")
    assert address["properties"]["countryCode"]["pattern"] == "^[A-Z]{2}$"


def test_required_strings_and_path_parameters_are_what_the_server_accepts(
    document: dict[str, Any],
) -> None:
    place = document["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]
    request_id = place["schema"]["properties"]["requestId"]
    assert (request_id["minLength"], request_id["pattern"]) == (1, openapi.NOT_BLANK)
    (order_id,) = document["paths"]["/v1/orders/{order_id}"]["get"]["parameters"]
    pattern = re.compile(order_id["schema"]["pattern"])
    assert pattern.match("ord_1") and pattern.match("a.b")
    assert not any(pattern.match(bad) for bad in ("a/b", "a\\b", "a\x00", ".", ".."))


def test_errors_are_google_rpc_status(document: dict[str, Any]) -> None:
    status = schema(document, "google.rpc.Status")
    assert set(status["properties"]) == {"code", "message", "details"}
    assert status["properties"]["details"]["items"]["required"] == ["@type"]
    responses = document["paths"]["/v1/orders/{order_id}"]["get"]["responses"]
    for code in ("400", "401", "403", "404", "429", "503", "default"):
        ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/google.rpc.Status"


def test_security_follows_the_edge_policy(
    shop: descriptors.Contracts, document: dict[str, Any]
) -> None:
    for binding in policy.served(shop.bindings):
        operation = document["paths"][binding.path][binding.verb]
        expected: list[dict[str, list[str]]] = [] if policy.is_public(binding) else [{"bearer": []}]
        assert operation["security"] == expected, binding.full_method
    assert document["paths"]["/v1/products"]["get"]["security"] == []
    assert "401" not in document["paths"]["/v1/products"]["get"]["responses"]


def test_streaming_is_documented(document: dict[str, Any]) -> None:
    watch = document["paths"]["/v1/orders/{order_id}:watch"]["get"]
    assert "newline-delimited JSON" in watch["description"]


def test_objects_admit_no_other_fields(document: dict[str, Any]) -> None:
    # The gateway refuses unknown body fields (gateway/body_fields.py), and prints none.
    place = document["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]
    assert place["schema"]["additionalProperties"] is False
    for name in ("shop.orders.v1.OrderItem", "shop.orders.v2.ShippingAddress"):
        assert schema(document, name)["additionalProperties"] is False
    # google.rpc.Status details are Any: open, whatever type they pack.
    details = schema(document, "google.rpc.Status")["properties"]["details"]["items"]
    assert details["additionalProperties"] is True


def test_links_follow_the_ids_a_response_returns(document: dict[str, Any]) -> None:
    operations = {
        operation["operationId"]: (path, operation)
        for path, item in document["paths"].items()
        for operation in item.values()
    }
    links = {
        (source["operationId"], name): link
        for _, source in operations.values()
        for name, link in source["responses"]["200"].get("links", {}).items()
    }
    place = "shop.orders.v1.OrderService.PlaceOrder"
    assert links[(place, "GetOrder_v1_order_id")] == {
        "operationId": "shop.orders.v1.OrderService.GetOrder",
        "parameters": {"order_id": "$response.body#/order/orderId"},
        "description": "`/order/orderId` is the `order_id` of GetOrder.",
    }
    assert links[("shop.users.v1.UserService.CreateUser", "GetUser_v1_user_id")]["parameters"] == {
        "user_id": "$response.body#/user/userId"
    }
    assert links[("shop.catalog.v1.CatalogService.ListProducts", "GetProduct_v1_product_id")][
        "parameters"
    ] == {"product_id": "$response.body#/products/0/productId"}
    for (source, _), link in links.items():
        path, target = operations[link["operationId"]]
        assert [p["name"] for p in target.get("parameters", []) if p["in"] == "path"] == list(
            link["parameters"]
        )
        assert not path.endswith(":watch") and not operations[source][0].endswith(":watch")
        # No links between versions of one context: a v2 order is not a v1 resource.
        assert not (
            source.startswith("shop.orders.v2") and link["operationId"].startswith("shop.orders.v1")
        )
