"""The HTTP endpoint Pact's verifier calls on the provider side: provider states and messages.

pact-python's built-in state callback answers with an empty body, but Pact's provider-state
generators (`${userId}` in a path, a header or a body) need the values a setup produced; and its
built-in message relay leaves its socket open. This one endpoint, on 127.0.0.1, does both.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# A state's setup: takes the state's parameters, returns values for provider-state generators.
StateSetup = Callable[[Mapping[str, Any]], Mapping[str, str] | None]
# A message producer: takes the interaction's description and the verifier's request (its
# provider states and, for a synchronous message, the request message); returns the contents
# and metadata of the provider's message.
Produce = Callable[[str, Mapping[str, Any]], tuple[bytes, Mapping[str, str]]]

STATE_PATH = "/pact/state"
MESSAGE_PATH = "/pact/message"


class ProviderHooks:
    """Runs provider-state setups and produces messages for pact-python's Verifier."""

    def __init__(self, setups: Mapping[str, StateSetup], produce: Produce | None = None) -> None:
        self._setups = dict(setups)
        self.produce = produce
        self.values: dict[str, str] = {}  # from the setups so far, for message producers
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                headers: dict[str, str] = {"content-type": "application/json"}
                if self.path.startswith(MESSAGE_PATH):
                    status, payload, headers = hooks.message(request)
                else:
                    status, body = hooks.state(request)
                    payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def state_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{STATE_PATH}"

    def state(self, request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        state = str(request.get("state", ""))
        if request.get("action", "setup") != "setup" or not state:
            return 200, {}
        setup = self._setups.get(state)
        if setup is None:
            known = ", ".join(sorted(self._setups))
            return 500, {"error": f"no setup for provider state {state!r}; known: {known}"}
        try:
            values = dict(setup(request.get("params") or {}) or {})
        except Exception as error:  # reported by Pact against the interaction
            return 500, {"error": f"provider state {state!r} failed: {error!r}"}
        self.values.update(values)
        return 200, dict(values)

    def message(self, request: Mapping[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        description = str(request.get("description", ""))
        if self.produce is None:
            return 500, b"no message producer", {"content-type": "text/plain"}
        try:
            contents, metadata = self.produce(description, request)
        except Exception as error:  # reported by Pact against the interaction
            return 500, f"{description}: {error!r}".encode(), {"content-type": "text/plain"}
        encoded = base64.b64encode(json.dumps(dict(metadata)).encode()).decode()
        content_type = metadata.get("contentType", "application/json")
        return 200, contents, {"content-type": content_type, "pact-message-metadata": encoded}

    def __enter__(self) -> ProviderHooks:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)
