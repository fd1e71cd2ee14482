"""Regression tests for defects found live (issue 13): each drives the live loop through the named fakes
(scripted metric source, fake fleet, recording actuator) with a fake clock, and would fail on the old
decision.

- demand above the largest shape made sculpt downsize (to the cheapest shape of another region) or hold;
- a fresh fleet at full CPU held with "no history yet" while requests timed out;
- ``slo.p95_latency_ms`` had no effect on the decision.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sculptor.fakes import ConfidentForecast, service, spec

HOUR = 3600.0


def tick(svc: Any, clock: Any, step_s: float = 60.0) -> Any:
    clock.advance(step_s)
    return svc.tick()


@pytest.mark.parametrize("regions", [[], ["local-b"]])
def test_demand_above_every_shape_goes_to_the_largest_never_down(regions: list[str]) -> None:
    """8 cores of demand on std-0.5c-512m; the local catalog stops at 2 cores (std-2c-2048m, mem-2c-8192m)."""
    svc, fleet, source, act, clock = service(sp=spec(regions=regions), model="last-value")
    source.cpu = 8.0
    r = tick(svc, clock)
    assert r.action is not None and r.plan.urgent, r.plan
    assert fleet.shape == "std-2c-2048m" and fleet.region == "local-a", (fleet.shape, fleet.region)
    for _ in range(30):  # and it stays there: never a move to a smaller shape, here or elsewhere
        r = tick(svc, clock, HOUR)
        assert svc.catalog.shape(fleet.shape).vcpu == 2.0, r.plan
    assert all(svc.catalog.shape(to).vcpu == 2.0 for _, to in act.calls), act.calls


def test_a_fresh_fleet_at_full_cpu_upsizes_at_the_first_tick() -> None:
    """No model history at all (no period closed): a reading above the shape is a breach in progress."""
    svc, fleet, source, act, clock = service(sp=spec(shape="std-0.5c-512m"), model="river")
    source.cpu = 0.495  # 99 % of half a core
    r = tick(svc, clock)
    assert r.plan.confidence == 0.0 and r.plan.urgent and r.plan.why == "urgent", r.plan
    assert act.calls == [("std-0.5c-512m", fleet.shape)] and svc.catalog.shape(fleet.shape).vcpu > 0.5


def test_latency_above_the_slo_with_busy_cpu_is_an_urgent_upsize() -> None:
    """A confident forecast of 0.64 cores (80 % of what std-1c-1024m may use, p95 0.74 < 0.8): the CPU alone
    holds; the same tick with a measured p95 of 2,402 ms against a 250 ms SLO moves up, urgently."""
    sp = spec(shape="std-1c-1024m", slo={"p95_latency_ms": 250})
    svc, fleet, source, act, clock = service(sp=sp, predictor=ConfidentForecast(0.64))
    source.cpu = 0.64
    for _ in range(3):
        r = tick(svc, clock, HOUR)
    assert not act.calls and r.plan.decision.value == "hold", r.plan
    source.latency_ms = 2402.0
    r = tick(svc, clock)
    assert r.plan.urgent and r.plan.why == "latency" and act.calls == [("std-1c-1024m", "std-2c-2048m")], r.plan


def test_latency_above_the_slo_with_idle_cpu_is_not_a_sizing_problem() -> None:
    sp = spec(shape="std-1c-1024m", slo={"p95_latency_ms": 250})
    svc, _fleet, source, act, clock = service(sp=sp, model="last-value")
    source.cpu = 0.1
    source.latency_ms = 2402.0
    for _ in range(3):
        tick(svc, clock, HOUR)
    assert all(to != "std-2c-2048m" for _, to in act.calls), act.calls
