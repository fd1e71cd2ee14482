"""The local metric source measures real processes and a real /metrics endpoint."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sculpt.metrics import promtext
from sculpt.metrics.local import LocalSource, Target

BURN = "import time\nt=time.process_time()\nwhile True:\n    x=sum(i*i for i in range(1000))\n"


class _App(BaseHTTPRequestHandler):
    """A tiny app exposing Prometheus metrics whose counters grow with every scrape."""

    scrapes = 0

    def do_GET(self) -> None:  # noqa: N802
        _App.scrapes += 1
        n = _App.scrapes
        body = (
            f'http_requests_total{{code="200"}} {n * 100}\n'
            f'http_request_duration_seconds_bucket{{le="0.01"}} {n * 90}\n'
            f'http_request_duration_seconds_bucket{{le="0.1"}} {n * 100}\n'
            f'http_request_duration_seconds_bucket{{le="+Inf"}} {n * 100}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app_address():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_busy_process_is_measured_in_cores_and_app_metrics_in_rates(app_address: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        src = LocalSource(lambda: [Target("web-0", proc.pid, app_address)])
        first = src.poll()["web-0"]
        assert math.isnan(first.values["cpu_cores"])  # no interval yet: not measured, not guessed
        time.sleep(0.6)
        s = src.poll()["web-0"].values
        assert 0.1 < s["cpu_cores"] <= 1.2  # one busy thread: at most a core, clearly above idle
        assert s["mem_gib"] > 0
        assert s["rps"] > 0
        # 90 of every 100 requests in the 10 ms bucket: p95 lies in the 10-100 ms bucket
        assert 10.0 < s["latency_p95_ms"] <= 100.0
        hist = src.read(["web-0"], 0, math.inf, 1)
        assert len(hist["web-0"]) == 2
    finally:
        proc.kill()
        proc.wait()


def test_gone_process_and_dead_endpoint_are_nan_not_errors() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    src = LocalSource(lambda: [Target("web-0", proc.pid, "127.0.0.1:9")], timeout_s=0.2)
    src.poll()
    s = src.poll()["web-0"].values
    assert all(math.isnan(v) for v in s.values())


def test_histogram_quantile_matches_prometheus_semantics() -> None:
    b = [(0.1, 50.0), (0.2, 100.0), (math.inf, 100.0)]
    assert promtext.histogram_quantile(0.5, b) == pytest.approx(0.1)
    assert promtext.histogram_quantile(0.75, b) == pytest.approx(0.15)
    assert math.isnan(promtext.histogram_quantile(0.5, [(0.1, 0.0)]))
