"""The events orders announces, one per saga transition, as records of the newest Avro schemas.

The store writes them in the transaction that saves the transition (the outbox), so the event
exists exactly when the change does.
"""

from __future__ import annotations

from services.orders.domain import Order, Step
from services.runtime.outbox import NewEvent

PLACED = "shop.orders.OrderPlaced"
CONFIRMED = "shop.orders.OrderConfirmed"
CANCELLED = "shop.orders.OrderCancelled"
SUBJECTS = (PLACED, CONFIRMED, CANCELLED)


def placed(order: Order) -> NewEvent:
    address = order.shipping_address
    return NewEvent(
        PLACED,
        order.order_id,
        {
            "order_id": order.order_id,
            "user_id": order.user_id,
            "items": [{"product_id": i.product_id, "quantity": i.quantity} for i in order.items],
            "shipping_country": address.country_code if address else None,
            "occurred_at": order.create_time,
        },
    )


def saved(order: Order) -> list[NewEvent]:
    """What saving `order` at its current step announces: only the two final steps do."""
    match order.step:
        case Step.CONFIRMED:
            record = {
                "order_id": order.order_id,
                "user_id": order.user_id,
                "total_cents": order.total_cents,
                "payment_id": order.payment_id,
                "occurred_at": order.update_time,
            }
            return [NewEvent(CONFIRMED, order.order_id, record)]
        case Step.CANCELLED:
            record = {
                "order_id": order.order_id,
                "user_id": order.user_id,
                "reason": order.status_reason,
                "occurred_at": order.update_time,
            }
            return [NewEvent(CANCELLED, order.order_id, record)]
        case _:
            return []
