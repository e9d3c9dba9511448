"""A throwaway HTTP file server on 127.0.0.1 for download tests (no real network).

Serves in-memory files with Range support and records the Range header of every request.
Modes per server: 'normal'; 'drop' (announce the full length, send `drop_after` bytes, close);
'ignore_range' (always answer 200 with the whole file).
"""

from __future__ import annotations

import http.server
import re
import threading
from dataclasses import dataclass, field

_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class ServerState:
    """What the handler serves and what it saw; tests mutate `mode` between calls."""

    files: dict[str, bytes]
    mode: str = "normal"            # 'normal' | 'drop' | 'ignore_range'
    drop_after: int = 0             # bytes sent before the connection is cut in 'drop' mode
    ranges: list[str | None] = field(default_factory=list)  # Range header per request
    statuses: list[int] = field(default_factory=list)        # status sent per request


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serve ServerState.files at /<name>."""

    state: ServerState  # set on a per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        return

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state = self.state
        body = state.files.get(self.path.lstrip("/"))
        range_header = self.headers.get("Range")
        state.ranges.append(range_header)
        if body is None:
            self._reply(404, b"", {})
            return
        start = 0
        match = _RANGE.match(range_header or "")
        if match and state.mode != "ignore_range":
            start = int(match.group(1))
            if start >= len(body):
                self._reply(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
        headers = {"Content-Length": str(len(body) - start)}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        payload = body[start:]
        if state.mode == "drop":
            payload = payload[: state.drop_after]
            self.close_connection = True
        self._reply(206 if start else 200, payload, headers)

    def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        """Send a status line, headers and (part of) a body."""
        self.state.statuses.append(status)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


class LoopbackServer:
    """Context manager running a ThreadingHTTPServer on an ephemeral 127.0.0.1 port."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.state = ServerState(files=dict(files))
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll interval keeps shutdown() (once per test) from costing 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, name: str) -> str:
        """Return the URL of a served file."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
