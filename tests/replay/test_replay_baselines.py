"""The baselines: percentile (p99 of 72 h, max memory of 8 days) and autopilot (decayed window max), causal,
margins that trade cost for risk, and sweeps that score exactly what separate runs would."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.replay.baselines import BASELINES, Autopilot, Percentile, make_need, with_margin
from sculpt.replay.fanout import Echo, Lead
from sculpt.replay.harness import POLICIES, ReplayConfig, run_replay
from tests.replay.conftest import RecentPeak, make_trace, tiny_catalog

ARR = tiny_catalog().arrays("r")
ALLOWED = np.ones(len(ARR), dtype=bool)
H = 3600.0


def _targets(need, cpu: np.ndarray, mem: np.ndarray, step_s: float, margin: float) -> list[int | None]:  # type: ignore[no-untyped-def]
    """The shape (vCPU) the rule asks for at each step, None where it is not due."""
    out: list[int | None] = []
    for k in range(cpu.shape[0]):
        live = np.ones(cpu.shape[1], dtype=bool)
        due, c, m = need.step(k, np.full(cpu.shape[1], k * step_s), cpu[k], mem[k], live)
        out.append(int(ARR.vcpu[with_margin(ARR, ALLOWED, c, m, margin)[0]]) if due[0] else None)
    return out


def test_percentile_waits_a_day_then_covers_the_p99_of_72_hours_hourly() -> None:
    cpu = np.full((100, 1), 0.5)
    cpu[30, 0] = 1.5  # one burst: inside the 72 h window it is the p99 of 31..72 samples, then it falls out
    mem = np.full((100, 1), np.nan)
    got = _targets(Percentile(cpu, mem, np.array([H])), cpu, mem, H, margin=0.0)
    assert got[:24] == [None] * 24  # a day of history first
    assert set(got[24:30]) == {1}  # 0.5 cores: s1
    # the burst sets the p99 (interpolated: 0.5 + (1 - 0.01 (N - 1)) cores over N samples) while N <= 50
    assert set(got[30:50]) == {2} and got[50] == 1
    with_margin_half = _targets(Percentile(cpu, mem, np.array([H])), cpu, mem, H, margin=1.5)
    assert set(with_margin_half[24:30]) == {2}  # 0.5 x 2.5 = 1.25 cores


def test_percentile_memory_is_the_max_of_eight_days() -> None:
    cpu = np.full((24 * 10, 1), 0.1)
    mem = np.full((24 * 10, 1), 0.5)
    mem[30, 0] = 3.0
    got = _targets(Percentile(cpu, mem, np.array([H])), cpu, mem, H, margin=0.0)
    assert got[30 + 8 * 24 - 1] == 4 and got[30 + 8 * 24] == 1  # held exactly 8 days, then dropped


def test_autopilot_decays_a_spike_with_a_72_hour_half_life() -> None:
    n = 24 * 8
    cpu = np.full((n, 1), 0.5)
    cpu[0, 0] = 3.5
    mem = np.full((n, 1), np.nan)
    got = _targets(Autopilot(cpu, mem, np.array([H])), cpu, mem, H, margin=0.15)
    # 3.5 x 1.15 x 2^(-h/72) > 2 until h = 72 log2(2.0125) ~ 72.6 h; > 1 until ~144.6 h
    assert got[72] == 4 and got[73] == 2 and got[144] == 2 and got[145] == 1


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(BASELINES), seed=st.integers(0, 10_000), cut=st.integers(1, 70))
def test_baselines_are_causal(kind: str, seed: int, cut: int) -> None:
    """Changing what happens after step ``cut`` changes nothing the rule decided up to it."""
    rng = np.random.default_rng(seed)
    k, n = 72, 3
    cpu = rng.uniform(0, 3, (k, n))
    mem = rng.uniform(0, 3, (k, n))
    cpu2, mem2 = cpu.copy(), mem.copy()
    cpu2[cut + 1:] = rng.uniform(0, 4, (k - cut - 1, n))
    mem2[cut + 1:] = rng.uniform(0, 4, (k - cut - 1, n))
    a = make_need(kind, ARR, ALLOWED, cpu, mem, np.full(n, 1800.0))
    b = make_need(kind, ARR, ALLOWED, cpu2, mem2, np.full(n, 1800.0))
    live = np.ones(n, dtype=bool)
    for i in range(cut + 1):
        t = np.full(n, i * 1800.0)
        ra, rb = a.step(i, t, cpu[i], mem[i], live), b.step(i, t, cpu2[i], mem2[i], live)
        for x, y in zip(ra, rb, strict=True):
            assert np.array_equal(x, y)


@settings(max_examples=40, deadline=None)
@given(c=st.floats(0, 5), m=st.floats(0, 5), lo=st.floats(0, 1), extra=st.floats(0, 1))
def test_a_larger_margin_never_picks_a_cheaper_shape(c: float, m: float, lo: float, extra: float) -> None:
    a = with_margin(ARR, ALLOWED, np.array([c]), np.array([m]), lo)
    b = with_margin(ARR, ALLOWED, np.array([c]), np.array([m]), lo + extra)
    assert ARR.price[b[0]] >= ARR.price[a[0]]


def _fleet() -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(4)
    hours = 24 * 5
    day = np.sin(np.arange(hours) * 2 * np.pi / 24)
    return [make_trace(np.clip(1.2 + 0.9 * day + rng.uniform(0, 0.6, hours), 0, 3.9), name="wave", step_s=H,
                       mem=np.clip(1.0 + 0.5 * day, 0.1, 3.9), provisioned=(4.0, 4.0)),
            make_trace(np.clip(0.4 + rng.uniform(0, 0.3, hours), 0, 3.9), name="flat", step_s=H,
                       provisioned=(4.0, 4.0))]


def test_every_policy_runs_side_by_side() -> None:
    r = run_replay(_fleet(), tiny_catalog(), ReplayConfig(region="r", families=(), policies=POLICIES),
                   predictor_factory=RecentPeak)
    assert list(r.scores) == list(POLICIES)
    oracle = r.scores["oracle"]
    for p in ("reactive", "percentile", "autopilot"):
        s = r.scores[p]
        assert s.migrations.sum() > 0, p  # they right-size the over-provisioned s4
        assert s.cost_usd.sum() < r.scores["static"].cost_usd.sum(), p
        for i in range(2):  # nothing that never runs short beats the oracle
            if s.under_steps[i] == 0 and s.oom_events[i] == 0:
                assert s.cost_usd[i] >= oracle.cost_usd[i] - 1e-9, (p, i)


def test_a_sweep_scores_exactly_what_separate_runs_would() -> None:
    """Shared statistics (baselines) and one shared forecast (sculpt) give the same scores as one run each."""
    traces, cat = _fleet(), tiny_catalog()
    base = ReplayConfig(region="r", families=(), policies=("static", "percentile", "reactive", "sculpt", "oracle"))
    swept = ReplayConfig(**{**base.__dict__, "sweep_aggressiveness": (0.0, 0.5, 1.0),
                            "sweep_margins": {"percentile": (0.0, 0.3), "reactive": (0.5,)}})
    r = run_replay(traces, cat, swept, predictor_factory=RecentPeak)
    got = {(v.policy, v.param): v for v in r.sweep}
    assert set(got) == {("sculpt", 0.0), ("sculpt", 0.5), ("sculpt", 1.0), ("percentile", 0.0),
                        ("percentile", 0.3), ("reactive", 0.15), ("reactive", 0.5)}
    assert got[("sculpt", 0.5)].default and got[("percentile", 0.0)].default and not got[("sculpt", 1.0)].default
    assert "sculpt@1" not in r.shapes  # variants are scored, not kept for plotting
    for (pol, v), point in got.items():
        if pol == "sculpt":
            alone = ReplayConfig(**{**base.__dict__, "policies": ("sculpt",),
                                    "cost": base.cost.__class__(aggressiveness=v)})
        else:
            alone = ReplayConfig(**{**base.__dict__, "policies": (pol,), "margins": {pol: v}})
        one = run_replay(traces, cat, alone, predictor_factory=RecentPeak).scores[pol]
        assert point.score.total() == one.total(), (pol, v)


def test_an_echo_must_follow_its_lead() -> None:
    lead = Lead(RecentPeak())  # type: ignore[arg-type]
    echo = Echo(lead)
    with pytest.raises(RuntimeError, match="after its lead"):
        echo.forecast_many(["a"], 3600.0)
    fc = lead.forecast_many(["a"], 3600.0)
    assert echo.forecast_many(["a"], 3600.0) is fc
    with pytest.raises(RuntimeError):
        echo.forecast_many(["b"], 3600.0)
