"""Verify users, catalog and payments against orders' gRPC pacts: pact-python's Verifier drives
each synchronous message through `GrpcProvider`, which calls the real service process."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import pytest

from contracts.pact import files
from contracts.pact.grpc import GrpcProvider
from contracts.pact.states import ProviderHooks, StateSetup
from contracts.pact.verify import verify_messages
from mesh.local.stack import LocalStack
from shop.payments.v1 import payments_pb2, payments_pb2_grpc
from shop.users.v1 import users_pb2, users_pb2_grpc

pytestmark = [pytest.mark.pact_provider, pytest.mark.system]
PROVIDERS = ("users", "catalog", "payments")
_serial = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("grpc-providers")
    with LocalStack(workdir, services=PROVIDERS, env={"LOG_LEVEL": "WARNING"}) as running:
        yield running


def registered_user(stack: LocalStack) -> StateSetup:
    def setup(params: Mapping[str, Any]) -> dict[str, str]:
        with grpc.insecure_channel(stack.address("users")) as channel:
            reply = users_pb2_grpc.UserServiceStub(channel).CreateUser(
                users_pb2.CreateUserRequest(
                    email=f"pact-{next(_serial)}@example.com", display_name="Pact"
                ),
                timeout=10,
            )
        return {"userId": reply.user.user_id}

    return setup


def captured_payment(stack: LocalStack) -> StateSetup:
    def setup(params: Mapping[str, Any]) -> dict[str, str]:
        with grpc.insecure_channel(stack.address("payments")) as channel:
            reply = payments_pb2_grpc.PaymentServiceStub(channel).ChargePayment(
                payments_pb2.ChargePaymentRequest(
                    idempotency_key=f"pact-state-{next(_serial)}",
                    user_id="usr_pact",
                    amount_cents=1200,
                    payment_token="tok_visa",
                ),
                timeout=10,
            )
        return {"paymentId": reply.payment.payment_id}

    return setup


def states_of(provider: str, stack: LocalStack) -> dict[str, StateSetup]:
    setups: dict[str, dict[str, StateSetup]] = {
        "users": {"a user is registered": registered_user(stack)},
        "catalog": {"the demo catalog is loaded": lambda params: None},  # seeded on start
        "payments": {"a payment is captured": captured_payment(stack)},
    }
    return setups[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_honours_orders_pact(provider: str, stack: LocalStack) -> None:
    pacts = files.pacts_for(provider, consumer="orders")
    with ProviderHooks(states_of(provider, stack)) as hooks:
        hooks.produce = replay = GrpcProvider(stack.address(provider), pacts, hooks)
        try:
            result = verify_messages(provider, pacts, hooks)
        finally:
            replay.close()
    assert result.passed, str(result)
