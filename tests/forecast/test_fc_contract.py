"""The contract every predictor passes, applied automatically to every name ``make_predictor`` knows."""

from __future__ import annotations

import numpy as np
import pytest
from fc_helpers import T0, fleet, model_params

from sculpt.domain.errors import ConfigError
from sculpt.forecast import Predictor, Sample, make_predictor
from sculpt.forecast.base import ForecastBatch, SampleBatch
from sculpt.forecast.engine import ModelLoadError

FLEET = fleet(n_streams=3, days=2.0)
NAMES = list(FLEET[0].streams)


def feed(p: Predictor, batches: list[SampleBatch]) -> None:
    for b in batches:
        p.learn_many(b)


def columns(fb: ForecastBatch) -> np.ndarray:
    return np.column_stack([fb.cpu_p50, fb.cpu_p95, fb.cpu_lo, fb.cpu_hi, fb.mem_p50, fb.mem_p95, fb.mem_lo,
                            fb.mem_hi, fb.confidence, fb.samples])


@pytest.mark.parametrize("name", model_params())
def test_is_a_predictor_and_safe_before_learning(name: str) -> None:
    p = make_predictor(name)
    assert isinstance(p, Predictor)
    assert p.name == name
    fb = p.forecast_many(["never-seen", "other"], 3600)
    assert len(fb) == 2 and fb.model == name
    assert np.all(np.isfinite(columns(fb)))
    assert np.all(fb.confidence == 0.0) and np.all(fb.samples == 0)
    f = p.forecast("never-seen", 3600)
    assert f.is_finite() and f.confidence == 0.0


@pytest.mark.parametrize("name", model_params())
def test_learning_does_not_mutate_inputs(name: str) -> None:
    p = make_predictor(name)
    before = [(list(b.streams), b.t.copy(), b.cpu_cores.copy(), b.mem_gib.copy()) for b in FLEET[:40]]
    feed(p, FLEET[:40])
    for (s, t, c, m), b in zip(before, FLEET[:40], strict=True):
        assert list(b.streams) == s
        np.testing.assert_array_equal(b.t, t)
        np.testing.assert_array_equal(b.cpu_cores, c)
        np.testing.assert_array_equal(b.mem_gib, m)
    sample = Sample(t=T0 + 1e6, cpu_cores=1.0, mem_gib=2.0)
    p.learn_one("x", sample)
    assert sample == Sample(t=T0 + 1e6, cpu_cores=1.0, mem_gib=2.0)


@pytest.mark.parametrize("name", model_params())
def test_forecasts_are_ordered_and_the_horizon_is_the_period_the_model_closes(name: str) -> None:
    """A predictor forecasts the period it was built for (``horizon_s``): its forecasts count that period's
    closed periods, and a horizon it does not forecast is refused, not answered with another period's numbers."""
    for horizon, periods in ((3600.0, 48), (1800.0, 96)):  # two days of closed hours, of closed half hours
        p = make_predictor(name, horizon_s=horizon)
        feed(p, FLEET)
        assert p.horizon_s == horizon
        fb = p.forecast_many(NAMES, horizon)
        assert fb.horizon_s == horizon and len(fb) == len(NAMES) and list(fb.streams) == NAMES
        assert np.all(fb.cpu_lo <= fb.cpu_p50) and np.all(fb.cpu_p50 <= fb.cpu_hi)
        assert np.all(fb.cpu_p95 >= fb.cpu_p50) and np.all(fb.mem_p95 >= fb.mem_p50)
        assert np.all((fb.confidence > 0) & (fb.confidence <= 1))
        assert np.all(fb.samples == periods)
        assert p.forecast(NAMES[0], horizon).horizon_s == horizon
        other = 5400.0 - horizon  # the other one of the two
        with pytest.raises(ValueError, match=f"{horizon:g}-second periods, not {other:g}"):
            p.forecast_many(NAMES, other)
        with pytest.raises(ValueError, match="-second periods"):
            p.forecast(NAMES[0], other)


@pytest.mark.parametrize("name", model_params())
def test_a_checkpoint_of_another_period_is_refused(name: str) -> None:
    """Restored into a model of another horizon, a checkpoint would forecast its own period under the new
    label; ``persist.restore`` turns this error into a fresh model and a note."""
    blob = make_predictor(name, horizon_s=1800.0).dumps()
    with pytest.raises(ModelLoadError, match="1800-second periods, this model 3600"):
        make_predictor(name, horizon_s=3600.0).loads(blob)


@pytest.mark.parametrize("name", model_params())
def test_same_seed_same_forecasts(name: str) -> None:
    a, b = make_predictor(name, seed=7), make_predictor(name, seed=7)
    feed(a, FLEET)
    feed(b, FLEET)
    np.testing.assert_array_equal(columns(a.forecast_many(NAMES, 3600)), columns(b.forecast_many(NAMES, 3600)))


@pytest.mark.parametrize("name", model_params())
def test_persistence_round_trip_resumes_identically(name: str) -> None:
    half = len(FLEET) // 2
    a = make_predictor(name, seed=3)
    feed(a, FLEET[:half])
    blob = a.dumps()
    b = make_predictor(name, seed=99)  # a different seed: everything must come from the blob
    b.loads(blob)
    np.testing.assert_array_equal(columns(a.forecast_many(NAMES, 3600)), columns(b.forecast_many(NAMES, 3600)))
    feed(a, FLEET[half:])
    feed(b, FLEET[half:])
    np.testing.assert_array_equal(columns(a.forecast_many(NAMES, 3600)), columns(b.forecast_many(NAMES, 3600)))


@pytest.mark.parametrize("name", model_params())
def test_learn_one_matches_learn_many_on_one_stream(name: str) -> None:
    a, b = make_predictor(name), make_predictor(name)
    for batch in fleet(n_streams=1, days=1.0):
        a.learn_many(batch)
        for i, s in enumerate(batch.streams):
            b.learn_one(s, Sample(t=float(batch.t[i]), cpu_cores=float(batch.cpu_cores[i]),
                                  mem_gib=float(batch.mem_gib[i])))
    # (with several streams, learn_one closes their periods one by one, so shared state such as the
    # residual pool and the LSTM's mini-batches see another order: the same model, not the same bits)
    np.testing.assert_array_equal(columns(a.forecast_many(["vm-0"], 3600)), columns(b.forecast_many(["vm-0"], 3600)))


def test_unknown_model_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="To fix"):
        make_predictor("prophet")
