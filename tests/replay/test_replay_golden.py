"""Golden replays: small synthetic traces whose optimal plan is known by hand, all four policies side by side,
and the determinism of a seeded replay."""

from __future__ import annotations

import numpy as np
import pytest

from sculpt.replay.harness import ReplayConfig, run_replay

DAY = 288  # 5-minute steps
CFG = ReplayConfig(region="r", families=("s",), migration_s=600.0)  # d = 2 steps of boot overlap


def replay(catalog, traces, stub_predictor, **kw):  # type: ignore[no-untyped-def]
    cfg = ReplayConfig(**{**CFG.__dict__, **kw})
    return run_replay(traces, catalog, cfg, predictor_factory=lambda: stub_predictor())


def test_step_up(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    tr = trace([0.5] * DAY + [1.5] * DAY, step_s=300.0, provisioned=(4, 4))
    r = replay(catalog, [tr], stub_predictor)
    m = {p: s.row(0) for p, s in r.scores.items()}
    # by hand: s1 for a day ($24), s2 boots 10 minutes ($2/6), s2 for a day ($48)
    assert m["oracle"]["cost_usd"] == pytest.approx(24 + 2 / 6 + 48, abs=1e-3)
    assert m["oracle"]["migrations"] == 1 and m["oracle"]["underprovisioned_fraction"] == 0
    assert m["static"]["cost_usd"] == pytest.approx(4 * 48) and m["static"]["migrations"] == 0
    # sculpt: down to s1 at once, then an urgent upsizing that serves d + 1 = 3 steps after the jump
    assert m["sculpt"]["migrations"] == 2
    assert r.scores["sculpt"].under_steps[0] == 3
    assert r.arrays.names[r.shapes["sculpt"][-1, 0]] == "s2"
    assert m["sculpt"]["cost_usd"] < 1.1 * m["oracle"]["cost_usd"]
    assert m["sculpt"]["cost_usd"] < m["reactive"]["cost_usd"] < m["static"]["cost_usd"]


def test_daily_cycle(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    day = [0.5] * (DAY // 2) + [1.5] * (DAY // 2)
    tr = trace(day * 3, step_s=300.0)  # no provisioned shape: static covers the first week's peak (s2)
    r = replay(catalog, [tr], stub_predictor)
    m = {p: s.row(0) for p, s in r.scores.items()}
    assert r.arrays.names[r.shapes["static"][0, 0]] == "s2"
    # oracle follows the cycle: 3 half-days on s1 ($12 each), 3 on s2 ($24), 3 ups ($2/6) and 2 downs ($1/6)
    assert m["oracle"]["cost_usd"] == pytest.approx(3 * 12 + 3 * 24 + 3 * (2 / 6) + 2 * (1 / 6), abs=1e-3)
    assert m["oracle"]["migrations"] == 5
    assert m["sculpt"]["migrations"] == 6  # down, then up/down at every edge
    assert r.scores["sculpt"].under_steps[0] == 3 * 3  # three upward edges, d + 1 steps each
    assert m["sculpt"]["cost_usd"] < m["static"]["cost_usd"]
    # the oracle is the lower bound of every policy that never under-provisions
    for p, s in r.scores.items():
        if s.under_steps[0] == 0:
            assert s.cost_usd[0] >= r.scores["oracle"].cost_usd[0] - 1e-9, p


def test_spike_is_absorbed_without_flapping(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    cpu = [0.5] * (2 * DAY)
    cpu[DAY] = 1.5
    r = replay(catalog, [trace(cpu, step_s=300.0, provisioned=(1, 1))], stub_predictor)
    m = {p: s.row(0) for p, s in r.scores.items()}
    assert m["oracle"]["migrations"] == 2  # up for the spike and down again: cheaper than a day on s2
    assert m["oracle"]["cost_usd"] == pytest.approx(48 - 1 / 12 + 2 / 12 + 2 / 6 + 1 / 6, abs=1e-3)
    assert r.scores["sculpt"].under_steps[0] == 1  # nobody can see a one-step spike coming
    assert m["sculpt"]["migrations"] <= 2
    assert m["reactive"]["migrations"] == 0  # a one-step spike does not move a p90


def test_memory_breaches_count_as_oom_events(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    mem = [0.5] * 20 + [1.5] * 3 + [0.5] * 20 + [1.5] * 3 + [0.5] * 20
    r = replay(catalog, [trace([0.2] * len(mem), step_s=300.0, mem=mem, provisioned=(1, 1))], stub_predictor,
               policies=("static", "oracle"))
    assert r.scores["static"].oom_events[0] == 2  # two runs above 1 GiB: two events, not six steps
    assert r.scores["oracle"].oom_events[0] == 0


def test_seeded_replay_is_deterministic(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    traces = [trace(list(rng.gamma(2, 0.4, 2 * DAY)), name=f"t{i}", step_s=300.0,
                    mem=list(rng.uniform(0.2, 1.5, 2 * DAY))) for i in range(3)]
    runs = [replay(catalog, traces, stub_predictor, capacity_error_rate=0.3, seed=11).to_json(per_trace=True)
            for _ in range(2)]
    for r in runs:
        r.pop("elapsed_s")
    assert runs[0] == runs[1]
    assert set(runs[0]["policies"]) == {"static", "reactive", "sculpt", "oracle"}


def test_replay_with_a_real_forecast_model_is_deterministic(catalog, trace) -> None:  # type: ignore[no-untyped-def]
    from sculpt.forecast import make_predictor

    rng = np.random.default_rng(5)
    day = 0.6 + 0.5 * np.sin(np.arange(2 * DAY) * 2 * np.pi / DAY)
    traces = [trace(list(day * rng.lognormal(0, 0.1, 2 * DAY)), name=f"v{i}", step_s=300.0) for i in range(2)]
    out = []
    for _ in range(2):
        r = run_replay(traces, catalog, ReplayConfig(**{**CFG.__dict__, "policies": ("sculpt",)}),
                       predictor_factory=lambda: make_predictor("seasonal-naive", seed=1))
        j = r.to_json(per_trace=True)
        j.pop("elapsed_s")
        out.append(j)
    assert out[0] == out[1]


def test_memory_recall_avoids_repeating_ooms(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    # memory idles at 0.5 GiB but a nightly job needs 1.5 GiB for an hour, every day
    day = [0.5] * (DAY - 12) + [1.5] * 12
    tr = trace([0.2] * (4 * DAY), step_s=300.0, mem=day * 4, provisioned=(2, 2))
    ooms = {}
    for recall in (0, 24):
        r = replay(catalog, [tr], stub_predictor, mem_recall_h=recall, policies=("sculpt",))
        ooms[recall] = int(r.scores["sculpt"].oom_events[0])
    assert ooms[0] >= 3  # forgets the job each day and shrinks to s1
    assert ooms[24] <= 1  # only the first night, before anything was seen


def test_capacity_errors_leave_instances_where_they_are(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    tr = trace([0.5] * DAY + [1.5] * DAY, step_s=300.0, provisioned=(4, 4))
    r = replay(catalog, [tr], stub_predictor, capacity_error_rate=1.0)
    assert r.scores["sculpt"].migrations[0] == 0 and r.scores["reactive"].migrations[0] == 0
    assert r.scores["sculpt"].cost_usd[0] == pytest.approx(r.scores["static"].cost_usd[0])
