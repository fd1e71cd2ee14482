"""Malformed Prometheus answers (issue 14) over real HTTP: each is one ``ProviderError`` line naming what
was wrong — never an AttributeError/TypeError traceback in ``plan`` or ``watch --once``. A real local
server (http.server in a thread) answers whatever body the test sets; a raw socket server answers bytes
that are not HTTP at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.metrics.prometheus import PrometheusSource
from tests.helpers import answering_once, serving


class Answer(BaseHTTPRequestHandler):
    """Answers every GET with the class's ``status`` and ``body``."""

    status = 200
    body = b"{}"

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served() -> Iterator[tuple[str, type[Answer]]]:
    handler = type("Handler", (Answer,), {})
    with serving(handler) as url:
        yield url, handler


def matrix(*series: Any) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": list(series)}}).encode()


def _read(url: str) -> dict[str, Any]:
    return PrometheusSource(url, {"cpu_cores": "q"}, timeout_s=5).read(["web-0"], 100, 110, 10)


@pytest.mark.parametrize(("body", "says"), [
    (json.dumps({"status": "success", "data": []}).encode(), "'data': [] (not an object)"),
    (json.dumps({"status": "success", "data": None}).encode(), "'data': None (not an object)"),
    (json.dumps({"status": "success"}).encode(), "'data': None (not an object)"),
    (json.dumps({"status": "success", "data": {"resultType": "matrix", "result": "x"}}).encode(),
     "'result' that is not a list"),
    (matrix("web-0"), "malformed series 0 to 'q': 'web-0' is not an object"),
    (matrix({"metric": {"instance": "web-0"}, "values": None}), "'values' is None, not a list"),
    (matrix({"metric": {"instance": "web-0"}, "values": [[100]]}), "the point [100] is not [time, value]"),
    (matrix({"metric": {"instance": "web-0"}, "values": [100, "1"]}), "the point 100 is not [time, value]"),
    (matrix({"metric": {"instance": "web-0"}, "values": [["soon", "1"]]}), "timestamp 'soon' is not a finite"),
    (matrix({"metric": {"instance": "web-0"}, "values": [[None, "1"]]}), "timestamp None is not a finite"),
    (matrix({"metric": {"instance": "web-0"}, "values": [[True, "1"]]}), "timestamp True is not a finite"),
    (b'{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {"instance": "web-0"}, '
     b'"values": [[Infinity, "1"]]}]}}', "timestamp inf is not a finite"),
    (b'{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {"instance": "web-0"}, '
     b'"values": [[1e999999, "1"]]}]}}', "timestamp inf is not a finite"),
    (matrix({"metric": "web-0", "values": []}), "'metric' is not an object"),
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    (b"[" * 200_000, "not JSON"),
    (b"[]", "refused 'q': []"),
    (json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode(),
     "answered a vector, not a range matrix"),
])
def test_a_malformed_answer_is_one_provider_error(served: tuple[str, type[Answer]], body: bytes, says: str) -> None:
    url, handler = served
    handler.body = body
    with pytest.raises(ProviderError) as e:
        _read(url)
    text = str(e.value)
    assert says in text and "\n" not in text and "To fix:" in text, text


def test_http_errors_carry_prometheus_reason(served: tuple[str, type[Answer]]) -> None:
    url, handler = served
    handler.status, handler.body = 422, json.dumps({"status": "error", "error": "bad\nrange"}).encode()
    with pytest.raises(ProviderError, match=r"answered HTTP 422 to 'q' \(bad\\nrange\)"):
        _read(url)
    handler.status, handler.body = 503, b"down for maintenance"
    with pytest.raises(ProviderError, match=r"answered HTTP 503 to 'q'. To fix"):
        _read(url)


def test_odd_values_and_labels_are_no_reading_not_a_crash(served: tuple[str, type[Answer]]) -> None:
    url, handler = served
    handler.body = matrix({"metric": {"instance": ["web-0"]}, "values": [[100, "1"]]},  # unhashable label
                          {"metric": {"instance": "web-0"}, "values": [[100, "NaN"], [110, {"v": 1}], ["120", "2"]]})
    out = _read(url)
    got = [(s.time, s.values["cpu_cores"]) for s in out["web-0"]]
    assert got[0][0] == 100 and got[0][1] != got[0][1]  # NaN: no reading at 100
    assert got[1][0] == 110 and got[1][1] != got[1][1] and got[2] == (120.0, 2.0)


@pytest.mark.parametrize("reply", [b"HELLO\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", b""])
def test_an_answer_that_is_not_http_is_one_provider_error(reply: bytes) -> None:
    with answering_once(reply) as url, pytest.raises(ProviderError,
                                                     match="cannot read from Prometheus|not JSON|truncated") as e:
        _read(url)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "127.0.0.1:9090", "http://[::1", "http://a\nb"])
def test_only_http_urls_are_sources(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        PrometheusSource(url)
