"""The gRPC pact glue on its own: minimal consumer descriptors, and a contract server that
refuses calls the contract does not describe."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc import aio
from pact import Pact, match

from contracts.pact.grpc import ContractServer, descriptor_set, unary
from shop.users.v1 import users_pb2, users_pb2_grpc


def test_descriptor_set_holds_only_the_files_the_messages_need() -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(
        descriptor_set(users_pb2.GetUserRequest.DESCRIPTOR, users_pb2.GetUserResponse.DESCRIPTOR)
    )
    assert [f.name for f in files.file] == [
        "google/protobuf/timestamp.proto",
        "shop/users/v1/users.proto",
    ]
    assert list(files.file[1].dependency) == ["google/protobuf/timestamp.proto"]


def test_unary_rejects_a_request_of_another_type() -> None:
    with pytest.raises(TypeError, match=r"takes shop\.users\.v1\.GetUserRequest"):
        unary(
            Pact("a", "b"),
            "wrong",
            method="/shop.users.v1.UserService/GetUser",
            request=users_pb2.ListUsersRequest(),
        )


async def test_contract_server_refuses_a_call_it_was_not_told_about() -> None:
    pact = Pact("orders", "users")
    unary(
        pact,
        "GetUser for a registered user",
        method="/shop.users.v1.UserService/GetUser",
        request=users_pb2.GetUserRequest(user_id="usr_1"),
        response={"user": {"userId": match.str("usr_1")}},
    )
    async with ContractServer(pact) as server, aio.insecure_channel(server.address) as channel:
        stub = users_pb2_grpc.UserServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as raised:
            await stub.GetUser(users_pb2.GetUserRequest(user_id="usr_2"))
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(AssertionError) as failed:
            server.check()
    report = str(failed.value)
    assert '"userId": "usr_2"' in report and "never called: GetUser for a registered user" in report
