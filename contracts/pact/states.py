"""The provider-state server used by verifications: runs a state's setup, returns its values.

pact-python's built-in state callback answers with an empty body; Pact's provider-state
generators (`${userId}` in a path, a header or a body) need the values the setup produced, so
verifications register this server's URL instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# A state's setup: takes the state's parameters, returns values for provider-state generators.
StateSetup = Callable[[Mapping[str, Any]], Mapping[str, str] | None]


class StateServer:
    """An HTTP endpoint on 127.0.0.1 that Pact calls before each interaction."""

    def __init__(self, setups: Mapping[str, StateSetup]) -> None:
        self._setups = dict(setups)
        self.values: dict[str, str] = {}  # from the most recent setup, for message handlers
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                status, body = server.apply(request)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/pact/state"

    def apply(self, request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
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

    def __enter__(self) -> StateServer:
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
