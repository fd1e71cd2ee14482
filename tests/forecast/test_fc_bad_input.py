"""Bad samples (NaN, negative, missing, gaps, time going backwards) are skipped and counted, never fatal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fc_helpers import fleet, model_params

from sculpt.forecast import make_predictor
from sculpt.forecast.base import SampleBatch

CLEAN = fleet(n_streams=2, days=1.5, seed=5)
NAMES = list(CLEAN[0].streams)


def cols(p: object) -> np.ndarray:
    fb = p.forecast_many(NAMES, 3600)  # type: ignore[attr-defined]
    return np.column_stack([fb.cpu_p50, fb.cpu_p95, fb.cpu_lo, fb.cpu_hi, fb.mem_p50, fb.mem_hi, fb.confidence])


def poisoned(batches: list[SampleBatch]) -> list[SampleBatch]:
    """The clean batches with bad samples for stream vm-0 interleaved (each is a separate batch)."""
    out = []
    for k, b in enumerate(batches):
        out.append(b)
        if k % 7 == 3:
            t = float(b.t[0])
            for when, cpu, mem in ((t + 1, math.nan, 1.0), (t + 2, -3.0, 1.0), (t - 900, 5.0, 1.0),
                                   (math.nan, 1.0, 1.0), (t + 3, math.inf, 1.0)):
                out.append(SampleBatch(["vm-0"], np.array([when]), np.array([cpu]), np.array([mem])))
    return out


@pytest.mark.parametrize("name", model_params())
def test_bad_samples_are_skipped_counted_and_do_not_change_the_model(name: str) -> None:
    clean, dirty = make_predictor(name, seed=1), make_predictor(name, seed=1)
    for b in CLEAN:
        clean.learn_many(b)
    for b in poisoned(CLEAN):
        dirty.learn_many(b)
    np.testing.assert_array_equal(cols(clean), cols(dirty))
    bad = dirty.stats()["skipped"]  # type: ignore[attr-defined]
    n = sum(1 for k in range(len(CLEAN)) if k % 7 == 3)
    # the inf-CPU and the NaN-time samples are both "not finite"
    assert bad["nan"] == 3 * n and bad["negative"] == n and bad["backwards"] == n
    assert clean.stats()["skipped"]["nan"] == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", model_params())
def test_missing_memory_gaps_and_empty_batches_never_crash(name: str) -> None:
    p = make_predictor(name)
    for k, b in enumerate(CLEAN):
        if 100 <= k < 160:
            continue  # a five-hour gap
        mem = b.mem_gib.copy()
        if k % 5 == 0:
            mem[:] = np.nan
        p.learn_many(SampleBatch(b.streams, b.t, b.cpu_cores, mem))
    p.learn_many(SampleBatch([], np.array([]), np.array([]), np.array([])))
    fb = p.forecast_many(NAMES, 3600)
    assert np.all(np.isfinite(np.column_stack([fb.cpu_p50, fb.cpu_hi, fb.mem_p50, fb.mem_hi])))
    s = p.stats()  # type: ignore[attr-defined]
    assert s["skipped"]["gaps"] == 2 and s["skipped"]["mem_missing"] > 0


def test_a_stream_of_only_bad_samples_is_safe() -> None:
    p = make_predictor("river")
    for k in range(40):
        p.learn_many(SampleBatch(["z"], np.array([1e9 + 300 * k]), np.array([math.nan]), np.array([1.0])))
    f = p.forecast("z", 3600)
    assert f.is_finite() and f.confidence == 0.0 and f.samples == 0
