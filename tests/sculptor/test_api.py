"""The HTTP API over real HTTP: uvicorn on a free 127.0.0.1 port, an httpx client. The service behind it
runs the real loop with test doubles only at the metric-source/agent/orchestrator boundaries (fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sculpt.app.api import create_app, parse_address, serve
from sculpt.app.api_metrics import metrics_text
from sculpt.domain.errors import ConfigError
from sculpt.domain.spec import FleetSpec
from sculpt.loop.service import SculptorService
from tests.sculptor.fakes import run, service

TOKEN = "s3cret-token"


@pytest.fixture
def api() -> Iterator[tuple[str, SculptorService, list[FleetSpec]]]:
    svc, fleet, source, act, clock = service()
    run(svc, clock, 90)
    saved: list[FleetSpec] = []

    def persist(spec: FleetSpec) -> int:
        saved.append(spec)
        return 41 + len(saved)

    server = serve(create_app({"web": svc}, token=TOKEN, persist={"web": persist}), "127.0.0.1:0")
    try:
        yield f"http://{server.address}", svc, saved
    finally:
        server.stop()


def test_reads(api: tuple[str, SculptorService, Any]) -> None:
    url, svc, _ = api
    with httpx.Client(base_url=url, timeout=10) as c:
        fleets = c.get("/v1/fleets").json()
        assert fleets == [{"name": "web", "mode": "auto", "shape": "std-0.5c-512m", "decision": "hold",
                           "confidence": pytest.approx(svc.plan().confidence)}]
        one = c.get("/v1/fleets/web").json()
        assert one["instances"][0]["slot"] == "web-0" and one["instances"][0]["forecast"]["cpu_p95"] > 0
        assert one["last_decision"]["decision"] == "hold" and set(one["distribution"]) <= {
            "std-0.25c-256m", "std-0.5c-512m", "std-1c-1024m", "std-2c-2048m"}
        plan = c.get("/v1/fleets/web/plan").json()
        assert set(plan) >= {"stack", "decision", "actions", "reason", "expected_monthly_delta_usd", "confidence",
                             "distribution", "policy"}
        assert c.get("/v1/fleets/nope").status_code == 404
        assert c.get("/openapi.json").json()["info"]["title"] == "sculpt"
        text = c.get("/metrics").text
    assert 'sculpt_ticks_total{stack="web"} 90.0' in text
    for name in ("sculpt_last_tick_duration_seconds", "sculpt_predicted_cpu_cores", "sculpt_confidence",
                 "sculpt_decisions_total", "sculpt_cost_usd_per_hour"):
        assert f"# TYPE {name}" in text
    # a family with no sample yet is left out (no morph was asked for): tests/sculptor/test_exposition.py
    assert ("sculpt_migrations_total" in text) == bool(svc.counters["migrations"])


@pytest.mark.parametrize(("headers", "said", "challenge"), [
    ({}, "no bearer token", "Bearer"),
    ({"Authorization": "Bearer wrong"}, "the bearer token is wrong", 'Bearer error="invalid_token"'),
    ({"Authorization": f"Basic {TOKEN}"}, "not 'Bearer <token>'", 'Bearer error="invalid_token"')])
def test_writes_need_the_token(api: tuple[str, SculptorService, list[FleetSpec]], headers: dict[str, str],
                               said: str, challenge: str) -> None:
    url, svc, saved = api
    r = httpx.put(f"{url}/v1/fleets/web/requirements", json={"profile": "low-latency"}, headers=headers, timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"] == challenge
    assert said in r.json()["error"] and "$SCULPT_API_TOKEN" in r.json()["fix"]
    assert svc.spec.profile == "general" and saved == []


def test_requirements_are_validated_applied_and_persisted(api: tuple[str, SculptorService, list[FleetSpec]]) -> None:
    url, svc, saved = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=10, headers=auth) as c:
        r = c.put("/v1/fleets/web/requirements", json={"profile": "low-latency", "slo": {"max_utilisation": 0.5},
                                                       "budget_usd_per_hour": 1.5})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 42 and r.json()["requirements"]["profile"] == "low-latency"
        assert svc.spec.profile == "low-latency" and svc.cost.utilisation_cap == 0.5
        assert saved[-1].budget_usd_per_hour == 1.5 and saved[-1].slo.p95_latency_ms == 250.0
        bad = c.put("/v1/fleets/web/requirements", json={"slo": {"max_utilisation": 3}})
        assert bad.status_code == 422 and "max_utilisation" in bad.text
        assert c.put("/v1/fleets/web/requirements", json={"profile": "fast"}).status_code == 422
        assert c.put("/v1/fleets/web/requirements", json={"colour": "red"}).status_code == 422
    assert svc.cost.utilisation_cap == 0.5 and len(saved) == 1


def test_a_profile_change_applies_live_without_forgetting(
        api: tuple[str, SculptorService, list[FleetSpec]]) -> None:
    from sculpt.forecast.guard import ProfileHandover

    url, svc, _saved = api
    clock = svc.clock
    before = svc.plan().confidence
    assert before > 0 and svc.model_profile() == "general"
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = c.put("/v1/fleets/web/requirements", json={"profile": "batch"})
        assert r.status_code == 200, r.text
        assert any("applied live" in n for n in r.json()["notes"])
        assert c.get("/v1/fleets/web").json()["model_profile"] == "general->batch"
        # the old model keeps forecasting: the next tick is as confident as before, not back to zero
        tick = run(svc, clock, 1)[0]  # type: ignore[arg-type]
        assert tick.plan.confidence >= before and isinstance(svc.guard.primary, ProfileHandover)
        # the new profile's model takes over once it is past the confidence floor
        for _ in range(40):
            run(svc, clock, 1, step_s=3600.0)  # type: ignore[arg-type]
            if not isinstance(svc.guard.primary, ProfileHandover):
                break
        assert c.get("/v1/fleets/web").json()["model_profile"] == "batch"
        assert getattr(svc.guard.primary, "profile", None) == "batch"
        assert svc.plan().confidence >= svc.cost.confidence_floor
        # the checkpoint is the new profile's model
        assert isinstance(svc.guard.dumps(), bytes)


def test_metrics_text_is_valid_prometheus_exposition() -> None:
    from sculpt.metrics import promtext

    svc, fleet, source, act, clock = service()
    source.cpu = 0.2
    run(svc, clock, 70)
    fams = promtext.parse(metrics_text({"web": svc}))
    assert promtext.total(fams, "sculpt_ticks_total") == 70.0


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_address("9000") == ("127.0.0.1", 9000)
    with pytest.raises(ConfigError):
        parse_address("host:http")


def test_a_busy_port_is_one_error_naming_it(capfd: pytest.CaptureFixture[str]) -> None:
    """Bound before uvicorn starts: no uvicorn ``ERROR: [Errno 98]`` log line beside sculpt's own."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as e:
            serve(create_app({}, token=TOKEN), f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in e.value.message and "in use" in e.value.message
    assert "--api" in (e.value.fix or "")
    out, err = capfd.readouterr()
    assert "Errno" not in out + err and "ERROR" not in out + err


class CloudEngineDouble:
    """Stands in for the pulumi engine (a process boundary: the `pulumi` CLI): its commands are single
    stack updates, so ``up`` takes no ``kind``."""

    def __init__(self) -> None:
        self.ups: list[tuple[object, str]] = []

    def current(self) -> None:
        return None

    def stepwise(self) -> None:
        return None

    def up(self, fleet: object, message: str = "") -> int:
        self.ups.append((fleet, message))
        return 7


def test_a_requirements_change_on_a_cloud_engine_is_a_plain_stack_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """``watch --api`` on a pulumi stack: the change is one stack update (the local engine's ``kind`` would
    raise TypeError there)."""
    from sculpt.app.api import serve_in_thread

    monkeypatch.setenv("SCULPT_API_TOKEN", TOKEN)
    svc, _fleet, _source, _act, clock = service()
    run(svc, clock, 3)
    engine = CloudEngineDouble()
    server = serve_in_thread(svc, "127.0.0.1:0", engine=engine)  # type: ignore[arg-type]
    try:
        r = httpx.put(f"http://{server.address}/v1/fleets/web/requirements", json={"aggressiveness": 0.7},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 7
        assert len(engine.ups) == 1 and engine.ups[0][1] == "requirements changed through the API"
    finally:
        server.stop()
