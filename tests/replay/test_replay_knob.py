"""The aggressiveness knob means something: on a small synthetic suite (steps, daily cycles, bursts,
memory growth), a higher aggressiveness never costs more and never runs safer, and at 0 every move
prevents a breach (the run never shrinks a stream). Deterministic replays with the stub predictor."""

from __future__ import annotations

import numpy as np

from sculpt.decide.cost import CostModel
from sculpt.replay.harness import ReplayConfig, run_replay

DAY = 288  # 5-minute steps
KNOB = (0.0, 0.2, 0.5, 0.8, 1.0)


def suite(trace):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    k = np.arange(3 * DAY)
    cycle = 1.2 + np.sin(2 * np.pi * k / DAY)
    bursts = 0.4 + 2.5 * (rng.random(len(k)) < 0.03)
    return [trace([0.5] * DAY + [1.5] * DAY + [0.3] * DAY, name="step", step_s=300.0, provisioned=(4, 4)),
            trace(list(cycle + 0.1 * rng.random(len(k))), name="cycle", step_s=300.0, provisioned=(4, 4)),
            trace(list(bursts), name="bursts", step_s=300.0, provisioned=(4, 4)),
            trace([1.0] * len(k), name="mem", step_s=300.0, mem=list(np.linspace(0.5, 3.5, len(k))),
                  provisioned=(4, 4))]


def test_higher_aggressiveness_never_costs_more_nor_runs_safer(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    traces = suite(trace)
    out = []
    for a in KNOB:
        cfg = ReplayConfig(region="r", families=("s",), migration_s=600.0, policies=("sculpt",),
                           cost=CostModel(aggressiveness=a, overlap_s=600.0))
        r = run_replay(traces, catalog, cfg, predictor_factory=lambda: stub_predictor())
        s = r.scores["sculpt"]
        out.append((a, float(s.cost_usd.sum()), float(s.under_steps.sum() / max(s.steps.sum(), 1)), r))
    for (a, cost, risk, _), (b, cost2, risk2, _) in zip(out, out[1:], strict=False):
        assert cost2 <= cost + 1e-9, f"aggressiveness {b} costs more than {a}: {cost2} > {cost}"
        assert risk2 >= risk - 1e-12, f"aggressiveness {b} runs safer than {a}: {risk2} < {risk}"
    assert out[-1][1] < out[0][1]  # the knob trades something on this suite
    # at 0, every move prevents a breach: no stream ever goes to a smaller shape
    shapes = out[0][3].shapes["sculpt"]
    vcpu = out[0][3].arrays.vcpu
    for j in range(shapes.shape[1]):
        seq = [int(x) for x in shapes[:, j] if x >= 0]
        assert all(vcpu[b] >= vcpu[a] for a, b in zip(seq, seq[1:], strict=False)), f"stream {j} shrank at 0"
