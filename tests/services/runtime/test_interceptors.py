"""The server interceptor treats every RPC shape alike: unary, server streaming, client streaming
and bidirectional calls get the request context, the domain-error mapping and the same metrics."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

from mesh.local.stack import free_port
from services.runtime import context
from services.runtime.errors import NotFound
from services.runtime.interceptors import Call, Piece, RequestInterceptor
from services.runtime.server import Service, build_server
from services.runtime.settings import ServerSettings
from tests.services.conftest import error_reason

SERVICE = "shop.test.v1.ShapesService"
SHAPES = ("Unary", "ServerStream", "ClientStream", "BidiStream")
Text = wrappers_pb2.StringValue


def answer(value: str) -> Text:
    """`missing` is a domain error, `boom` a bug; anything else is echoed with the request id."""
    if value == "missing":
        raise NotFound("widget", value)
    if value == "boom":
        raise RuntimeError("a bug")
    return Text(value=f"{value} {context.request_id.get()}")


async def unary(request: Text, ctx: Any) -> Text:
    return answer(request.value)


async def server_stream(request: Text, ctx: Any) -> AsyncIterator[Text]:
    yield answer(request.value)


async def client_stream(requests: AsyncIterator[Text], ctx: Any) -> Text:
    values = [request.value async for request in requests]
    return answer(values[-1])


async def bidi_stream(requests: AsyncIterator[Text], ctx: Any) -> AsyncIterator[Text]:
    async for request in requests:
        yield answer(request.value)


def add_shapes(servicer: object, server: aio.Server) -> None:
    decode, encode = Text.FromString, Text.SerializeToString
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, decode, encode),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, decode, encode),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, decode, encode),
        "BidiStream": grpc.stream_stream_rpc_method_handler(bidi_stream, decode, encode),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


async def call(channel: aio.Channel, shape: str, value: str) -> str:
    """Call `shape` with one request carrying `value` and a request id; the one answer."""
    codec = (f"/{SERVICE}/{shape}", Text.SerializeToString, Text.FromString)
    metadata = ((context.REQUEST_ID_HEADER, "req-1"),)
    requests = [Text(value="first"), Text(value=value)]
    replies: list[Text]
    if shape == "Unary":
        replies = [await channel.unary_unary(*codec)(requests[-1], metadata=metadata)]
    elif shape == "ServerStream":
        replies = [r async for r in channel.unary_stream(*codec)(requests[-1], metadata=metadata)]
    elif shape == "ClientStream":
        replies = [await channel.stream_unary(*codec)(iter(requests), metadata=metadata)]
    else:
        stream = channel.stream_stream(*codec)(iter(requests), metadata=metadata)
        replies = [r async for r in stream][-1:]
    (reply,) = replies
    return str(reply.value)


def samples(text: str, method: str) -> dict[tuple[str, str], float]:
    """The metrics of one method: (sample name, grpc_code or "") -> value."""
    return {
        (sample.name, sample.labels.get("grpc_code", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("grpc_method") == method and "le" not in sample.labels
    }


async def test_every_rpc_shape_maps_errors_and_counts_calls_like_a_unary_one() -> None:
    port = free_port()
    settings = ServerSettings.from_env(
        "shapes", {"PORT": "0", "METRICS_PORT": str(port), "LOG_LEVEL": "WARNING"}, default_port=0
    )
    running = await build_server(settings, [Service(SERVICE, add_shapes, None)])
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            for shape in SHAPES:
                assert await call(channel, shape, "ok") == "ok req-1", shape
                with pytest.raises(aio.AioRpcError) as missing:
                    await call(channel, shape, "missing")
                assert missing.value.code() == grpc.StatusCode.NOT_FOUND, shape
                assert missing.value.details() == "widget 'missing' not found", shape
                assert error_reason(missing.value) == "WIDGET_NOT_FOUND", shape
                with pytest.raises(aio.AioRpcError) as bug:
                    await call(channel, shape, "boom")
                assert bug.value.code() == grpc.StatusCode.INTERNAL, shape
                assert bug.value.details() == "internal error", shape
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
    finally:
        await running.stop(0)
    expected = {
        ("grpc_server_handled_total", "OK"): 1.0,
        ("grpc_server_handled_total", "NOT_FOUND"): 1.0,
        ("grpc_server_handled_total", "INTERNAL"): 1.0,
        ("grpc_server_errors_total", ""): 2.0,
        ("grpc_server_handling_seconds_count", ""): 3.0,
    }
    for shape in SHAPES:
        found = samples(text.decode(), f"/{SERVICE}/{shape}")
        assert {key: found.get(key) for key in expected} == expected, shape
        assert found[("grpc_server_handling_seconds_sum", "")] > 0, shape


class Recorder(Piece):
    """Notes when it begins and ends, and the status the call ended with."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def begin(self, call: Call, ctx: Any) -> None:
        self.log.append(f"begin {self.name}")

    def end(self, call: Call) -> None:
        self.log.append(f"end {self.name} {call.code.name}")


class Ending(Piece):
    """Has only an `end` hook."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def end(self, call: Call) -> None:
        self.log.append("end only")


class FakeContext:
    """The parts of a servicer context the interceptor reads, and `abort`."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str, metadata: Any = ()) -> None:
        raise aio.AbortError()


class Details(grpc.HandlerCallDetails):
    method = "/x.v1.X/Collect"
    invocation_metadata = ()


async def test_pieces_begin_in_order_and_end_in_reverse_after_the_error_is_mapped() -> None:
    log: list[str] = []
    interceptor = RequestInterceptor([Recorder("a", log), Ending(log), Recorder("b", log)])

    async def missing(requests: Any, ctx: Any) -> Any:
        raise NotFound("widget", "w1")

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return grpc.stream_unary_rpc_method_handler(missing)

    handler = await interceptor.intercept_service(continuation, Details())
    assert handler.request_streaming and not handler.response_streaming
    with pytest.raises(aio.AbortError):
        await handler.stream_unary(iter(()), FakeContext())
    assert log == ["begin a", "begin b", "end b NOT_FOUND", "end only", "end a NOT_FOUND"]
