"""The bounds the contracts publish (shop.api.v1.rules) are the ones the services enforce."""

from __future__ import annotations

from google.protobuf.message import Message

from services.orders import domain as orders
from services.runtime import paging
from services.users import domain as users
from shop.api.v1 import field_rules_pb2
from shop.catalog.v1 import catalog_pb2
from shop.notifications.v1 import notifications_pb2
from shop.orders.v1 import orders_pb2
from shop.orders.v2 import orders_pb2 as orders_v2_pb2
from shop.users.v1 import users_pb2

LISTS = (
    catalog_pb2.ListProductsRequest,
    notifications_pb2.ListNotificationsRequest,
    orders_pb2.ListOrdersRequest,
    orders_v2_pb2.ListOrdersRequest,
    users_pb2.ListUsersRequest,
)
PLACES = (orders_pb2.PlaceOrderRequest, orders_v2_pb2.PlaceOrderRequest)


def rules(message: type[Message], field: str) -> field_rules_pb2.FieldRules:
    options = message.DESCRIPTOR.fields_by_name[field].GetOptions()
    value: field_rules_pb2.FieldRules = options.Extensions[field_rules_pb2.rules]
    return value


def test_page_size_bounds_are_the_paging_limits() -> None:
    for message in LISTS:
        page_size = rules(message, "page_size")
        assert (page_size.minimum, page_size.maximum) == (0, paging.MAX_PAGE_SIZE), message


def test_order_bounds_are_the_orders_checks() -> None:
    for message in PLACES:
        assert rules(message, "request_id").max_length == orders.MAX_REQUEST_ID_LENGTH
        assert rules(message, "items").max_items == orders.MAX_ITEMS
    for item in (orders_pb2.OrderItem, orders_v2_pb2.OrderItem):
        quantity = rules(item, "quantity")
        assert (quantity.minimum, quantity.maximum) == (1, orders.MAX_QUANTITY)
    country = rules(orders_v2_pb2.ShippingAddress, "country_code")
    assert country.pattern == orders.COUNTRY_CODE.pattern


def test_user_bounds_are_the_users_checks() -> None:
    assert rules(users_pb2.CreateUserRequest, "display_name").max_length == users.MAX_NAME_LENGTH
    assert rules(users_pb2.CreateUserRequest, "email").format == "email"
