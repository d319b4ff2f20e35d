"""The Python (grpcio) runner of the interop suite: `python -m clients.python.interop`.

It executes every case of a case file (tests/interop/) against the targets a JSON file names and
prints one line per case, as the Go and TypeScript runners do; see the case file for the rules.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2  # noqa: F401  (registers grpc.health.v1)

from shop.catalog.v1 import catalog_pb2  # noqa: F401  (each import registers its messages)
from shop.orders.v1 import orders_pb2 as orders_v1  # noqa: F401
from shop.orders.v2 import orders_pb2 as orders_v2  # noqa: F401
from shop.users.v1 import users_pb2  # noqa: F401

JSON = Any
VARIABLE = re.compile(r"\$\{(\w+)\}")


class CaseFailed(Exception):
    """A step's outcome differs from what the case expects."""


@dataclass
class Outcome:
    """What a call returned: its status, its messages as proto3 JSON, its error details."""

    code: str
    messages: list[JSON] = field(default_factory=list)
    reason: str = ""
    field_violations: list[str] = field(default_factory=list)


def substitute(value: JSON, variables: Mapping[str, str]) -> JSON:
    """`value` with every `${name}` replaced by its saved value."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            if match[1] not in variables:
                raise CaseFailed(f"${{{match[1]}}} was never saved")
            return variables[match[1]]

        return VARIABLE.sub(lookup, value)
    if isinstance(value, list):
        return [substitute(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, variables) for key, item in value.items()}
    return value


def mismatch(expected: JSON, actual: JSON, path: str = "$") -> str | None:
    """Where `actual` does not match `expected` (subset of objects, `$len`), or None."""
    if isinstance(expected, dict) and set(expected) == {"$len"}:
        if not isinstance(actual, list) or len(actual) != expected["$len"]:
            return f"{path}: expected {expected['$len']} items, got {actual!r}"
        return None
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for key, item in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            found = mismatch(item, actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{path}: expected {len(expected)} items, got {actual!r}"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = mismatch(want, got, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if expected == actual else f"{path}: expected {expected!r}, got {actual!r}"


def pick(document: JSON, dotted: str) -> str:
    value = document
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise CaseFailed(f"no {dotted} in {document!r}")
        value = value[key]
    return str(value)


class Runner:
    """Calls methods by name with messages from the descriptor pool, over cached channels."""

    def __init__(self, targets: JSON) -> None:
        self._targets = targets
        self._channels: dict[tuple[str, str], grpc.Channel] = {}
        self._pool = descriptor_pool.Default()

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def channel(self, step: JSON) -> grpc.Channel:
        target = self._targets["targets"][step["target"]]
        if step.get("probe"):
            address, identity = target["probe"], "plaintext"
        else:
            address, identity = target["address"], step.get("as", self._targets["identity"])
        key = (address, identity)
        if key not in self._channels:
            self._channels[key] = self._open(address, identity, target.get("serverName", ""))
        return self._channels[key]

    def _open(self, address: str, identity: str, server_name: str) -> grpc.Channel:
        files = self._targets["identities"].get(identity)
        if files is None:
            raise CaseFailed(f"the targets file has no identity {identity!r}")
        if not files:
            return grpc.insecure_channel(address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(files["ca"]).read_bytes(),
            private_key=Path(files["key"]).read_bytes() if "key" in files else None,
            certificate_chain=Path(files["cert"]).read_bytes() if "cert" in files else None,
        )
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        return grpc.secure_channel(address, credentials, options=options)

    def call(self, step: JSON) -> Outcome:
        service_name, _, method_name = step["method"].rpartition("/")
        method = self._pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class: Callable[[bytes], Message] = message_factory.GetMessageClass(
            method.output_type
        ).FromString
        request = json_format.ParseDict(step["request"], request_class())
        timeout = step["deadlineMs"] / 1000 if "deadlineMs" in step else 30.0
        path = f"/{step['method']}"
        channel = self.channel(step)
        outcome = Outcome("OK")
        try:
            if method.server_streaming:
                stream: Iterator[Message] = channel.unary_stream(
                    path, request_class.SerializeToString, response_class
                )(request, timeout=timeout)
                for reply in stream:
                    outcome.messages.append(json_format.MessageToDict(reply))
            else:
                reply = channel.unary_unary(path, request_class.SerializeToString, response_class)(
                    request, timeout=timeout
                )
                outcome.messages.append(json_format.MessageToDict(reply))
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call)
            outcome.code = error.code().name
            decode_details(error, outcome)
        return outcome


def decode_details(error: grpc.Call, outcome: Outcome) -> None:
    """BadRequest field names and the ErrorInfo reason from `grpc-status-details-bin`."""
    raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
    if not isinstance(raw, bytes):
        return
    for detail in status_pb2.Status.FromString(raw).details:
        bad_request, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
        if detail.Unpack(bad_request):
            outcome.field_violations += [v.field for v in bad_request.field_violations]
        elif detail.Unpack(info):
            outcome.reason = info.reason


def check(step: JSON, outcome: Outcome) -> None:
    expect = step.get("expect", {})
    if outcome.code != expect.get("code", "OK"):
        raise CaseFailed(f"{step['method']}: expected {expect.get('code', 'OK')}, got {outcome}")
    if "reason" in expect and outcome.reason != expect["reason"]:
        raise CaseFailed(f"{step['method']}: expected reason {expect['reason']}, got {outcome}")
    if "fieldViolations" in expect and sorted(outcome.field_violations) != sorted(
        expect["fieldViolations"]
    ):
        raise CaseFailed(f"{step['method']}: expected {expect['fieldViolations']}, got {outcome}")
    if "response" in expect:
        found = mismatch(expect["response"], outcome.messages[0] if outcome.messages else None)
        if found:
            raise CaseFailed(f"{step['method']}: {found}")
    if "stream" in expect:
        found = mismatch(expect["stream"], outcome.messages)
        if found:
            raise CaseFailed(f"{step['method']}: {found}")


def run_case(runner: Runner, case: JSON, run_id: str) -> None:
    variables = {"run": run_id}
    for step in case["steps"]:
        step = {**step, "request": substitute(step.get("request", {}), variables)}
        step["expect"] = substitute(step.get("expect", {}), variables)
        outcome = runner.call(step)
        check(step, outcome)
        for name, dotted in step.get("save", {}).items():
            variables[name] = pick(outcome.messages[0] if outcome.messages else {}, dotted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.python.interop", description=__doc__)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--targets", type=Path, required=True)
    args = parser.parse_args(argv)
    cases = json.loads(args.cases.read_text())["cases"]
    runner = Runner(json.loads(args.targets.read_text()))
    run_id = secrets.token_hex(4)
    passed = 0
    try:
        for case in cases:
            try:
                run_case(runner, case, run_id)
            except (CaseFailed, grpc.RpcError, KeyError, ValueError) as error:
                print(f"FAIL {case['id']}: {error}", flush=True)
            else:
                passed += 1
                print(f"ok {case['id']}", flush=True)
    finally:
        runner.close()
    print(f"interop: {passed}/{len(cases)} cases passed")
    return 0 if passed == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
