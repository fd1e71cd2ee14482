"""Period aggregation, conformal intervals, confidence, persistence through the ledger, capabilities."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from fc_helpers import T0, fleet

from sculpt.forecast import capabilities, make_predictor
from sculpt.forecast.base import SampleBatch
from sculpt.forecast.engine import ModelLoadError, confidence, row_quantile
from sculpt.forecast.persist import restore, save
from sculpt.forecast.state import StreamTable, period_p95, tail_max
from sculpt.ledger import Ledger


def test_period_p95_is_numpy_percentile_and_ignores_missing_slots() -> None:
    rng = np.random.default_rng(0)
    v = rng.random((50, 12))
    v[::3, 4] = np.nan
    want = np.array([np.percentile(r[~np.isnan(r)], 95) for r in v])
    np.testing.assert_allclose(period_p95(v), want)
    assert np.isnan(period_p95(np.full((1, 12), np.nan))[0])


def test_tail_is_the_max_of_the_newest_observed_slots() -> None:
    v = np.array([[1, 5, 2, np.nan, 3.0], [9, 1, 1, 1, 1.0]])
    np.testing.assert_array_equal(tail_max(v, 3), [5.0, 1.0])


def test_a_period_closes_at_its_last_slot_or_when_a_later_one_starts() -> None:
    st = StreamTable(period_s=3600)
    idx = st.indices(["a", "b"])
    for k in range(11):
        assert st.push(idx, np.full(2, T0 + 300 * k), np.ones(2), np.ones(2)).size == 0
    # "a" reaches its last slot; "b" skips it and is closed late by its next period's first sample
    assert st.push(idx[:1], np.array([T0 + 3300.0]), np.array([4.0]), np.array([1.0])).tolist() == [0]
    assert st.push(idx[1:], np.array([T0 + 3600.0]), np.array([2.0]), np.array([1.0])).tolist() == [1]
    cpu, _ = st.last(idx, 1)
    np.testing.assert_allclose(cpu[:, 0], [np.percentile([1] * 11 + [4], 95), 1.0])


def test_row_quantile_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(20, 30))
    q = rng.uniform(0, 1, 20)
    np.testing.assert_allclose(row_quantile(v, q), [np.quantile(r, qq) for r, qq in zip(v, q, strict=True)])


def test_confidence_rises_with_history_and_falls_with_width_and_miscalibration() -> None:
    w = np.array([0.5])
    assert confidence(w, np.array([0.9]), np.array([0]))[0] == 0.0
    hist = [confidence(w, np.array([0.9]), np.array([n]))[0] for n in (1, 6, 24, 200)]
    assert all(a < b for a, b in zip(hist, hist[1:], strict=False)) and hist[-1] <= 1
    assert confidence(np.array([2.0]), np.array([0.9]), np.array([48]))[0] < confidence(w, np.array([0.9]),
                                                                                          np.array([48]))[0]
    assert confidence(w, np.array([0.6]), np.array([48]))[0] < confidence(w, np.array([0.9]), np.array([48]))[0]


def test_intervals_cover_about_ninety_percent_on_a_noisy_stream() -> None:
    p = make_predictor("last-value")
    rng = np.random.default_rng(2)
    inside = []
    for h in range(24 * 20):
        if h > 48:
            f = p.forecast("s", 3600)
        vals = rng.lognormal(0, 0.3, 12)
        for k in range(12):
            p.learn_many(SampleBatch(["s"], np.array([T0 + 3600 * h + 300 * k + 1]), vals[k:k + 1], np.ones(1)))
        if h > 48:
            y = np.percentile(vals, 95)
            inside.append(f.cpu_lo <= y <= f.cpu_hi)
    assert 0.84 <= np.mean(inside) <= 0.96


def test_checkpoint_round_trip_through_the_ledger(tmp_path: object) -> None:
    led = Ledger(os.path.join(str(tmp_path), "ledger.db"))
    a = make_predictor("river", seed=4)
    for b in fleet(n_streams=2, days=1.0):
        a.learn_many(b)
    assert save(led, "web", a) > 0
    b, note = restore(led, "web", "river")
    assert note is None
    fa, fb = a.forecast_many(["vm-0", "vm-1"], 3600), b.forecast_many(["vm-0", "vm-1"], 3600)
    np.testing.assert_array_equal(fa.cpu_p50, fb.cpu_p50)
    np.testing.assert_array_equal(fa.mem_hi, fb.mem_hi)


def test_a_corrupt_checkpoint_is_reported_and_replaced_by_a_fresh_model(tmp_path: object) -> None:
    led = Ledger(os.path.join(str(tmp_path), "ledger.db"))
    led.save_checkpoint("web", "river", b"\x00not a model")
    p, note = restore(led, "web", "river")
    assert note is not None and "fresh" in note
    assert p.forecast("vm-0", 3600).samples == 0
    fresh, none = restore(led, "other", "river")
    assert none is None and fresh.name == "river"


def test_loading_another_models_blob_is_a_model_load_error() -> None:
    blob = make_predictor("last-value").dumps()
    with pytest.raises(ModelLoadError, match="To fix"):
        make_predictor("river").loads(blob)


def test_without_torch_the_ensemble_is_river_only_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCULPT_NO_TORCH", "1")
    caps = capabilities()
    assert caps["torch"] is False and caps["ensemble"] == "river-only" and "lstm" not in caps["models"]
    e = make_predictor("ensemble")
    assert "lstm" not in e.member_names and any("river-only" in n for n in e.notes)  # type: ignore[attr-defined]
    from sculpt.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="torch"):
        make_predictor("lstm")


def test_the_cli_and_the_forecast_package_do_not_import_torch_or_river() -> None:
    code = ("import sys, sculpt.cli.main, sculpt.forecast, sculpt.decide.distribution; "
            "print(sorted(m for m in ('torch', 'river', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _regime_stream(hours: int = 120, change_at: int = 48, seed: int = 0, flip_h: int = 2) -> list[SampleBatch]:
    """A calm stream that, from ``change_at`` hours on, jumps between 1 and 6 cores every ``flip_h`` hours."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(hours * 12):
        h = k // 12
        level = 1.0 if h < change_at or (h // flip_h) % 2 == 0 else 6.0
        out.append(SampleBatch(["s"], np.array([T0 + 300 * k + 1]), np.array([level * rng.lognormal(0, 0.05)]),
                               np.array([2.0])))
    return out


def test_a_regime_change_is_detected_as_drift_and_a_stationary_stream_is_not() -> None:
    changed, calm = make_predictor("river"), make_predictor("river")
    for b in _regime_stream():
        changed.learn_many(b)
    for b in _regime_stream(change_at=10_000):
        calm.learn_many(b)
    assert changed.drifts >= 1  # type: ignore[attr-defined]
    assert calm.drifts == 0  # type: ignore[attr-defined]


def test_a_fleet_closing_together_is_handled_over_several_ticks() -> None:
    p = make_predictor("last-value", close_budget=2)
    names = [f"s{i}" for i in range(5)]
    for k in range(12):  # one hour: every stream's period closes at the 12th tick
        p.learn_many(SampleBatch(names, np.full(5, T0 + 300 * k + 1), np.full(5, 1.0 + k), np.ones(5)))
    assert p.forecast_many(names, 3600).samples.tolist() == [1, 1, 1, 1, 1]
    assert int(np.isfinite(p.fc[:5, 0]).sum()) == 2  # type: ignore[attr-defined]
    for k in range(12, 14):
        p.learn_many(SampleBatch(names, np.full(5, T0 + 300 * k + 1), np.ones(5), np.ones(5)))
    assert int(np.isfinite(p.fc[:5, 0]).sum()) == 5  # type: ignore[attr-defined]


def test_bench_tick_reports_boundary_and_other_ticks() -> None:
    from sculpt.forecast import bench_tick

    r = bench_tick(50, 24, "river")
    assert r["streams"] == 50 and r["ticks"] == 24
    assert r["boundary_mean_ms"] is not None and r["between_mean_ms"] is not None
    assert r["p50_ms"] <= r["max_ms"]
