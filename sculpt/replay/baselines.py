"""The baselines sculpt is measured against: ``static`` (what the owner provisioned) and ``reactive`` (VPA-like).

- ``static_shapes``: the shape the VM was provisioned with (Bitbrains records it) mapped to the cheapest
  catalog shape covering it; for traces without it, the cheapest shape covering the first week's peak.
- ``Reactive``: the Kubernetes Vertical Pod Autoscaler recommender's logic, vectorised over streams: a
  decaying histogram of usage per stream (exponential buckets from 0.01 growing 5 %, weights doubling every
  ``half_life_s`` = 24 h, as VPA does instead of decaying old samples), re-evaluated every hour; the target
  is the p90 of CPU cores plus a 15 % safety margin and, for memory, the p90 of *daily peaks* plus 15 %
  (VPA's memory histogram holds one peak per 24 h aggregation interval, the open interval's running peak
  included), mapped to the cheapest covering shape and applied through the same migration delay as every
  policy. No forecast, no cost/benefit.
"""

from __future__ import annotations

import numpy as np

from sculpt.domain.arrays import IntArray
from sculpt.domain.catalog import CatalogArrays

WEEK_S = 7 * 86400.0


def cheapest_allowed_fit(arrays: CatalogArrays, cpu: np.ndarray, mem: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Index of the cheapest allowed offering covering each (cpu, mem); the largest allowed one if none does."""
    cpu = np.asarray(cpu, dtype=np.float64)
    mem = np.nan_to_num(np.asarray(mem, dtype=np.float64), nan=0.0)
    ok = (arrays.vcpu[None, :] >= cpu[:, None] - 1e-9) & (arrays.memory_gib[None, :] >= mem[:, None] - 1e-9)
    ok &= allowed[None, :]
    first = ok.argmax(axis=1)
    biggest = int(np.flatnonzero(allowed)[np.lexsort((arrays.memory_gib[allowed], arrays.vcpu[allowed]))[-1]])
    return np.where(ok.any(axis=1), first, biggest)


def static_shapes(arrays: CatalogArrays, allowed: np.ndarray, provisioned: list[tuple[float | None, float | None]],
                  cpu: np.ndarray, mem: np.ndarray, t_rel: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The static shape per stream. ``cpu``/``mem``/``t_rel``/``valid`` are (steps, streams)."""
    week = valid & (t_rel <= WEEK_S)
    peak_cpu = np.where(week, np.nan_to_num(cpu, nan=0.0), 0.0).max(axis=0)
    peak_mem = np.where(week, np.nan_to_num(mem, nan=0.0), 0.0).max(axis=0)
    want_cpu = np.array([p[0] if p[0] is not None else peak_cpu[i] for i, p in enumerate(provisioned)])
    want_mem = np.array([p[1] if p[1] is not None else peak_mem[i] for i, p in enumerate(provisioned)])
    return cheapest_allowed_fit(arrays, want_cpu, want_mem, allowed)


class Reactive:
    """VPA-like recommender for N streams (histograms are (streams, buckets) arrays)."""

    FIRST = 0.01  # smallest bucket: 0.01 cores / 0.01 GiB
    RATIO = 1.05  # each bucket 5 % wider than the previous (VPA's default)
    BUCKETS = 260  # 0.01 * 1.05**260 ≈ 3,300: above any catalog shape
    interval_mem_s = 86400.0  # VPA's memory aggregation interval

    def __init__(self, arrays: CatalogArrays, allowed: np.ndarray, n: int, *, percentile: float = 0.9,
                 margin: float = 0.15, half_life_s: float = 86400.0, interval_s: float = 3600.0) -> None:
        self.arrays = arrays
        self.allowed = allowed
        self.percentile = percentile
        self.margin = margin
        self.half_life_s = half_life_s
        self.interval_s = interval_s
        self.cpu_hist = np.zeros((n, self.BUCKETS))
        self.mem_hist = np.zeros((n, self.BUCKETS))
        self.upper = self.FIRST * self.RATIO ** np.arange(self.BUCKETS)  # upper edge of each bucket
        self.day_peak = np.zeros(n)  # running memory peak of the open 24 h interval
        self.day_start = np.zeros(n)
        self.day_w = np.zeros(n)  # weight of the open interval's peak
        self.last_eval = np.zeros(n)  # first recommendation after one interval of history
        self._rows = np.arange(n)

    def _bucket(self, v: np.ndarray) -> IntArray:
        v = np.maximum(np.nan_to_num(v, nan=0.0), self.FIRST)
        b: IntArray = np.ceil(np.log(v / self.FIRST) / np.log(self.RATIO) - 1e-12).astype(np.int64)
        return np.clip(b, 0, self.BUCKETS - 1)

    def observe(self, t_rel: np.ndarray, cpu: np.ndarray, mem: np.ndarray, active: np.ndarray) -> None:
        """Add one sample per active stream (weight doubles every half-life: newer samples count more)."""
        w = np.where(active, np.exp2(t_rel / self.half_life_s), 0.0)
        np.add.at(self.cpu_hist, (self._rows, self._bucket(cpu)), w)
        # memory: one peak per interval; close the intervals that ended, then grow the open peak
        closed = active & (t_rel - self.day_start >= self.interval_mem_s)
        if closed.any():
            np.add.at(self.mem_hist, (self._rows, self._bucket(self.day_peak)), np.where(closed, self.day_w, 0.0))
            self.day_peak = np.where(closed, 0.0, self.day_peak)
            self.day_start = np.where(closed, t_rel, self.day_start)
        m = np.nan_to_num(mem, nan=0.0)
        self.day_peak = np.where(active, np.maximum(self.day_peak, m), self.day_peak)
        self.day_w = np.where(active & np.isfinite(mem), w, self.day_w)

    def _quantile(self, hist: np.ndarray) -> np.ndarray:
        total = hist.sum(axis=1)
        c = np.cumsum(hist, axis=1)
        idx = (c >= self.percentile * total[:, None]).argmax(axis=1)
        return np.where(total > 0, self.upper[idx], 0.0)

    def recommend(self, t_rel: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(due, target shape index): streams whose hourly re-evaluation is due now and their target."""
        due = active & (t_rel - self.last_eval >= self.interval_s - 1e-9)
        if not due.any():
            return due, np.zeros(len(due), dtype=np.int64)
        self.last_eval = np.where(due, t_rel, self.last_eval)
        cpu = self._quantile(self.cpu_hist) * (1.0 + self.margin)
        open_day = self.mem_hist.copy()
        open_day[self._rows, self._bucket(self.day_peak)] += self.day_w
        mem = self._quantile(open_day) * (1.0 + self.margin)
        return due, cheapest_allowed_fit(self.arrays, cpu, mem, self.allowed)
