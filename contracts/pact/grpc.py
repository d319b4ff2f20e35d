"""Unary gRPC calls as V4 synchronous-message pacts, with no protobuf plugin.

An interaction's request and response contents are proto3 JSON. Its request metadata carries
the method path, the message type names and the consumer's own descriptors (a base64
FileDescriptorSet of the files those messages need); the response metadata carries the gRPC
status. An error response's contents are its `google.rpc.Status`, details included.

- Consumer side: `unary` records an interaction; `ContractServer` is a grpc.aio server on
  127.0.0.1 that answers the consumer's real client code from the pact's interactions.
- Provider side: `GrpcProvider` is the message handler for pact-python's Verifier. It encodes the
  request with the consumer's descriptors, calls the real service over a real channel and
  decodes the reply with the consumer's descriptors, so a renumbered field or a changed type
  shows as a missing or mismatched field even when the JSON names still match.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import Descriptor, FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from pact import Pact, generate, match

from contracts.pact import files
from contracts.pact.states import ProviderHooks

METHOD = "grpc-method"
STATUS = "grpc-status"
REQUEST_TYPE = "grpc-request-type"
RESPONSE_TYPE = "grpc-response-type"
DESCRIPTORS = "grpc-descriptors"
JSON_TYPE = "application/json"
ERROR_INFO = "type.googleapis.com/" + error_details_pb2.ErrorInfo.DESCRIPTOR.full_name
Reply = tuple[bytes, dict[str, str]]
STATE_EXPRESSION = re.compile(r"\$\{(\w+)\}")


def _strip(message: Any) -> None:
    """Drop options (google.api annotations) so the set needs no descriptor.proto."""
    message.ClearField("options")
    for name in ("field", "extension", "value", "method"):
        for child in getattr(message, name, ()):
            child.ClearField("options")
    for name in ("message_type", "nested_type", "enum_type", "service"):
        for child in getattr(message, name, ()):
            _strip(child)


def descriptor_set(*messages: Any) -> bytes:
    """A FileDescriptorSet of the files that define `messages` and every type they use."""
    needed: dict[str, FileDescriptor] = {}
    seen: set[str] = set()
    pending: list[Descriptor] = list(messages)
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        needed[message.file.name] = message.file
        for each in message.fields:
            if each.message_type is not None:
                pending.append(each.message_type)
            if each.enum_type is not None:
                needed[each.enum_type.file.name] = each.enum_type.file
    result = descriptor_pb2.FileDescriptorSet()
    for name in sorted(needed):
        proto = result.file.add()
        needed[name].CopyToProto(proto)
        _strip(proto)
        kept = [dep for dep in proto.dependency if dep in needed]
        del proto.dependency[:]
        proto.dependency.extend(kept)
        del proto.public_dependency[:]
        del proto.weak_dependency[:]
    # Dependencies first, as DescriptorPool.Add requires.
    ordered = descriptor_pb2.FileDescriptorSet()
    added: set[str] = set()
    while len(added) < len(result.file):
        for proto in result.file:
            if proto.name not in added and all(dep in added for dep in proto.dependency):
                ordered.file.add().CopyFrom(proto)
                added.add(proto.name)
    return ordered.SerializeToString(deterministic=True)


class Contract:
    """The consumer's view of one interaction's messages, rebuilt from its descriptors."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.method = str(metadata[METHOD])
        pool = DescriptorPool()
        descriptors = descriptor_pb2.FileDescriptorSet.FromString(
            base64.b64decode(str(metadata[DESCRIPTORS]))
        )
        for proto in descriptors.file:
            pool.Add(proto)
        self.request_class = GetMessageClass(pool.FindMessageTypeByName(metadata[REQUEST_TYPE]))
        self.response_class = GetMessageClass(pool.FindMessageTypeByName(metadata[RESPONSE_TYPE]))

    def request(self, content: Mapping[str, Any]) -> Message:
        return json_format.ParseDict(dict(content), self.request_class())

    def response(self, content: Mapping[str, Any]) -> Message:
        return json_format.ParseDict(dict(content), self.response_class())


@dataclass(frozen=True)
class GrpcError:
    """An expected error: its status code and, for refusals, the ErrorInfo reason."""

    code: grpc.StatusCode
    message: str = "a message for people"
    reason: str = ""

    def body(self) -> dict[str, Any]:
        status: dict[str, Any] = {"code": self.code.value[0], "message": match.str(self.message)}
        if self.reason:
            status["details"] = [
                {"@type": ERROR_INFO, "reason": self.reason, "domain": match.str("example.com")}
            ]
        return status


def _state_value(example: str, expression: str) -> Any:
    return match.like(example, generator=generate.provider_state(expression))


def unary(
    pact: Pact,
    description: str,
    *,
    method: str,
    request: Message,
    response: Mapping[str, Any] | None = None,
    error: GrpcError | None = None,
    states: Sequence[tuple[str, Mapping[str, Any]]] = (),
    from_state: Mapping[str, str] | None = None,
) -> None:
    """Record a unary call: `request` as the consumer sends it, and either `response` (proto3
    JSON, with matchers; leave out fields whose value is the default) or `error`.

    `from_state` maps top-level request fields to provider-state expressions (`${userId}`), for
    ids the provider only knows once a state is set up.
    """
    service, _, name = method.strip("/").partition("/")
    rpc = request.DESCRIPTOR.file.pool.FindMethodByName(f"{service}.{name}")
    if rpc.input_type is not request.DESCRIPTOR:
        raise TypeError(f"{method} takes {rpc.input_type.full_name}, not {type(request)}")
    content: dict[str, Any] = json_format.MessageToDict(request)
    for key, expression in (from_state or {}).items():
        content[key] = _state_value(str(content[key]), expression)
    descriptors = descriptor_set(rpc.input_type, rpc.output_type)
    interaction = pact.upon_receiving(description, "Sync")
    for state, parameters in states:
        interaction.given(state, dict(parameters))
    interaction.with_body(content, JSON_TYPE)
    interaction.with_metadata(
        {
            METHOD: method,
            REQUEST_TYPE: rpc.input_type.full_name,
            RESPONSE_TYPE: rpc.output_type.full_name,
            DESCRIPTORS: base64.b64encode(descriptors).decode(),
        }
    )
    interaction.will_respond_with()
    if error is None:
        interaction.with_body(dict(response or {}), JSON_TYPE)
        interaction.with_metadata({STATUS: grpc.StatusCode.OK.name})
    else:
        interaction.with_body(error.body(), JSON_TYPE)
        interaction.with_metadata({STATUS: error.code.name})


@dataclass
class _Expected:
    description: str
    contract: Contract
    request: Message
    status: grpc.StatusCode
    response: Mapping[str, Any]
    calls: int = 0


def _metadata(pairs: Any) -> dict[str, str]:
    return {pair.key: pair.value for pair in pairs}


@dataclass
class ContractServer:
    """A grpc.aio server on 127.0.0.1 that plays the provider from a pact's interactions.

    A call that matches no interaction fails with UNIMPLEMENTED and is recorded; `check()`
    then fails the test, as does an interaction the consumer never exercised.
    """

    pact: Pact
    unexpected: list[str] = field(default_factory=list)
    _expected: list[_Expected] = field(default_factory=list)
    _server: aio.Server | None = None
    address: str = ""

    async def __aenter__(self) -> ContractServer:
        for message in self.pact.interactions("Sync"):
            request = message.request_contents
            contract = Contract(_metadata(request.metadata))
            (reply,) = list(message.response_contents)
            self._expected.append(
                _Expected(
                    message.description,
                    contract,
                    contract.request(json.loads(request.contents or "{}")),
                    grpc.StatusCode[_metadata(reply.metadata)[STATUS]],
                    json.loads(reply.contents or "{}"),
                )
            )
        self._server = aio.server()
        self._server.add_generic_rpc_handlers((_Generic(self),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self._server.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.stop(None)

    def check(self) -> None:
        """Fail unless every call matched an interaction and every interaction was called."""
        problems = list(self.unexpected)
        problems += [f"never called: {e.description}" for e in self._expected if not e.calls]
        if problems:
            raise AssertionError("gRPC contract not met:\n  " + "\n  ".join(problems))

    async def answer(
        self, method: str, payload: bytes, context: aio.ServicerContext[Any, Any]
    ) -> bytes:
        candidates = [e for e in self._expected if e.contract.method == method]
        for expected in candidates:
            try:
                request = expected.contract.request_class.FromString(payload)
            except DecodeError:
                continue
            if request == expected.request:
                expected.calls += 1
                if expected.status is grpc.StatusCode.OK:
                    return expected.contract.response(expected.response).SerializeToString()
                status = json_format.ParseDict(dict(expected.response), status_pb2.Status())
                await context.abort(
                    expected.status,
                    status.message,
                    (("grpc-status-details-bin", status.SerializeToString()),),
                )
        shown = (
            json_format.MessageToJson(candidates[0].contract.request_class.FromString(payload))
            if candidates
            else payload.hex()
        )
        self.unexpected.append(
            f"{method} with {shown} matches none of: "
            + (", ".join(e.description for e in candidates) or "(no interaction for the method)")
        )
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no interaction matches this call")
        raise AssertionError("unreachable")


class _Generic(grpc.GenericRpcHandler):
    def __init__(self, server: ContractServer) -> None:
        self._server = server

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = str(handler_call_details.method)

        async def behaviour(payload: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
            return await self._server.answer(method, payload, context)

        return grpc.unary_unary_rpc_method_handler(behaviour)


class GrpcProvider:
    """The Verifier's message handler: replays a synchronous message against a real service."""

    def __init__(self, address: str, pacts: Sequence[Path], hooks: ProviderHooks) -> None:
        self._channel = grpc.insecure_channel(address)
        self._interactions = files.interactions_by_description(list(pacts))
        self._hooks = hooks

    def close(self) -> None:
        self._channel.close()

    def _inject(self, description: str, content: dict[str, Any]) -> dict[str, Any]:
        """Apply the interaction's provider-state generators to top-level request fields."""
        interaction = self._interactions.get(description, {})
        generators = interaction.get("request", {}).get("generators", {}).get("body", {})
        for path, generator in generators.items():
            if generator.get("type") == "ProviderState" and path.startswith("$."):
                content[path[2:]] = STATE_EXPRESSION.sub(
                    lambda m: self._hooks.values.get(m.group(1), m.group(0)),
                    str(generator["expression"]),
                )
        return content

    def __call__(self, name: str, verifier_request: Mapping[str, Any]) -> Reply:
        request = verifier_request["request"]
        contract = Contract(request["metadata"])
        content = self._inject(name, dict(request["contents"].get("content") or {}))
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            contract.method
        )
        try:
            payload = call(contract.request(content).SerializeToString(), timeout=10)
        except grpc.RpcError as error:
            return self._reply(_status_json(error), error.code().name)
        try:
            reply = contract.response_class.FromString(payload)
        except DecodeError as error:
            return self._reply({}, f"UNDECODABLE by the consumer's descriptors: {error}")
        return self._reply(json_format.MessageToDict(reply), grpc.StatusCode.OK.name)

    @staticmethod
    def _reply(body: Mapping[str, Any], status: str) -> Reply:
        return json.dumps(body, sort_keys=True).encode(), {STATUS: status, "contentType": JSON_TYPE}


def _status_json(error: grpc.RpcError) -> dict[str, Any]:
    status = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    for item in error.trailing_metadata() or ():
        if item.key == "grpc-status-details-bin" and isinstance(item.value, bytes):
            status = status_pb2.Status.FromString(item.value)
    body: dict[str, Any] = json_format.MessageToDict(status)
    return body
