"""Orders and the order saga, free of gRPC and generated code.

The saga reserves stock, charges the payment and confirms. Every step is persisted before and
after it runs and every peer call is idempotent (keyed by the order id), so a crashed or
interrupted saga is resumed from the store until the order is CONFIRMED or fully compensated.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from services.runtime.clock import utc_now
from services.runtime.errors import FailedPrecondition, NotFound, Unavailable, Violations
from services.runtime.identity import ensure_owner
from services.runtime.paging import page_request

log = logging.getLogger("shop.orders.saga")

COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")
MAX_ITEMS = 50
MAX_QUANTITY = 1000
MAX_REQUEST_ID_LENGTH = 100


class Status(enum.Enum):
    """What the customer sees of an order: a view of its step (`Order.status`), never stored
    on its own."""

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class Step(enum.Enum):
    """The order's one state: where its saga is, persisted so that a restart resumes at the
    right place. CONFIRMED and CANCELLED are final."""

    RESERVING = "RESERVING"
    CHARGING = "CHARGING"
    CONFIRMED = "CONFIRMED"
    COMPENSATING = "COMPENSATING"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Item:
    product_id: str
    quantity: int
    unit_price_cents: int = 0


@dataclass(frozen=True)
class Address:
    recipient: str
    street: str
    city: str
    postal_code: str
    country_code: str


@dataclass(frozen=True)
class Order:
    order_id: str
    request_id: str
    user_id: str
    items: tuple[Item, ...]
    payment_token: str
    shipping_address: Address | None
    step: Step
    create_time: datetime
    update_time: datetime
    total_cents: int = 0
    status_reason: str = ""
    payment_id: str = ""

    @property
    def final(self) -> bool:
        """The saga has nothing left to do (a confirmed order may still be cancelled later)."""
        return self.step in (Step.CONFIRMED, Step.CANCELLED)

    @property
    def status(self) -> Status:
        """PENDING until the saga ends; a charged order stays CONFIRMED while a cancellation
        refunds it (only a confirmation records a payment), then CANCELLED."""
        if self.step is Step.CANCELLED:
            return Status.CANCELLED
        if self.step is Step.CONFIRMED or (self.step is Step.COMPENSATING and self.payment_id):
            return Status.CONFIRMED
        return Status.PENDING

    def fingerprint(self) -> str:
        """Identifies what was asked for, to tell a retry from a reused request id."""
        return request_fingerprint(
            self.user_id, self.items, self.payment_token, self.shipping_address
        )


def request_fingerprint(
    user_id: str, items: tuple[Item, ...], token: str, address: Address | None
) -> str:
    payload = [
        user_id,
        [(i.product_id, i.quantity) for i in items],
        token,
        address and vars(address),
    ]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


class StepFailed(Exception):
    """A peer refused a step for good (declined card, no stock): compensate with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepInterrupted(Exception):
    """A peer could not be reached or its answer is unknown: retry the step later."""


class Users(Protocol):
    async def exists(self, user_id: str) -> bool: ...


class Catalog(Protocol):
    async def product_exists(self, product_id: str) -> bool: ...

    async def reserve(self, reservation_id: str, items: tuple[Item, ...]) -> tuple[Item, ...]:
        """Hold stock; returns the items with unit prices. Raises StepFailed/StepInterrupted."""
        ...

    async def release(self, reservation_id: str) -> None: ...


class Payments(Protocol):
    async def charge(self, key: str, user_id: str, amount_cents: int, token: str) -> str:
        """Capture the amount once per key; returns the payment id."""
        ...

    async def refund(self, payment_id: str) -> None: ...


class OrderStore(Protocol):
    async def create(self, order: Order, owner: str, lease_seconds: float) -> Order | None:
        """Insert a new order leased to `owner`, with the event announcing it, in one
        transaction; None when its request id already exists."""
        ...

    async def get(self, order_id: str) -> Order | None: ...

    async def by_request_id(self, request_id: str) -> Order | None: ...

    async def list_for_user(self, user_id: str, offset: int, limit: int) -> list[Order]: ...

    async def save(self, order: Order, owner: str, lease_seconds: float) -> None:
        """Persist a saga step, with the events it announces, and extend the owner's lease."""
        ...

    async def claim(self, order_id: str, owner: str, lease_seconds: float) -> bool:
        """Take the lease on an order whose lease is free or expired."""
        ...

    async def release_lease(self, order_id: str, owner: str) -> None: ...

    async def leased(self, order_id: str) -> bool:
        """Whether some process holds a live lease on the order (its saga is running)."""
        ...

    async def unsettled(self) -> list[str]:
        """Ids of orders whose saga still has steps to run."""
        ...


@dataclass(frozen=True)
class SagaOptions:
    lease_seconds: float = 30.0
    watch_poll_seconds: float = 0.5
    # Test and demo hook: wait forever after this step's peer call returns, before its result
    # is saved, so a test can kill the process at the worst moment.
    hold_after: Step | None = None


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next_page_token: str


class Orders:
    def __init__(
        self,
        store: OrderStore,
        users: Users,
        catalog: Catalog,
        payments: Payments,
        options: SagaOptions = SagaOptions(),
        new_id: Callable[[], str] = lambda: f"ord_{uuid.uuid4().hex[:16]}",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._users = users
        self._catalog = catalog
        self._payments = payments
        self._options = options
        self._new_id = new_id
        self._clock = clock
        self._owner = f"orders-{uuid.uuid4().hex[:8]}"
        self._changed: dict[str, asyncio.Event] = {}

    # Commands and queries -------------------------------------------------------------------

    async def place(
        self,
        request_id: str,
        user_id: str,
        items: list[Item],
        payment_token: str,
        shipping_address: Address | None = None,
        caller: str | None = None,
    ) -> Order:
        """Run the saga for a new order, or return the order a retry of this request made.

        Every bad field is reported at once: a malformed request still has its well-formed user
        and product ids looked up, so unknown ids come back with the other violations.
        """
        violations = Violations()
        wanted = _validate_place(
            request_id, user_id, items, payment_token, shipping_address, violations
        )
        if user_id:
            ensure_owner(caller, user_id)
        fingerprint = request_fingerprint(user_id, wanted, payment_token, shipping_address)
        existing = None if violations else await self._store.by_request_id(request_id)
        if existing is None:
            await self._check_references(user_id, wanted, violations)
            violations.raise_if_any()
            now = self._clock()
            order = Order(
                order_id=self._new_id(),
                request_id=request_id,
                user_id=user_id,
                items=wanted,
                payment_token=payment_token,
                shipping_address=shipping_address,
                step=Step.RESERVING,
                create_time=now,
                update_time=now,
            )
            created = await self._store.create(order, self._owner, self._options.lease_seconds)
            if created is not None:
                return await self._run(created)
            existing = await self._store.by_request_id(request_id)
            assert existing is not None
        if existing.fingerprint() != fingerprint:
            raise FailedPrecondition(
                f"request id {request_id!r} was already used for a different order",
                reason="REQUEST_ID_REUSED",
            )
        return await self._settled(existing.order_id)

    async def get(self, order_id: str, caller: str | None = None) -> Order:
        violations = Violations()
        violations.check(bool(order_id), "order_id", "must not be empty")
        violations.raise_if_any()
        order = await self._store.get(order_id)
        if order is None:
            raise NotFound("order", order_id)
        ensure_owner(caller, order.user_id)
        return order

    async def list(
        self, user_id: str, page_size: int, page_token: str, caller: str | None
    ) -> OrderPage:
        violations = Violations()
        violations.check(bool(user_id), "user_id", "must not be empty")
        page = page_request(page_size, page_token, violations)
        violations.raise_if_any()
        ensure_owner(caller, user_id)
        orders, token = await page.fetch(
            lambda offset, limit: self._store.list_for_user(user_id, offset, limit)
        )
        return OrderPage(orders, token)

    async def cancel(self, order_id: str, reason: str, caller: str | None = None) -> Order:
        """Refund and release a confirmed order. Cancelling a cancelled order changes nothing."""
        order = await self.get(order_id, caller)
        if order.step is Step.CANCELLED:
            return order
        if order.step not in (Step.CONFIRMED, Step.COMPENSATING) or not await self._store.claim(
            order_id, self._owner, self._options.lease_seconds
        ):
            raise FailedPrecondition(
                "the order is still being placed; try again shortly", reason="ORDER_IN_PROGRESS"
            )
        # Read again under the lease: another cancellation may have finished since the read.
        latest = await self._store.get(order_id)
        assert latest is not None
        order = latest
        if order.step is Step.CANCELLED:
            await self._store.release_lease(order_id, self._owner)
            return order
        if order.step is Step.CONFIRMED:
            why = f"cancelled by customer: {reason}" if reason else "cancelled by customer"
            order = await self._save(replace(order, step=Step.COMPENSATING, status_reason=why))
        order = await self._run(order)
        if order.step is not Step.CANCELLED:
            raise Unavailable(
                "the cancellation is recorded and will finish once every service is reachable",
                reason="CANCELLATION_PENDING",
            )
        return order

    async def watch(self, order_id: str, caller: str | None = None) -> AsyncIterator[Order]:
        """Yield the order now and after each change, until it is final."""
        order = await self.get(order_id, caller)
        yield order
        while not order.final:
            await self._next_change(order_id)
            latest = await self._store.get(order_id)
            assert latest is not None
            if latest != order:
                order = latest
                yield order

    async def recover(self) -> int:
        """Resume every unfinished saga this process can lease; returns how many it finished."""
        finished = 0
        for order_id in await self._store.unsettled():
            if await self._store.claim(order_id, self._owner, self._options.lease_seconds):
                order = await self._store.get(order_id)
                assert order is not None
                if order.final:  # another process finished it since the list was read
                    await self._store.release_lease(order_id, self._owner)
                    continue
                log.info("resuming saga", extra={"order_id": order_id, "step": order.step.value})
                finished += (await self._run(order)).final
        return finished

    async def recover_forever(self, interval: float) -> None:
        while True:
            try:
                await self.recover()
            except Exception:
                log.exception("saga recovery pass failed")
            await asyncio.sleep(interval)

    # The saga -------------------------------------------------------------------------------

    async def _run(self, order: Order) -> Order:
        """Drive a leased order forward until it is final or a peer is unreachable."""
        try:
            while not order.final:
                order = await self._advance(order)
        except StepInterrupted as error:
            log.warning(
                "saga interrupted; will resume",
                extra={"order_id": order.order_id, "step": order.step.value, "error": str(error)},
            )
        finally:
            await self._store.release_lease(order.order_id, self._owner)
            self._notify(order.order_id)
        return order

    async def _advance(self, order: Order) -> Order:
        match order.step:
            case Step.RESERVING:
                try:
                    priced = await self._catalog.reserve(order.order_id, order.items)
                except StepFailed as failure:
                    return await self._compensate(order, failure.reason)
                await self._hold(Step.RESERVING)
                total = sum(item.unit_price_cents * item.quantity for item in priced)
                return await self._save(
                    replace(order, items=priced, total_cents=total, step=Step.CHARGING)
                )
            case Step.CHARGING:
                try:
                    payment_id = await self._payments.charge(
                        order.order_id, order.user_id, order.total_cents, order.payment_token
                    )
                except StepFailed as failure:
                    return await self._compensate(order, failure.reason)
                await self._hold(Step.CHARGING)
                return await self._save(replace(order, payment_id=payment_id, step=Step.CONFIRMED))
            case Step.COMPENSATING:
                await self._catalog.release(order.order_id)
                if order.payment_id:
                    await self._payments.refund(order.payment_id)
                return await self._save(replace(order, step=Step.CANCELLED))
            case _:
                raise AssertionError(f"order {order.order_id} is final at step {order.step}")

    async def _compensate(self, order: Order, reason: str) -> Order:
        return await self._save(replace(order, step=Step.COMPENSATING, status_reason=reason))

    async def _save(self, order: Order) -> Order:
        order = replace(order, update_time=self._clock())
        await self._store.save(order, self._owner, self._options.lease_seconds)
        self._notify(order.order_id)
        return order

    async def _hold(self, step: Step) -> None:
        if self._options.hold_after is step:
            log.warning("holding the saga for a crash test", extra={"after": step.value})
            await asyncio.Event().wait()

    async def _settled(self, order_id: str) -> Order:
        """The order once its saga stops running: final, or waiting to be resumed."""
        while True:
            # The lease first: a saga saves its last step before it lets the lease go, so an
            # order read after the lease was seen free is as far as that saga took it.
            leased = await self._store.leased(order_id)
            order = await self.get(order_id)
            if order.final or not leased:
                return order
            await self._next_change(order_id)

    async def _next_change(self, order_id: str) -> None:
        """Wait for this process to change the order, or for one poll interval.

        Polling as well covers changes made by another orders process sharing the store.
        """
        event = self._changed.setdefault(order_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self._options.watch_poll_seconds)

    def _notify(self, order_id: str) -> None:
        event = self._changed.pop(order_id, None)
        if event is not None:
            event.set()

    async def _check_references(
        self, user_id: str, items: tuple[Item, ...], violations: Violations
    ) -> None:
        """Add a violation for each unknown user or product id (empty ids are already reported)."""

        async def known(exists: Callable[[str], Awaitable[bool]], value: str) -> bool:
            return await exists(value) if value else True

        found = await asyncio.gather(
            known(self._users.exists, user_id),
            *(known(self._catalog.product_exists, i.product_id) for i in items),
        )
        violations.check(found[0], "user_id", f"no user {user_id!r}")
        for index, (item, exists) in enumerate(zip(items, found[1:], strict=True)):
            violations.check(
                exists, f"items[{index}].product_id", f"no product {item.product_id!r}"
            )


def _validate_place(
    request_id: str,
    user_id: str,
    items: list[Item],
    payment_token: str,
    address: Address | None,
    violations: Violations,
) -> tuple[Item, ...]:
    """The requested items; every cheap (local) check's violation is added to `violations`."""
    violations.check(bool(request_id.strip()), "request_id", "must not be empty")
    violations.check(
        len(request_id) <= MAX_REQUEST_ID_LENGTH,
        "request_id",
        f"must be at most {MAX_REQUEST_ID_LENGTH} characters",
    )
    violations.check(bool(user_id), "user_id", "must not be empty")
    violations.check(bool(items), "items", "must contain at least one item")
    violations.check(len(items) <= MAX_ITEMS, "items", f"must contain at most {MAX_ITEMS} items")
    seen: set[str] = set()
    for index, item in enumerate(items):
        violations.check(bool(item.product_id), f"items[{index}].product_id", "must not be empty")
        violations.check(
            item.product_id not in seen, f"items[{index}].product_id", "appears more than once"
        )
        violations.check(item.quantity >= 1, f"items[{index}].quantity", "must be at least 1")
        violations.check(
            item.quantity <= MAX_QUANTITY,
            f"items[{index}].quantity",
            f"must be at most {MAX_QUANTITY}",
        )
        seen.add(item.product_id)
    violations.check(bool(payment_token), "payment_token", "must not be empty")
    if address is not None:
        for name in ("recipient", "street", "city", "postal_code"):
            violations.check(
                bool(getattr(address, name).strip()),
                f"shipping_address.{name}",
                "must not be empty",
            )
        violations.check(
            bool(COUNTRY_CODE.match(address.country_code)),
            "shipping_address.country_code",
            "must be an ISO 3166-1 alpha-2 code such as DE",
        )
    return tuple(Item(i.product_id, i.quantity) for i in items)
