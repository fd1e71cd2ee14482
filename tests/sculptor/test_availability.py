"""Adversarial and property tests of ``sculpt.decide.availability`` (what the sculptor adds to the decision):
learned launch availability, the fallback after a capacity error, and the cross-region ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.catalog import load_catalog
from sculpt.decide.availability import (
    MIN_AVAILABILITY,
    Availability,
    fallbacks,
    is_capacity_error,
    rank,
)
from sculpt.domain.forecast import Forecast
from sculpt.domain.spec import parse_spec
from tests.sculptor.fakes import T0, run, service

CAT = load_catalog("local")
ARR = CAT.arrays("local-a")
SPEC = parse_spec({"fleet": "web", "shape": "std-1c-1024m", "region": "local-a", "regions": ["local-b"],
                   "families": ["local-std"]})


def fc(p50: float, p95: float, conf: float = 0.8) -> Forecast:
    return Forecast(horizon_s=3600, cpu_p50=p50, cpu_p95=p95, cpu_lo=p50 * 0.5, cpu_hi=p95, mem_p50=0.1,
                    mem_p95=0.15, confidence=conf, samples=48)


outcomes = st.lists(st.tuples(st.booleans(), st.floats(0, 86400)), max_size=40)


@given(outcomes)
@settings(max_examples=60, deadline=None)
def test_availability_is_a_probability_and_failures_never_raise_it(events: list[tuple[bool, float]]) -> None:
    a = Availability()
    t = T0
    for ok, dt in events:
        t += dt
        before = a.p("s", "r", t)
        a = a.record("s", "r", ok, t)
        after = a.p("s", "r", t)
        assert 0.0 < after < 1.0
        assert (after >= before) if ok else (after <= before)


def test_failures_discount_a_shape_and_evidence_decays() -> None:
    a = Availability()
    for k in range(12):
        a = a.record("std-2c-2048m", "local-a", False, T0 + k)
    assert a.p("std-2c-2048m", "local-a", T0 + 12) < MIN_AVAILABILITY
    mask = a.mask(ARR, "local-a", T0 + 12)
    i = list(ARR.names).index("std-2c-2048m")
    assert not mask[i] and mask.sum() == len(ARR) - 1
    assert a.mask(ARR, "local-a", T0 + 12, current=i)[i]  # the running shape stays a candidate
    assert a.p("std-2c-2048m", "local-a", T0 + 5 * 86400) > 0.85  # tried again days later
    assert a.p("std-2c-2048m", "local-b", T0) == pytest.approx(0.9)  # other regions are unaffected


def test_fallbacks_are_at_least_as_big_cheapest_first_and_skip_the_unlikely() -> None:
    names = list(ARR.names)
    t = names.index("std-1c-1024m")
    out = fallbacks(ARR, t, Availability(), "local-a", T0)
    assert out and all(ARR.vcpu[i] >= 1.0 and ARR.memory_gib[i] >= 1.0 for i in out)
    assert list(ARR.price[out]) == sorted(ARR.price[out]) and t not in out
    bad = Availability()
    for _k in range(12):
        bad = bad.record(str(ARR.names[out[0]]), "local-a", False, T0)
    assert out[0] not in fallbacks(ARR, t, bad, "local-a", T0)


def test_capacity_errors_are_recognised() -> None:
    assert is_capacity_error("ZONE_RESOURCE_POOL_EXHAUSTED in us-central1-a")
    assert not is_capacity_error("")


def test_rank_prefers_the_cheaper_region_when_it_is_available() -> None:
    r = rank(CAT, SPEC, fc(0.3, 0.5), "std-1c-1024m", "local-a", Availability(), T0)
    assert r[0].region == "local-b"
    assert all(c.shape.startswith("std-") for c in r)  # families respected
    assert [c.effective_usd for c in r] == sorted(c.effective_usd for c in r)


def test_rank_discounts_a_region_whose_launches_fail() -> None:
    a = Availability()
    for s in CAT.shapes():
        for _k in range(30):
            a = a.record(s, "local-b", False, T0)
    r = rank(CAT, SPEC, fc(0.3, 0.5), "std-1c-1024m", "local-a", a, T0)
    assert r[0].region == "local-a"


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=80, deadline=None)
def test_rank_never_crashes_and_keeps_the_current_shape_on_garbage(p50: float, p95: float) -> None:
    f = Forecast.model_construct(horizon_s=3600, cpu_p50=p50, cpu_p95=p95, cpu_lo=0.0, cpu_hi=p95, mem_p50=math.nan,
                                 mem_p95=math.nan, mem_lo=0.0, mem_hi=math.nan, confidence=0.5, model="x", samples=3)
    r = rank(CAT, SPEC, f, "std-1c-1024m", "local-a", Availability(), T0)
    assert r and any(c.shape == "std-1c-1024m" and c.region == "local-a" for c in r)
    assert all(not math.isnan(c.effective_usd) for c in r)


def test_rank_ties_are_deterministic() -> None:
    a = rank(CAT, SPEC, fc(0.0, 0.0), "std-1c-1024m", "local-a", Availability(), T0)
    b = rank(CAT, SPEC, fc(0.0, 0.0), "std-1c-1024m", "local-a", Availability(), T0)
    assert a == b


def test_the_loop_falls_back_to_the_next_best_shape_after_a_capacity_error() -> None:
    svc, fleet, source, act, clock = service()

    real = act.morph

    def no_room_for_first(shape: str, region: str, from_shape: str, now: float):  # type: ignore[no-untyped-def]
        if not act.calls:
            act.calls.append((from_shape, shape))
            from sculpt.migrate.actuator import MorphOutcome

            return MorphOutcome(now, shape, from_shape, region, "failed", "InsufficientInstanceCapacity for " + shape)
        return real(shape, region, from_shape, now)

    act.morph = no_room_for_first  # type: ignore[method-assign]
    run(svc, clock, 120)
    source.cpu = 0.5  # asks for std-1c-1024m, which has no room; std-2c-2048m is the next best
    reports = run(svc, clock, 3)
    first, second = act.calls[0][1], act.calls[1][1]
    assert (first, second) == ("std-1c-1024m", "std-2c-2048m") and fleet.shape == second
    names = list(ARR.names)
    assert ARR.vcpu[names.index(second)] >= ARR.vcpu[names.index(first)]
    assert svc.port.availability.p(first, "local-a", clock.now()) < 0.9
    assert any(r.action is not None and r.action.result == "done" for r in reports)
    assert np.isfinite([r.tick_ms for r in reports]).all()
