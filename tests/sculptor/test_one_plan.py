"""One plan per tick, and it is exactly what ran.

``sculpt plan`` is a recommend-mode tick; ``sculpt watch --mode auto`` is an auto-mode tick. Fed the same
readings (the named fakes: a scripted metric source, a fake fleet, a recording actuator), both must print
the same plan, and what auto mode executes must be that plan's actions: the same shape, the same region,
every serving slot — shape moves and region moves alike. Fake clock, hourly periods.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.domain.plan import Decision, Plan
from sculpt.loop.report import TickReport
from tests.sculptor.fakes import service, spec

HOUR = 3600.0


def executed_equals_planned(r: TickReport, slots: list[str]) -> None:
    """The tick's plan names one target for every serving slot iff the tick executed a morph to it."""
    plan = r.plan
    if r.action is None:
        assert not plan.actions, plan
        return
    assert plan.decision is Decision.MIGRATE and plan.allowed, plan
    targets = {(a.to_shape, a.to_region) for a in plan.actions}
    assert targets == {(r.action.to_shape, r.action.region)}, (plan, r.action)
    assert sorted(a.slot for a in plan.actions) == sorted(slots)
    assert all(a.why for a in plan.actions) and plan.why


def same_plan(a: Plan, b: Plan) -> None:
    assert a.to_json() == b.to_json()


def pair(**over: Any) -> tuple[Any, Any]:
    """A recommend service (``sculpt plan``) and an auto one (``watch --mode auto``) on equal fleets."""
    sp = spec(**over)
    n = sp.replicas.desired
    return service(mode="recommend", model="last-value", sp=sp, n=n), service(mode="auto", model="last-value",
                                                                              sp=sp, n=n)


@given(demand=st.lists(st.floats(0.02, 4.0), min_size=3, max_size=12),
       replicas=st.integers(1, 3), regions=st.booleans(), aggressiveness=st.sampled_from([0.2, 0.5, 0.8, 1.0]))
@settings(max_examples=20, deadline=None)
def test_plan_and_auto_agree_and_auto_executes_exactly_the_plan(demand: list[float], replicas: int, regions: bool,
                                                                aggressiveness: float) -> None:
    over: dict[str, Any] = {"aggressiveness": aggressiveness, "shape": "std-1c-1024m",
                            "replicas": {"min": 1, "max": 3, "desired": replicas}}
    if regions:
        over["regions"] = ["local-b"]
    (rec, rfleet, rsrc, _ract, rclock), (auto, afleet, asrc, aact, aclock) = pair(**over)
    moved = False
    for k, cpu in enumerate([0.3] * 3 + demand):
        for clock, src, fleet in ((rclock, rsrc, rfleet), (aclock, asrc, afleet)):
            clock.advance(HOUR)
            src.cpu = {sid: cpu * (1 + 0.2 * i) for i, sid in enumerate(fleet.ids)}
        planned = rec.tick()
        calls = len(aact.calls)
        done = auto.tick()
        executed_equals_planned(done, list(afleet.ids))
        if not moved:  # until auto's fleet changes, both see the same fleet: the same plan
            same_plan(planned.plan, done.plan)
            if planned.action is not None:
                assert planned.action.result == "recommended"
                assert done.action is not None, "plan recommended a move that auto mode did not make"
                assert (planned.action.to_shape, planned.action.region) == (done.action.to_shape, done.action.region)
        if len(aact.calls) > calls:
            moved = True
        assert k < 100


def test_a_region_move_is_the_plan_and_carries_its_why() -> None:
    (_, _, _, _, _), (auto, fleet, src, act, clock) = pair(regions=["local-b"], shape="std-2c-2048m",
                                                             aggressiveness=0.8)
    src.cpu = 1.3  # needs the 2-core shape; local-b sells it cheaper
    reports = []
    for _ in range(30):
        clock.advance(HOUR)
        reports.append(auto.tick())
        executed_equals_planned(reports[-1], list(fleet.ids))
    moved = [r for r in reports if r.action is not None]
    assert len(moved) == 1 and moved[0].plan.why == "region" and act.regions == ["local-b"]
    assert {a.why for a in moved[0].plan.actions} == {"region"}
    assert moved[0].plan.figures["region_gain_usd"] > moved[0].plan.figures["region_threshold_usd"]
    # before it moved, each hold said why by code: no history, then the best shape while confidence grew
    before = [r.plan.why for r in reports[:reports.index(moved[0])]]
    assert before[0] == "no_history" and set(before[1:]) == {"best"}


def test_a_replica_that_needs_more_moves_every_replica_to_its_shape() -> None:
    """Two replicas, one hot: the fleet morphs as a whole to the shape the hot one needs, and the plan says
    so for both slots (not only for the replica that asked)."""
    _, (auto, fleet, src, act, clock) = pair(replicas={"min": 1, "max": 2, "desired": 2}, shape="std-0.5c-512m")
    for _ in range(3):
        clock.advance(HOUR)
        src.cpu = 0.2
        auto.tick()
    clock.advance(HOUR)
    src.cpu = {fleet.ids[0]: 0.1, fleet.ids[1]: 1.4}
    r = auto.tick()
    assert r.action is not None and r.plan.urgent, r.plan
    assert {a.slot for a in r.plan.actions} == set(fleet.ids)
    assert {a.to_shape for a in r.plan.actions} == {r.action.to_shape} == {fleet.shape}
    assert "every replica moves to std-2c-2048m" in r.plan.reason and r.plan.why == "urgent"
    # the money is the whole fleet's move: both replicas' price difference, per month
    price = auto.catalog.price
    assert abs(r.plan.expected_monthly_delta_usd - 2 * 730 * (price("std-2c-2048m", "local-a")
                                                          - price("std-0.5c-512m", "local-a"))) < 1e-6
