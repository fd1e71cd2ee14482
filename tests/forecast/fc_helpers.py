"""Helpers for the forecasting tests: small seeded synthetic fleets (no wall clock, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest

from sculpt.forecast import MODELS, torch_available
from sculpt.forecast.base import SampleBatch

T0 = 1_700_002_800.0  # an hour boundary (seconds since the epoch)


def fleet(n_streams: int = 3, days: float = 2.0, seed: int = 0, tick_s: float = 300.0) -> list[SampleBatch]:
    """Diurnal CPU with noise and a level shift, memory drifting slowly; one batch per 5-minute tick."""
    rng = np.random.default_rng(seed)
    ticks = int(days * 86400 / tick_s)
    names = [f"vm-{i}" for i in range(n_streams)]
    base = 0.5 + np.arange(n_streams)
    out = []
    for k in range(ticks):
        t = T0 + k * tick_s + 7.0
        day = 1.0 + 0.5 * np.sin(2 * np.pi * (t % 86400) / 86400)
        shift = 1.0 if k < ticks * 0.7 else 1.8
        cpu = base * day * shift * rng.lognormal(0.0, 0.15, n_streams)
        mem = 2.0 * base + 0.001 * k + 0.05 * rng.random(n_streams)
        out.append(SampleBatch(streams=names, t=np.full(n_streams, t), cpu_cores=cpu, mem_gib=mem))
    return out


def model_params() -> list[object]:
    return [pytest.param(m, marks=pytest.mark.skipif(m == "lstm" and not torch_available(),
                                                       reason="torch is not installed")) for m in MODELS]
