"""Every ``/metrics`` sculpt serves is read by both of ``prometheus_client``'s parsers, as a Prometheus
server and an OpenMetrics scraper would: the API's (real uvicorn, a loop that ran and morphed) and the demo
app's (a real ``python -m sculpt.demoapp`` process). Each family has its HELP/TYPE once and its samples
under it; label values come back unescaped."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from sculpt.app.api import create_app, serve
from sculpt.app.api_metrics import metrics_text
from sculpt.demoapp.server import AppState, spawn
from sculpt.loop.service import SculptorService
from tests.sculptor.fakes import ConfidentForecast, run, service

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
ODD = 'we"b\\1\nx'  # a stack name that needs every escape the text format has


def families(text: str, parser: Any) -> dict[str, Any]:
    """Family name -> family, asserting each has samples and no name repeats (a repeated HELP/TYPE would
    show as a second family of the same name)."""
    out: dict[str, Any] = {}
    for fam in parser(text):
        assert fam.name not in out, f"family {fam.name} appears twice"
        assert fam.samples, f"family {fam.name} ({fam.type}) has no samples"
        assert fam.type != "unknown", f"samples of {fam.name} are outside their family"
        out[fam.name] = fam
    return out


def one_type_line_each(text: str) -> None:
    names = re.findall(r"^# TYPE (\S+) ", text, flags=re.M)
    assert len(names) == len(set(names)) and names
    helps = re.findall(r"^# HELP (\S+) ", text, flags=re.M)
    assert helps == names  # HELP then TYPE, once per family


def value(fam: Any, sample: str, **labels: str) -> float:
    hits = [s.value for s in fam.samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (sample, labels, fam.samples)
    return float(hits[0])


SCULPT_FAMILIES = {"sculpt_fleet", "sculpt_ticks", "sculpt_warnings", "sculpt_last_tick_duration_seconds",
                   "sculpt_last_model_duration_seconds", "sculpt_decisions", "sculpt_migrations",
                   "sculpt_predicted_cpu_cores", "sculpt_confidence", "sculpt_shape_probability",
                   "sculpt_cost_usd_per_hour"}


@pytest.fixture
def morphed() -> SculptorService:
    """Two fleets: one that morphed (demand above its shape, a confident model), one with an odd name."""
    svc, fleet, source, act, clock = service(predictor=ConfidentForecast(1.2))
    source.cpu = 1.2
    run(svc, clock, 5)
    assert act.calls, "the loop was expected to morph the fleet up"
    return svc


@pytest.fixture
def api(morphed: SculptorService) -> Iterator[tuple[str, dict[str, SculptorService]]]:
    quiet, _, _, _, clock = service(mode="recommend")
    run(quiet, clock, 3)
    services = {"web": morphed, ODD: quiet}
    server = serve(create_app(services, token="t"), "127.0.0.1:0")
    try:
        yield f"http://{server.address}", services
    finally:
        server.stop()


def check_sculpt(fams: dict[str, Any], services: dict[str, SculptorService]) -> None:
    info_name = "sculpt_fleet" if "sculpt_fleet" in fams else "sculpt_fleet_info"
    assert SCULPT_FAMILIES - {"sculpt_fleet"} <= set(fams) and info_name in fams
    web = services["web"]
    assert fams["sculpt_ticks"].type == "counter"
    assert value(fams["sculpt_ticks"], "sculpt_ticks_total", stack="web") == web.counters["ticks"] == 5
    assert value(fams["sculpt_ticks"], "sculpt_ticks_total", stack=ODD) == 3  # unescaped by the parser
    assert value(fams[info_name], "sculpt_fleet_info", stack="web", mode="auto", shape=web.spec.shape) == 1
    for result, n in web.counters["migrations"].items():
        assert value(fams["sculpt_migrations"], "sculpt_migrations_total", stack="web", result=result) == n
    assert value(fams["sculpt_decisions"], "sculpt_decisions_total", stack="web",
                 decision="migrate") == web.counters["decisions"]["migrate"]
    assert web.last is not None
    tick_s = value(fams["sculpt_last_tick_duration_seconds"], "sculpt_last_tick_duration_seconds", stack="web")
    assert tick_s == pytest.approx(web.last.tick_ms / 1000.0)
    slot = web.last.instances[0].slot
    assert value(fams["sculpt_predicted_cpu_cores"], "sculpt_predicted_cpu_cores", stack="web", instance=slot,
                 quantile="0.95") == pytest.approx(web.last.instances[0].forecast_p95)
    assert sum(s.value for s in fams["sculpt_shape_probability"].samples
               if s.labels["stack"] == "web") == pytest.approx(1.0, abs=0.05)


def test_api_metrics_parse_as_prometheus_text(api: tuple[str, dict[str, SculptorService]]) -> None:
    url, services = api
    r = httpx.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    one_type_line_each(r.text)
    fams = families(r.text, parse_text)
    check_sculpt(fams, services)
    assert fams["sculpt_fleet_info"].type == "gauge"  # the text format has no info type


def test_api_metrics_parse_as_openmetrics_when_asked(api: tuple[str, dict[str, SculptorService]]) -> None:
    url, services = api
    r = httpx.get(f"{url}/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    fams = families(r.text, parse_openmetrics)
    check_sculpt(fams, services)
    assert fams["sculpt_fleet"].type == "info" and fams["sculpt_ticks"].type == "counter"


def test_no_family_is_empty_before_the_first_tick() -> None:
    """A fleet that has not ticked has no forecast: those families are left out, not served empty."""
    svc, *_ = service()
    text = metrics_text({"web": svc})
    fams = families(text, parse_text)
    assert "sculpt_predicted_cpu_cores" not in fams and "sculpt_ticks" in fams
    assert "sculpt_predicted_cpu_cores" not in text


def get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode()
    finally:
        conn.close()


@pytest.mark.e2e
def test_demo_app_metrics_parse_with_both_parsers(tmp_path: Path) -> None:
    proc, port = spawn(tmp_path / "a", 'demo-"a"\\1')
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(3):
            conn.request("PUT", f"/kv/k{i}", body=b"v")
            conn.getresponse().read()
        conn.close()
        status, ctype, text = get(port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        one_type_line_each(text)
        status, ctype, om = get(port, "/metrics", OPENMETRICS)
        assert status == 200 and ctype.startswith("application/openmetrics-text")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for fams in (families(text, parse_text), families(om, parse_openmetrics)):
        requests = fams["demoapp_requests"]
        assert requests.type == "counter"
        assert value(requests, "demoapp_requests_total", endpoint="kv", code="200") == 3
        assert value(fams["demoapp_keys"], "demoapp_keys") == 3
        hist = fams["demoapp_request_duration_seconds"]
        assert hist.type == "histogram"
        assert value(hist, "demoapp_request_duration_seconds_bucket", le="+Inf") == value(
            hist, "demoapp_request_duration_seconds_count") >= 3
        assert value(fams["process_cpu_seconds"], "process_cpu_seconds_total") > 0
        assert value(fams["process_resident_memory_bytes"], "process_resident_memory_bytes") > 1e6
    info = families(om, parse_openmetrics)["demoapp"]
    assert info.type == "info" and info.samples[0].labels == {"instance_id": 'demo-"a"\\1'}


def test_sculpt_reads_the_demo_apps_exposition(tmp_path: Path) -> None:
    """``sculpt.metrics.promtext`` (what ``LocalSource`` scrapes with) still reads what the app now writes."""
    from sculpt.metrics import promtext

    st = AppState(tmp_path, "i1")
    try:
        st.put("k", "v")
        st.metrics.observe("kv", 200, 0.003)
        st.metrics.observe("kv", 200, 0.2)
        fams = promtext.parse(st.metrics_text())
    finally:
        st.wal.close()
    assert promtext.total(fams, "demoapp_requests_total") == 2
    assert promtext.total(fams, "process_resident_memory_bytes") > 1e6
    q = promtext.histogram_quantile(0.5, promtext.buckets_of(fams, "demoapp_request_duration_seconds"))
    assert 0.0025 <= q <= 0.005
