"""A short replay of real Bitbrains VMs: invariants that must hold on any data (the full 57-VM comparison
against the targets is a benchmark: ``sculpt bench replay``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sculpt.catalog import load_catalog
from sculpt.replay.harness import ReplayConfig, run_replay
from sculpt.replay.readers import read_trace

STEPS = 3 * 2016  # three weeks of 5-minute steps


@pytest.mark.data
def test_real_replay_invariants(bitbrains: Path) -> None:
    files = [bitbrains / f"vm_{v}.csv.gz" for v in (68, 386, 27, 12)]
    traces = [read_trace(f) for f in files if f.exists()]
    if len(traces) < 2:
        pytest.skip("expected Bitbrains VMs not found")
    traces = [dataclasses.replace(t, t=t.t[:STEPS], cpu=t.cpu[:STEPS], mem=t.mem[:STEPS]) for t in traces]
    r = run_replay(traces, load_catalog("aws"), ReplayConfig(model="last-value"))
    sc = r.scores
    allowed = set(ReplayConfig().families)
    for p, shapes in r.shapes.items():
        used = {str(r.arrays.families[i]) for i in np.unique(shapes) if i >= 0}
        assert used <= allowed, p
    # the oracle never runs short (these VMs fit the largest shape) and is the cheapest of those that do not
    assert sc["oracle"].under_steps.sum() == 0 and sc["oracle"].oom_events.sum() == 0
    for p, s in sc.items():
        for i in range(len(traces)):
            if s.under_steps[i] == 0 and s.oom_events[i] == 0:
                assert s.cost_usd[i] >= sc["oracle"].cost_usd[i] - 1e-6, (p, traces[i].name)
    # policy holds in replay: no stream moves more than the default cap of 24 a day
    moves = np.zeros_like(r.shapes["sculpt"], dtype=bool)
    moves[1:] = r.shapes["sculpt"][1:] != r.shapes["sculpt"][:-1]
    c = np.cumsum(moves, axis=0)
    rolling = c[288:] - c[:-288]  # moves in every 24 h window
    assert rolling.max() <= 24
    # static never moves; sculpt costs less than the owners' provisioned shapes
    assert sc["static"].migrations.sum() == 0
    assert sc["sculpt"].cost_usd.sum() < sc["static"].cost_usd.sum()
