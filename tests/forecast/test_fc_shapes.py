"""The shape distribution: sums to one, moves to larger shapes as demand grows, respects constraints."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.domain.catalog import Catalog, CatalogArrays, Offering, Shape
from sculpt.domain.errors import ConfigError
from sculpt.forecast.base import ForecastBatch
from sculpt.forecast.shapes import headroom_for, quantile_grid, shape_distribution, shape_probabilities


def catalog() -> CatalogArrays:
    offs = []
    for c in (1, 2, 4, 8, 16):
        offs.append(Offering(shape=Shape(name=f"m{c}", family="m", vcpu=c, memory_gib=4 * c), region="r",
                             price_hour=0.05 * c))
        offs.append(Offering(shape=Shape(name=f"c{c}", family="c", vcpu=c, memory_gib=2 * c, storage="ssd"),
                             region="r", price_hour=0.043 * c))
    offs.append(Offering(shape=Shape(name="g4", family="g", vcpu=4, memory_gib=16, gpus=1, network_gbps=25),
                         region="r", price_hour=0.9))
    offs.append(Offering(shape=Shape(name="n8", family="n", vcpu=8, memory_gib=32, network_gbps=50),
                         region="r", price_hour=0.6))
    return Catalog("t", offs).arrays("r")


ARR = catalog()


def batch(cpu: list[float], mem: list[float], spread: float = 0.3, conf: float = 0.7) -> ForecastBatch:
    c, m = np.array(cpu, float), np.array(mem, float)
    n = len(c)
    return ForecastBatch([f"s{i}" for i in range(n)], 3600, c, c * (1 + spread), c * (1 - spread), c * (1 + spread),
                         m, m * (1 + spread), m * (1 - spread), m * (1 + spread), np.full(n, conf), np.full(n, 24))


def expected_price(p: np.ndarray) -> np.ndarray:
    return p @ ARR.price


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 40.0), st.floats(0.0, 100.0), st.floats(0.0, 1.0), st.floats(1.01, 3.0))
def test_probabilities_sum_to_one_and_grow_with_demand(cpu: float, mem: float, spread: float, k: float) -> None:
    p = shape_probabilities(batch([cpu, cpu * k], [mem, mem * k], spread), ARR, headroom=0.2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p >= 0)
    assert expected_price(p)[1] >= expected_price(p)[0] - 1e-12


def test_a_certain_forecast_picks_the_cheapest_fit() -> None:
    d = shape_distribution(batch([1.5], [3.0], spread=0.0, conf=0.9), ARR, headroom=0.0)[0]
    # 1.5 cores / 3 GiB: c2 (2 vCPU, 4 GiB, 0.086 $/h) is the cheapest fit
    assert d.probabilities == {"c2": 1.0} and d.confidence == pytest.approx(0.9)


def test_headroom_moves_mass_up() -> None:
    low = shape_probabilities(batch([1.8], [1.0]), ARR, headroom=0.0)
    high = shape_probabilities(batch([1.8], [1.0]), ARR, headroom=0.5)
    assert expected_price(high)[0] > expected_price(low)[0]


def test_constraints_are_respected() -> None:
    fb = batch([1.0, 6.0], [2.0, 10.0])
    names = ARR.names
    gpu = shape_probabilities(fb, ARR, gpus=1)
    assert set(names[np.flatnonzero(gpu.sum(axis=0))]) == {"g4"}
    ssd = shape_probabilities(fb, ARR, storage="ssd")
    assert all(str(n).startswith("c") for n in names[np.flatnonzero(ssd.sum(axis=0))])
    net = shape_probabilities(fb, ARR, network_gbps=30)
    assert set(names[np.flatnonzero(net.sum(axis=0))]) == {"n8"}
    fam = shape_probabilities(fb, ARR, families=("m",))
    assert all(str(n).startswith("m") for n in names[np.flatnonzero(fam.sum(axis=0))])
    with pytest.raises(ConfigError, match="To fix"):
        shape_probabilities(fb, ARR, gpus=8)


def test_demand_beyond_every_shape_goes_to_the_largest() -> None:
    d = shape_distribution(batch([100.0], [10.0], spread=0.0), ARR)[0]
    assert d.probabilities == {"m16": 1.0}


def test_nan_forecast_is_treated_as_no_demand() -> None:
    fb = batch([float("nan")], [float("nan")])
    p = shape_probabilities(fb, ARR)
    np.testing.assert_allclose(p.sum(), 1.0)
    assert ARR.names[int(np.argmax(p[0]))] == ARR.names[0]  # the cheapest shape


def test_quantile_grid_is_monotone_and_hits_the_knots() -> None:
    g = quantile_grid(np.array([1.0]), np.array([2.0]), np.array([4.0]), np.array([0.05, 0.3, 0.5, 0.95, 0.99]))
    assert np.all(np.diff(g[0]) >= 0)
    np.testing.assert_allclose(g[0, [0, 2, 3]], [1.0, 2.0, 4.0])


def test_profiles_have_headroom() -> None:
    assert headroom_for("low-latency")[0] > headroom_for("batch")[0]
    assert headroom_for("unknown") == headroom_for("general")
