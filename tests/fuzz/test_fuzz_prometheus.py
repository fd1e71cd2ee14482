"""Fuzz the Prometheus source (issue 14): response bodies, statuses and raw bytes served by a real local HTTP
server (http.server in a thread) through ``PrometheusSource.read``. Each answer is usable readings (finite
times, float values, only the instances asked for) or one ``ProviderError`` line with a fix — never another
exception. Bounded to stay well under 40 s."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sculpt.domain.errors import ProviderError
from sculpt.metrics.prometheus import PrometheusSource
from tests.helpers import answering_once, serving

INSTANCES = ["web-0", "web-1"]



class Served(BaseHTTPRequestHandler):
    status = 200
    body = b""

    def do_GET(self) -> None:  # noqa: N802
        cls = type(self)
        self.send_response(cls.status)
        self.send_header("Content-Length", str(len(cls.body)))
        self.end_headers()
        self.wfile.write(cls.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, type[Served]]]:
    handler = type("Handler", (Served,), {})
    with serving(handler) as url:
        yield url, handler


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=8),
                        st.sampled_from(["NaN", "+Inf", "-Inf", "1.5", "web-0", "web-1", "1e999", ""]))
json_any = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=10)
point = st.one_of(st.tuples(st.one_of(st.integers(0, 2**40), st.floats(), json_scalar), json_scalar).map(list),
                  json_any)
series = st.one_of(
    st.fixed_dictionaries({"metric": st.one_of(st.fixed_dictionaries({"instance": st.one_of(
        st.sampled_from(INSTANCES + ["other"]), json_any)}), json_any),
        "values": st.one_of(st.lists(point, max_size=4), json_any)}),
    json_any)
data = st.one_of(
    st.fixed_dictionaries({"resultType": st.one_of(st.just("matrix"), json_scalar),
                           "result": st.one_of(st.lists(series, max_size=3), json_any)}),
    json_any)
# answers that are nearly right: good series with odd values (what a real server answers most of the time)
good_point = st.tuples(st.one_of(st.integers(90, 140), st.floats(90, 140), st.sampled_from(["100", "110.5"])),
                       st.one_of(st.sampled_from(["0.5", "NaN", "+Inf", "2", "x"]), json_scalar)).map(list)
good_series = st.fixed_dictionaries({"metric": st.fixed_dictionaries({"instance": st.sampled_from(
    INSTANCES + ["other"])}), "values": st.lists(good_point, max_size=5)})
nearly = st.fixed_dictionaries({"status": st.just("success"), "data": st.fixed_dictionaries({
    "resultType": st.just("matrix"), "result": st.lists(st.one_of(good_series, good_series, series), max_size=4)})})
body = st.one_of(
    nearly, nearly,
    st.fixed_dictionaries({"status": st.one_of(st.just("success"), json_scalar), "data": data}),
    json_any)


def _encode(obj: Any, how: int) -> bytes:
    text = json.dumps(obj, allow_nan=True)  # NaN/Infinity: what a sloppy exporter writes
    return [text.encode(), text.encode()[: max(0, len(text) // 2)], text.encode("utf-16")][how]


def _check(src: PrometheusSource) -> None:
    try:
        out = src.read(INSTANCES, 100.0, 130.0, 10.0)
    except ProviderError as e:
        event("a one-line ProviderError")
        text = str(e)
        assert "\n" not in text and "\r" not in text and e.fix, text
        return
    event("readings" if any(out.values()) else "no samples")
    assert set(out) == set(INSTANCES)
    for samples in out.values():
        times = [s.time for s in samples]
        assert times == sorted(times) and all(math.isfinite(t) for t in times)
        for s in samples:
            assert all(isinstance(v, float) for v in s.values.values())


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=body, how=st.sampled_from([0, 0, 0, 1, 2]), status=st.sampled_from([200, 200, 200, 400, 404, 500, 503]))
def test_fuzz_prometheus_bodies(server: tuple[str, type[Served]], obj: Any, how: int, status: int) -> None:
    url, handler = server
    handler.status, handler.body = status, _encode(obj, how)
    _check(PrometheusSource(url, {"cpu_cores": "cpu", "mem_gib": "mem"}, timeout_s=5))


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=st.one_of(st.binary(max_size=200),
                       st.builds(lambda head, rest: b"HTTP/1.1 " + head + b"\r\n" + rest,
                                 st.sampled_from([b"200 OK", b"200", b"999 X", b"abc", b"200 OK\r\nContent-Length: 9"]),
                                 st.binary(max_size=80))))
def test_fuzz_prometheus_raw_answers(reply: bytes) -> None:
    """Bytes that are not (quite) HTTP, then the connection closes."""
    with answering_once(reply) as url:
        _check(PrometheusSource(url, {"cpu_cores": "cpu"}, timeout_s=5))
