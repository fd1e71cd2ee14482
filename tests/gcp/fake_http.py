"""What the fake Google APIs share: a threaded HTTP server on 127.0.0.1 and a JSON reply."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handle = Callable[[BaseHTTPRequestHandler, str], None]
"""``handle(request, method)``: answers one request (``send_json``)."""


def serve(handle: Handle) -> ThreadingHTTPServer:
    """Start a server on a free loopback port whose GETs and POSTs go to ``handle``; stop it with
    ``shutdown()`` and ``server_close()``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            handle(self, "GET")

        def do_POST(self) -> None:  # noqa: N802
            handle(self, "POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def send_json(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)
