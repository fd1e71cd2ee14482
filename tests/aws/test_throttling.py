"""Throttled EC2 calls are retried: a throttling HTTP proxy (the network boundary) in front of moto."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from sculpt.catalog import load_catalog
from sculpt.catalog.refresh import refresh_aws

THROTTLED = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
             b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>")


class ThrottlingProxy(ThreadingHTTPServer):
    """Answers the first ``throttle`` requests as EC2 does when throttling, forwards the rest to moto."""

    daemon_threads = True

    def __init__(self, upstream: str, throttle: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlparse(upstream)
        self.throttle = throttle
        self.throttled = 0
        self.forwarded = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: ThrottlingProxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            throttle = self.server.throttled < self.server.throttle
            if throttle:
                self.server.throttled += 1
            else:
                self.server.forwarded += 1
        if throttle:
            self.send_response(503)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(THROTTLED)))
            self.end_headers()
            self.wfile.write(THROTTLED)
            return
        conn = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=60)
        conn.request("POST", self.path, body=body, headers={k: v for k, v in self.headers.items()})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def throttling_proxy(moto_url: str) -> Iterator[ThrottlingProxy]:
    proxy = ThrottlingProxy(moto_url, throttle=1)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)


def test_refresh_retries_throttled_calls_and_completes(throttling_proxy: ThrottlingProxy) -> None:
    host, port = throttling_proxy.server_address[:2]
    report = refresh_aws(["eu-west-2"], load_catalog("aws"), endpoint_url=f"http://{host}:{port}")
    assert throttling_proxy.throttled == 1
    assert throttling_proxy.forwarded >= 3  # offerings, types, spot prices
    assert any(r["shape"] == "m6i.large" for r in report.rows)
