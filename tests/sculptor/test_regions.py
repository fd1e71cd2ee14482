"""Region moves in the live loop: when another allowed region serves the fleet for less (availability
weighted, net of the move), ``auto`` mode moves it there through the actuator (the orchestrator's ``--region``
semantics: blue/green), behind the gates of any non-urgent move. Fake clock and the named fakes."""

from __future__ import annotations

from typing import Any

from tests.sculptor.fakes import run, service, spec

HOUR = 3600.0


def region_service(**over: Any) -> Any:
    mode = over.pop("mode", "auto")
    sp = spec(**{"regions": ["local-b"], "shape": "std-2c-2048m", **over})
    svc, fleet, source, act, clock = service(sp=sp, mode=mode)
    source.cpu = 1.3  # needs the 2-core shape; local-b sells it about 20 % cheaper
    return svc, fleet, source, act, clock


def test_auto_mode_moves_the_fleet_to_the_cheaper_region_once() -> None:
    svc, fleet, _source, act, clock = region_service(aggressiveness=0.8)
    reports = run(svc, clock, 30, step_s=HOUR)
    moved = [r for r in reports if r.action is not None]
    assert len(moved) == 1 and act.regions == ["local-b"] and act.calls == [("std-2c-2048m", "std-2c-2048m")]
    r = moved[0]
    assert r.plan.decision.value == "migrate" and r.plan.actions[0].kind == "move"
    assert (r.plan.actions[0].from_region, r.plan.actions[0].to_region) == ("local-a", "local-b")
    assert r.plan.confidence >= svc.cost.confidence_floor and r.plan.allowed
    assert r.action.detail == "blue-green" and r.plan.expected_monthly_delta_usd < 0
    # the loop now lives in local-b: its offerings, its spec; local-a stays allowed but costs more
    assert fleet.region == "local-b" and svc.spec.region == "local-b" and svc.spec.regions == ["local-a"]
    assert "elsewhere" not in reports[-1].plan.reason and reports[-1].plan.decision.value == "hold"
    assert svc.port.names[int(svc.port.current()[0])] == "std-2c-2048m"


def test_low_confidence_holds_and_says_nothing_about_other_regions() -> None:
    svc, _fleet, _source, act, clock = region_service(aggressiveness=0.8)
    reports = run(svc, clock, 10, step_s=HOUR)
    assert not act.calls and all(r.plan.confidence < svc.cost.confidence_floor for r in reports)
    assert not any("local-b" in r.plan.reason for r in reports)


def test_recommend_mode_only_recommends_a_region_move() -> None:
    svc, fleet, _source, _act, clock = region_service(mode="recommend", aggressiveness=0.8)
    reports = run(svc, clock, 16, step_s=HOUR) + run(svc, clock, 18, step_s=HOUR / 6)
    acts = [r.action for r in reports if r.action is not None]
    assert len(acts) >= 2 and all(a.result == "recommended" and a.region == "local-b" for a in acts)
    # the cooldown applies to a recommended move too: at most one an hour
    assert all(b.t - a.t >= svc.cost.cooldown_s for a, b in zip(acts, acts[1:], strict=False))
    assert fleet.region == "local-a" and svc.spec.region == "local-a"


def test_policy_blocks_a_region_move_and_the_plan_says_why() -> None:
    svc, fleet, _source, act, clock = region_service(aggressiveness=0.8, policy={"max_migrations_per_day": 0})
    reports = run(svc, clock, 30, step_s=HOUR)
    assert not act.calls and fleet.region == "local-a"
    assert any("local-b" in r.plan.reason and "policy blocks it" in r.plan.reason for r in reports)


def test_aggressiveness_zero_never_moves_for_a_saving() -> None:
    svc, fleet, _source, act, clock = region_service(aggressiveness=0.0)
    reports = run(svc, clock, 30, step_s=HOUR)
    assert not act.calls and fleet.region == "local-a"
    assert any("does not clear the aggressiveness threshold" in r.plan.reason and "local-b" in r.plan.reason
               for r in reports)


def test_cooldown_delays_a_region_move() -> None:
    svc, fleet, _source, act, clock = region_service(aggressiveness=0.8)
    run(svc, clock, 15, step_s=HOUR)
    assert not act.calls
    svc.seed_cooldown(clock.now() + HOUR)  # as if a move had just happened at the next tick
    r = run(svc, clock, 1, step_s=HOUR)[0]
    assert not act.calls and "cooling down" in r.plan.reason and "local-b" in r.plan.reason
    run(svc, clock, 3, step_s=HOUR)
    assert act.regions == ["local-b"] and fleet.region == "local-b"


def test_a_failed_region_move_keeps_the_home_region() -> None:
    svc, fleet, _source, act, clock = region_service(aggressiveness=0.8)
    act.fail = True
    reports = run(svc, clock, 30, step_s=HOUR)
    assert act.regions and set(act.regions) == {"local-b"}
    assert fleet.region == "local-a" and svc.spec.region == "local-a"
    assert any(any("local-b" in w for w in r.warnings) for r in reports)


def test_a_move_that_happens_anyway_goes_where_it_is_cheaper() -> None:
    """Demand outgrows std-1c-1024m: the fleet must move up; local-b sells std-2c-2048m cheaper than local-a,
    so one blue/green move there replaces a resize now and a region move later (urgent, no cooldown gate)."""
    from tests.sculptor.fakes import ConfidentForecast

    sp = spec(**{"regions": ["local-b"], "shape": "std-1c-1024m", "aggressiveness": 0.5})
    svc, fleet, source, act, clock = service(sp=sp, predictor=ConfidentForecast(1.3))
    source.cpu = 1.3
    r = run(svc, clock, 1, step_s=HOUR)[0]
    assert r.plan.urgent and r.plan.why == "region" and r.plan.actions[0].kind == "move", r.plan
    assert act.calls == [("std-1c-1024m", "std-2c-2048m")] and act.regions == ["local-b"]
    assert (fleet.shape, fleet.region) == ("std-2c-2048m", "local-b") and svc.spec.region == "local-b"
    assert "one blue/green move" in r.plan.reason and r.plan.figures["region_gain_usd"] > 0
    # without the second region the same demand is an in-place resize at home
    svc, fleet, source, act, clock = service(sp=spec(shape="std-1c-1024m"), predictor=ConfidentForecast(1.3))
    source.cpu = 1.3
    r = run(svc, clock, 1, step_s=HOUR)[0]
    assert r.plan.why == "urgent" and act.regions == ["local-a"] and fleet.shape == "std-2c-2048m"
