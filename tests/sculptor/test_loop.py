"""The live loop on a FakeClock (hours in milliseconds), with test doubles only at the metric-source, agent
and orchestrator boundaries (see fakes.py): auto and recommend modes, holds on bad metrics, model
fallback, checkpoints that resume, the cooldown after a restart, spec updates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.decide.fleet import merge_plans
from sculpt.domain.clock import FakeClock, ScaledClock
from sculpt.domain.errors import ConfigError
from sculpt.domain.plan import Decision, Plan
from sculpt.forecast import make_predictor, persist
from sculpt.forecast.guard import Guarded
from sculpt.ledger import Ledger
from sculpt.loop.service import checkpoint_key
from tests.sculptor.fakes import ExplodingPredictor, run, service, spec


def test_no_history_holds_and_says_so() -> None:
    svc, fleet, source, act, clock = service()
    r = run(svc, clock, 1)[0]
    assert r.plan.decision is Decision.HOLD
    assert "no history" in r.plan.reason and r.plan.confidence == 0.0
    assert act.calls == []


def test_auto_morphs_up_when_demand_outgrows_the_shape_then_holds() -> None:
    svc, fleet, source, act, clock = service()
    source.cpu = 0.1
    run(svc, clock, 120)  # two quiet hours, one sample a minute
    assert act.calls == [] and fleet.shape == "std-0.5c-512m"
    source.cpu = 0.9
    reports = run(svc, clock, 5)
    moved = [r for r in reports if r.action is not None]
    assert len(moved) == 1, [r.plan.reason for r in reports]
    a = moved[0].action
    assert a is not None and a.result == "done" and a.from_shape == "std-0.5c-512m"
    assert fleet.shape == a.to_shape and fleet.shape != "std-0.5c-512m"
    assert moved[0].plan.decision is Decision.MIGRATE and moved[0].plan.urgent
    assert svc.spec.shape == fleet.shape  # the loop's spec follows the fleet
    assert reports[-1].instances[0].shape == fleet.shape
    assert svc.counters["migrations"] == {"done": 1}


def test_recommend_mode_reports_but_changes_nothing() -> None:
    svc, fleet, source, act, clock = service(mode="recommend")
    run(svc, clock, 120)
    source.cpu = 0.9
    reports = run(svc, clock, 5)
    acts = [r.action for r in reports if r.action is not None]
    assert acts and all(a.result == "recommended" for a in acts)
    assert fleet.shape == "std-0.5c-512m" and act.calls == []


def test_a_rolled_back_morph_is_reported_and_the_fleet_kept() -> None:
    svc, fleet, source, act, clock = service(fail=True)
    run(svc, clock, 120)
    source.cpu = 0.9
    reports = run(svc, clock, 3)
    failed = [r for r in reports if r.action is not None]
    assert failed and failed[0].action is not None and failed[0].action.result == "rolled_back"
    assert any("rolled_back" in w for w in failed[0].warnings)
    assert fleet.shape == "std-0.5c-512m" and svc.spec.shape == "std-0.5c-512m"


@pytest.mark.parametrize("bad", ["down", "nan", "negative"])
def test_bad_metrics_hold_with_a_warning_and_are_not_learned(bad: str) -> None:
    svc, fleet, source, act, clock = service()
    run(svc, clock, 120)
    before = svc.guard.primary.forecast("web#0", 3600.0).samples
    if bad == "down":
        source.down = True
    else:
        source.cpu = math.nan if bad == "nan" else -1.0
    reports = run(svc, clock, 120)  # two more hours of garbage would close two periods if learned
    assert all(r.plan.decision is Decision.HOLD for r in reports)
    assert all(r.warnings and "holding" in r.warnings[0] for r in reports)
    assert all(r.instances == [] for r in reports)
    assert svc.guard.primary.forecast("web#0", 3600.0).samples == before
    assert act.calls == []


def test_a_failing_model_falls_back_to_the_reactive_rule_and_says_so() -> None:
    svc, fleet, source, act, clock = service(predictor=ExplodingPredictor())
    run(svc, clock, 120)
    source.cpu = 0.9
    reports = run(svc, clock, 5)
    assert svc.guard.degraded and "reactive" in svc.guard.degraded
    assert any("failed" in w for w in reports[-1].warnings)
    assert reports[-1].model.endswith("->last-value")
    assert act.calls, "the reactive fallback must still upsize a fleet that runs short"


def test_checkpoint_round_trip_resumes_the_same_forecast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    led = Ledger(tmp_path / "ledger.db")
    svc, fleet, source, act, clock = service(ledger=led)
    source.cpu = 0.3
    run(svc, clock, 180)
    assert svc.checkpoint() > 0
    restored, note = persist.restore(led, checkpoint_key("web"), "river", horizon_s=3600.0)
    assert note is None
    a = svc.guard.primary.forecast("web#0", 3600.0)
    b = restored.forecast("web#0", 3600.0)
    assert a.samples == b.samples > 0 and a.cpu_p50 == pytest.approx(b.cpu_p50)
    led.close()


def test_cooldown_resumes_after_a_restart() -> None:
    svc, fleet, source, act, clock = service()
    svc.seed_cooldown(clock.now() + 60.0)  # the last morph happened a moment ago (from the ledger)
    assert (svc.sculptor.state.since_last_move(clock.now() + 120.0) == 60.0).all()


def test_streams_follow_replica_positions_across_a_blue_green_replacement() -> None:
    svc, fleet, source, act, clock = service(n=2)
    run(svc, clock, 3)
    rows = dict(svc.port.row_of)
    fleet.ids = ["web-0", "web-2"]  # web-1 was replaced by web-2
    run(svc, clock, 1)
    assert svc.port.row_of["web-0"] == rows["web-0"]
    assert svc.port.row_of["web-2"] == rows["web-1"]


def test_update_spec_changes_the_decision_constants_and_refuses_a_rename() -> None:
    svc, *_ = service()
    svc.update_spec(spec(aggressiveness=0.9, slo={"max_utilisation": 0.5}))
    assert svc.cost.aggressiveness == 0.9 and svc.cost.utilisation_cap == 0.5
    assert svc.sculptor.model is svc.cost
    with pytest.raises(ConfigError):
        svc.update_spec(spec(fleet="other"))


def test_merge_plans_blocked_wins_and_money_adds_up() -> None:
    hold = Plan(stack="w", decision=Decision.HOLD, reason="fine", confidence=0.5, distribution={"a": 1.0})
    blocked = Plan(stack="w", decision=Decision.BLOCKED, reason="budget", confidence=0.9, distribution={"b": 1.0})
    m = merge_plans("w", [hold, blocked], "none")
    assert m.decision is Decision.BLOCKED and m.reason == "budget" and m.confidence == 0.5
    assert m.distribution == {"a": 0.5, "b": 0.5}
    assert merge_plans("w", [], "no metrics").reason == "no metrics"


def test_guarded_uses_the_primary_while_it_works() -> None:
    g = Guarded(make_predictor("river", horizon_s=3600.0))
    from sculpt.forecast.base import SampleBatch

    for k in range(30):
        g.learn_many(SampleBatch(["s"], np.array([k * 300.0]), np.array([0.5]), np.array([0.1])))
    assert g.degraded is None and g.forecast_many(["s"], 3600.0).samples[0] >= 1


def test_scaled_clock_compresses_time() -> None:
    base = FakeClock(1000.0)
    c = ScaledClock(300.0, base=base)
    t0 = c.now()
    base.advance(2.0)
    assert c.now() - t0 == pytest.approx(600.0)
    with pytest.raises(ConfigError):
        ScaledClock(0.0)


def test_a_prometheus_server_that_is_down_means_hold_not_crash() -> None:
    """Real network boundary: nothing listens on the port, so every read is refused."""
    import socket

    from sculpt.catalog import load_catalog
    from sculpt.loop.live import LivePort
    from sculpt.loop.service import SculptorService, stream_names
    from sculpt.metrics.prometheus import PrometheusSource
    from sculpt.metrics.readings import RangeReadings
    from tests.sculptor.fakes import FakeFleet, RecordingActuator

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port_no = s.getsockname()[1]
    s.close()
    sp = spec()
    fleet = FakeFleet(sp.shape)
    readings = RangeReadings(PrometheusSource(f"http://127.0.0.1:{port_no}", timeout_s=1.0))
    port = LivePort(sp, load_catalog("local"), fleet, readings, RecordingActuator(fleet), stream_names("web", 2))
    clock = FakeClock(1_780_000_000.0)
    svc = SculptorService(sp, load_catalog("local"), make_predictor("last-value"), port, clock=clock, mode="auto")
    clock.advance(60)
    r = svc.tick()
    assert r.plan.decision is Decision.HOLD and r.instances == []
    assert r.warnings and "no CPU reading" in r.warnings[0]


@given(cpu=st.lists(st.floats(0.0, 3.0) | st.just(math.nan), min_size=5, max_size=40),
       budget=st.sampled_from([None, 0.02, 0.05, 0.2]))
@settings(max_examples=25, deadline=None)
def test_every_action_comes_from_an_allowed_plan(cpu: list[float], budget: float | None) -> None:
    """Whatever the readings and the budget: the fleet is only changed by a migrate plan that policy
    allows, and a plan blocked by policy never acts."""
    svc, fleet, source, act, clock = service(model="last-value", sp=spec(budget_usd_per_hour=budget))
    source.cpu = 0.1
    run(svc, clock, 61)  # one closed hourly period of history
    for c in cpu:
        source.cpu = c
        before = len(act.calls)
        r = run(svc, clock, 1)[0]
        if len(act.calls) > before:
            assert r.plan.decision is Decision.MIGRATE and r.plan.allowed, r.plan
        if r.plan.decision is Decision.BLOCKED:
            assert len(act.calls) == before
        if budget is not None and r.action is not None and r.action.result == "done":
            assert svc.catalog.price(fleet.shape, "local-a") <= budget + 1e-12


def test_run_survives_a_failing_tick_and_gives_up_after_repeated_failures() -> None:
    svc, fleet, source, act, clock = service()
    calls = {"n": 0}
    real = source.latest

    def flaky(slots, now):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("metrics backend hiccup")
        return real(slots, now)

    source.latest = flaky  # type: ignore[method-assign]
    assert svc.run(ticks=3, tick_s=0.0) == 3
    assert svc.counters["ticks"] == 2  # the failed tick held; the others ran

    def broken(slots, now):  # type: ignore[no-untyped-def]
        raise RuntimeError("always")

    source.latest = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        svc.run(ticks=10, tick_s=0.0)
