"""The cheap telemetry paths: trace context without spans, and the direct access log."""

from __future__ import annotations

import json
import logging

import grpc
import pytest
from opentelemetry import trace

from services.runtime.telemetry import AccessLog, JsonFormatter, ServerTracing

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{PARENT_TRACE}-b7ad6b7169203331-01"


def test_without_recording_the_callers_trace_continues_and_is_detached_after() -> None:
    tracing = ServerTracing(record=False)
    before = trace.get_current_span().get_span_context()
    token, span = tracing.start("/shop.x.v1.X/Get", {"traceparent": TRACEPARENT})
    current = trace.get_current_span().get_span_context()
    assert span is None and format(current.trace_id, "032x") == PARENT_TRACE
    assert current.trace_flags.sampled  # a sampled caller stays sampled downstream
    ServerTracing.finish(token, span, grpc.StatusCode.OK.value[0], "OK")
    assert trace.get_current_span().get_span_context() == before


def test_without_a_caller_a_fresh_unsampled_trace_is_made_current() -> None:
    tracing = ServerTracing(record=False)
    token, span = tracing.start("/shop.x.v1.X/Get", {})
    current = trace.get_current_span().get_span_context()
    assert current.is_valid and not current.trace_flags.sampled
    assert not trace.get_current_span().is_recording()
    ServerTracing.finish(token, span, grpc.StatusCode.OK.value[0], "OK")


def test_recording_makes_a_server_span_named_by_the_method() -> None:
    token, span = ServerTracing(record=True).start("/shop.x.v1.X/Get", {})
    assert span is not None and span.is_recording()
    ServerTracing.finish(token, span, grpc.StatusCode.NOT_FOUND.value[0], "NOT_FOUND")
    assert not span.is_recording()  # ended


def test_access_log_lines_have_the_json_formatters_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    AccessLog("catalog").write("/shop.x.v1.X/Get", "OK", 0.0012345, 'id "quoted"', PARENT_TRACE)
    line = json.loads(capsys.readouterr().err)
    record = logging.makeLogRecord(
        {
            "name": "shop.access",
            "levelname": "INFO",
            "msg": "rpc",
            "rpc_method": "/shop.x.v1.X/Get",
            "grpc_code": "OK",
            "duration_ms": 1.234,
            "request_id": 'id "quoted"',
            "trace_id": PARENT_TRACE,
        }
    )
    expected = json.loads(JsonFormatter("catalog").format(record))
    assert line.keys() == expected.keys()
    assert {k: v for k, v in line.items() if k not in {"ts", "duration_ms"}} == {
        k: v for k, v in expected.items() if k not in {"ts", "duration_ms"}
    }
    assert line["duration_ms"] == pytest.approx(1.234, abs=0.001)
