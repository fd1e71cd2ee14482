"""Scoring a replay: the four metrics of every policy, per trace and in total, from shape timelines.

- ``cost_usd``: everything billed (running shapes, plus boot overlap of every move).
- ``underprovisioned_fraction``: share of replayed steps whose CPU demand exceeded the serving shape's vCPUs.
- ``oom_events``: times memory demand rose above the serving shape's memory (a run of consecutive steps
  above it is one event: the process is killed once, then restarted).
- ``migrations``: moves that completed (a shape change between consecutive steps).

Totals: cost, OOM events and migrations are summed; the under-provisioned fraction is weighted by steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sculpt.domain.catalog import CatalogArrays

EPS = 1e-9


@dataclass(frozen=True)
class Score:
    """Per-stream metric columns of one policy."""

    cost_usd: np.ndarray
    under_steps: np.ndarray
    steps: np.ndarray
    oom_events: np.ndarray
    migrations: np.ndarray

    def row(self, i: int) -> dict[str, float | int]:
        return {
            "cost_usd": round(float(self.cost_usd[i]), 4),
            "underprovisioned_fraction": round(float(self.under_steps[i] / max(self.steps[i], 1)), 6),
            "oom_events": int(self.oom_events[i]),
            "migrations": int(self.migrations[i]),
        }

    def total(self) -> dict[str, float | int]:
        return {
            "cost_usd": round(float(self.cost_usd.sum()), 4),
            "underprovisioned_fraction": round(float(self.under_steps.sum() / max(self.steps.sum(), 1)), 6),
            "oom_events": int(self.oom_events.sum()),
            "migrations": int(self.migrations.sum()),
        }


def score(arrays: CatalogArrays, shapes: np.ndarray, cost_usd: np.ndarray, cpu: np.ndarray, mem: np.ndarray,
          valid: np.ndarray) -> Score:
    """Metrics from a (steps, streams) timeline of serving shape indices and the total $ per stream."""
    idx = np.maximum(shapes, 0)
    cap_cpu = arrays.vcpu[idx]
    cap_mem = arrays.memory_gib[idx]
    under = (np.nan_to_num(cpu, nan=0.0) > cap_cpu + EPS) & valid
    over_mem = (np.nan_to_num(mem, nan=0.0) > cap_mem + EPS) & valid
    rising = over_mem.copy()
    rising[1:] &= ~over_mem[:-1]
    changed = np.zeros_like(valid)
    changed[1:] = (shapes[1:] != shapes[:-1]) & valid[1:] & valid[:-1]
    return Score(cost_usd=np.asarray(cost_usd, dtype=np.float64), under_steps=under.sum(axis=0),
                 steps=valid.sum(axis=0), oom_events=rising.sum(axis=0), migrations=changed.sum(axis=0))
