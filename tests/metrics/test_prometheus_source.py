"""PrometheusSource over real HTTP against a fake Prometheus server (a test double at the network
boundary, named as such)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

from sculpt.domain.errors import ProviderError
from sculpt.metrics.prometheus import PrometheusSource
from tests.helpers import serving


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query_range with two series per query; 'bad' in the query gives an error."""

    seen: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:  # noqa: N802
        q = parse_qs(urlparse(self.path).query)
        FakePrometheus.seen.append(q)
        expr = q["query"][0]
        if "bad" in expr:
            body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
            code = 400
        else:
            base = 2.0 if "cpu" in expr else 0.5
            body = {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"instance": "web-0"}, "values": [[100, str(base)], [110, str(base + 1)]]},
                {"metric": {"instance": "other"}, "values": [[100, "9"]]},
            ]}}
            code = 200
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prom_url():
    with serving(FakePrometheus) as url:
        yield url


def test_reads_and_merges_series_per_instance(prom_url: str) -> None:
    src = PrometheusSource(prom_url, {"cpu_cores": "cpu_q", "mem_gib": "mem_q"})
    out = src.read(["web-0", "web-1"], 100, 110, 10)
    assert out["web-1"] == []
    assert [(s.time, s.values["cpu_cores"], s.values["mem_gib"]) for s in out["web-0"]] == [(100, 2.0, 0.5), (110, 3.0, 1.5)]
    assert FakePrometheus.seen[-1]["step"] == ["10"]


def test_query_error_and_server_down_are_provider_errors(prom_url: str) -> None:
    with pytest.raises(ProviderError, match="HTTP 400"):
        PrometheusSource(prom_url, {"cpu_cores": "bad_q"}).read(["web-0"], 0, 1, 1)
    with pytest.raises(ProviderError, match="cannot read from Prometheus"):
        PrometheusSource("http://127.0.0.1:9", timeout_s=0.5).read(["web-0"], 0, 1, 1)
