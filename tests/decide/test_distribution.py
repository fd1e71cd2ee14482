"""The one shape distribution (``sculpt.decide.distribution``): P(shape is the cheapest that fits) from the
fit probabilities of the forecast at the SLO's utilisation cap. It sums to one over the allowed shapes,
moves to dearer shapes as demand grows, never names a shape that is not allowed or cannot fit, and is
exactly the ``Plan.distribution`` the decision returns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.decide.decision import decide, family_mask
from sculpt.decide.distribution import (
    Fit,
    cheapest_distribution,
    cheapest_fitting,
    fit_probabilities,
    shape_distribution,
)
from sculpt.domain.catalog import Catalog, CatalogArrays, Offering, Shape
from sculpt.domain.forecast import Forecast
from sculpt.domain.spec import parse_spec


def catalog() -> Catalog:
    offs = []
    for c in (1, 2, 4, 8, 16):
        offs.append(Offering(shape=Shape(name=f"m{c}", family="m", vcpu=c, memory_gib=4 * c), region="r",
                             price_hour=0.05 * c))
        offs.append(Offering(shape=Shape(name=f"c{c}", family="c", vcpu=c, memory_gib=2 * c), region="r",
                             price_hour=0.043 * c))
    return Catalog("t", offs)


CAT = catalog()
ARR = CAT.arrays("r")
S = len(ARR)
C_ONLY = family_mask(ARR, ["c"])


def fit(cpu: list[float], mem: list[float], spread: float = 0.3) -> Fit:
    c, m = np.array(cpu, float), np.array(mem, float)
    return Fit(c, c * (1 + spread), c * (1 + spread), m, m * (1 + spread), m * (1 + spread))


def expected_price(arrays: CatalogArrays, d: dict[str, float]) -> float:
    price = dict(zip(map(str, arrays.names), arrays.price, strict=True))
    return sum(p * float(price[k]) for k, p in d.items())


demand = st.floats(0.0, 30.0)
spreads = st.floats(0.0, 1.5)


@settings(max_examples=100, deadline=None)
@given(demand, st.floats(0.0, 60.0), spreads, st.sampled_from([None, "c", "m"]))
def test_sums_to_one_over_the_allowed_shapes(cpu: float, mem: float, spread: float, fam: str | None) -> None:
    allowed = family_mask(ARR, [fam] if fam else None)
    d = shape_distribution(ARR, fit([cpu], [mem], spread), 0, allowed=allowed, cap=0.8, top=S)
    p_fit = fit_probabilities(ARR, fit([cpu], [mem], spread), 0.8)[0]
    if not d:  # nothing allowed can fit: no distribution rather than a made-up one
        assert np.all(p_fit[allowed] < 1e-6), p_fit
        return
    assert math.isclose(sum(d.values()), 1.0, rel_tol=1e-9)
    assert all(p > 0 for p in d.values())
    assert {str(n) for n in ARR.names[allowed]} >= set(d), d  # only allowed shapes
    top = shape_distribution(ARR, fit([cpu], [mem], spread), 0, allowed=allowed, cap=0.8, top=2)
    assert list(top) == list(d)[:2] and sum(top.values()) <= 1.0 + 1e-12  # the two likeliest, unchanged


@settings(max_examples=100, deadline=None)
@given(demand, st.floats(0.0, 60.0), spreads, st.floats(1.0, 4.0), st.floats(0.3, 1.0))
def test_more_demand_never_fits_better_nor_picks_cheaper(cpu: float, mem: float, spread: float, k: float,
                                                         cap: float) -> None:
    fc = fit([cpu, cpu * k], [mem, mem * k], spread)
    p = fit_probabilities(ARR, fc, cap)
    assert p.shape == (2, S) and np.all((p >= 0) & (p <= 1))
    assert np.all(p[1] <= p[0] + 1e-6)  # scaled-up demand fits no shape better
    for level in (0.05, 0.5, 0.95):  # and its cheapest fitting shape is never cheaper
        idx, _ = cheapest_fitting(p, C_ONLY, level)
        assert ARR.price[idx[1]] >= ARR.price[idx[0]]
    lo, hi = (shape_distribution(ARR, fc, i, allowed=C_ONLY, cap=cap, top=S) for i in (0, 1))
    if hi:  # (empty when no c shape can hold the scaled-up demand at all)
        assert expected_price(ARR, hi) >= expected_price(ARR, lo) - 1e-9


def test_a_shape_that_cannot_fit_gets_next_to_nothing() -> None:
    # 3 cores at p50 (3.9 at p95) at 80 %: c1/c2 (0.8/1.6 usable cores) cannot hold it, c4 (3.2) mostly does
    d = shape_distribution(ARR, fit([3.0], [1.0]), 0, allowed=C_ONLY, cap=0.8, top=S)
    assert d.get("c1", 0.0) < 1e-9 and d.get("c2", 0.0) < 1e-4  # 1.6 cores is 3.9 sigma below the median
    assert max(d, key=d.__getitem__) == "c4" and d["c8"] > 0.2  # c4 runs short a third of the time
    # memory picks the shape too: 20 GiB rules out c1..c8 (<= 16 GiB), m8 (32 GiB) is the cheapest to fit
    d = shape_distribution(ARR, fit([0.5], [20.0], spread=0.1), 0, allowed=None, cap=0.9, top=S)
    assert max(d, key=d.__getitem__) == "m8" and sum(d.get(f"c{c}", 0.0) for c in (1, 2, 4, 8)) < 1e-6


def test_unknown_cpu_fits_nowhere_and_unknown_memory_constrains_nothing() -> None:
    nan = math.nan
    assert shape_distribution(ARR, fit([nan], [1.0]), 0, allowed=None, cap=0.8) == {}
    no_mem = shape_distribution(ARR, fit([0.2], [nan]), 0, allowed=None, cap=0.8)
    assert no_mem == shape_distribution(ARR, fit([0.2], [0.0]), 0, allowed=None, cap=0.8)
    assert max(no_mem, key=no_mem.__getitem__) == "c1"
    assert cheapest_distribution(ARR, np.zeros(S), None) == {}


def test_cheapest_fitting_takes_the_cheapest_at_each_level_and_flags_a_miss() -> None:
    p = fit_probabilities(ARR, fit([1.0, 40.0], [1.0, 1.0]), 0.8)
    idx, found = cheapest_fitting(p, C_ONLY, 0.5)
    assert str(ARR.names[idx[0]]) == "c2" and found[0]  # 1.6 usable cores hold the 1-core median
    assert all(p[0, j] < 0.5 for j in np.flatnonzero(C_ONLY) if ARR.price[j] < ARR.price[idx[0]])
    assert str(ARR.names[idx[1]]) == "c16" and not found[1]  # 40 cores: the likeliest to fit, flagged
    none, ok = cheapest_fitting(p, np.zeros(S, dtype=bool), 0.5)
    assert none.tolist() == [-1, -1] and not ok.any()


@pytest.mark.parametrize("cpu, mem, families", [(0.6, 0.5, None), (3.0, 2.0, ["c"]), (0.2, 9.0, ["m"]),
                                                (12.0, 30.0, None)])
def test_it_is_the_plan_distribution(cpu: float, mem: float, families: list[str] | None) -> None:
    """``decide``'s Plan carries exactly this distribution (same forecast, same cap, same allowed shapes)."""
    spec = parse_spec({"fleet": "web", "shape": "c2", "region": "r", "provider": "local",
                       "families": families or [], "slo": {"max_utilisation": 0.7}})
    fc = Forecast(horizon_s=3600, cpu_p50=cpu, cpu_p95=cpu * 1.4, cpu_lo=cpu * 0.6, cpu_hi=cpu * 1.5,
                  mem_p50=mem, mem_p95=mem * 1.2, mem_lo=mem * 0.8, mem_hi=mem * 1.1, confidence=0.8, samples=48)
    from dataclasses import replace

    from sculpt.decide.cost import DEFAULT_COST

    model = replace(DEFAULT_COST, utilisation_cap=0.7)
    plan, _ = decide(stack="web", slot="web-0", current_shape="c2", region="r", forecast=fc, catalog=CAT, spec=spec,
                     now=0.0, model=model)
    cols = Fit(*(np.array([v]) for v in (fc.cpu_p50, fc.cpu_p95, fc.cpu_hi, fc.mem_p50, fc.mem_p95, fc.mem_hi)))
    ours = shape_distribution(ARR, cols, 0, allowed=family_mask(ARR, families), cap=0.7)
    assert plan.distribution == ours and ours
