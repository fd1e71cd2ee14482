"""A plan explains itself: its reason names the numbers that decided it, and reason, risk and
distribution never contradict one another — over random forecasts, shapes, aggressiveness and history."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.decide.cost import CostModel
from sculpt.decide.decision import pct
from sculpt.domain.plan import Decision
from tests.decide.test_decide_adversarial import catalog, fc, one


@given(cpu=st.floats(0.0, 12.0), mem=st.floats(0.0, 70.0), spread=st.floats(1.0, 3.0), conf=st.floats(0.0, 1.0),
       samples=st.integers(0, 200), current=st.sampled_from(["a1", "a2", "a4", "b2", "b8"]),
       aggressiveness=st.floats(0.0, 1.0))
@settings(max_examples=300, deadline=None)
def test_reason_risk_and_distribution_agree(cpu: float, mem: float, spread: float, conf: float, samples: int,
                                            current: str, aggressiveness: float) -> None:
    plan, _ = one(current, fc(cpu, mem, spread=spread, conf=conf, samples=samples),
                  model=CostModel(aggressiveness=aggressiveness))
    f = plan.figures
    # the risk is the breach chance of the shape the fleet will run: the target's if it moves, else today's
    if "breach_target" in f:
        assert abs(plan.risk - min(max(f["breach_target"], 0.0), 1.0)) < 1e-9
        if plan.decision is not Decision.MIGRATE:
            assert f["breach_target"] == f["breach_current"]
    if plan.urgent:  # urgent names the current shape's breach chance, not only the target's
        assert plan.decision is Decision.MIGRATE
        assert plan.why == "latency" or f"breaches with chance {pct(f['breach_current'])}" in plan.reason, plan
    if plan.decision is Decision.MIGRATE:
        assert plan.actions[0].to_shape in plan.reason, plan
        assert plan.why in ("move", "urgent", "latency")
    if plan.why == "threshold":  # a cheaper shape lost to the threshold: saving, move cost and threshold
        assert plan.reason.count("$") >= 4, plan.reason
    if plan.decision is Decision.HOLD and plan.why == "best" and plan.distribution:
        mode = max(plan.distribution.items(), key=lambda kv: kv[1])[0]
        if mode != current:  # the distribution points elsewhere: the reason says why it is not taken
            assert mode in plan.reason, plan
    for a, b in re.findall(r"confidence ([\d.]+%) is below the ([\d.]+%) floor", plan.reason):
        assert a != b, plan.reason


def test_demand_above_every_shape_goes_to_the_largest_and_says_so() -> None:
    plan, _ = one("a2", fc(100.0, 1.0))
    assert plan.decision is Decision.MIGRATE and plan.actions[0].to_shape == "b8", plan
    assert "above every allowed shape" in plan.reason
    plan, _ = one("b8", fc(100.0, 1.0))
    assert plan.decision is Decision.HOLD, plan  # already the largest: no downsize to an equally breached one


def test_no_history_and_a_breach_in_progress_is_urgent() -> None:
    plan, _ = one("a1", fc(1.9, conf=0.0, samples=0))
    assert plan.urgent and plan.decision is Decision.MIGRATE, plan
    plan, _ = one("a4", fc(0.3, conf=0.0, samples=0))
    assert plan.decision is Decision.HOLD and plan.why == "no_history", plan


def test_catalog_is_sorted_by_price() -> None:  # the tie rules above rely on it
    a = catalog().arrays("r")
    assert list(a.price) == sorted(a.price)

