"""The baselines sculpt is measured against: ``static`` (what the owner provisioned) and three causal rules a
user would otherwise pick — ``reactive`` (VPA-like), ``percentile`` (Compute-Optimizer-like) and ``autopilot``
(GKE-Autopilot-like). Each online rule is a ``Need``: after observing step k it says which streams are due a
re-evaluation and what they need *before* the safety margin; the harness multiplies by ``1 + margin``, maps
to the cheapest covering allowed shape and applies it through the same migration delay as every policy.
One ``Need`` serves every margin of a sweep (the statistic does not depend on the margin). Every rule reads
only samples 0..k: nothing looks ahead. Windows count samples (replayed time), so gaps in a record shrink no
window. No forecast, no cost/benefit.

- ``static_shapes``: the shape the VM was provisioned with (Bitbrains records it) mapped to the cheapest
  catalog shape covering it; for traces without it, the cheapest shape covering the first week's peak.
- ``Reactive``: the Kubernetes Vertical Pod Autoscaler recommender's logic, vectorised over streams: a
  decaying histogram of usage per stream (exponential buckets from 0.01 growing 5 %, weights doubling every
  ``half_life_s`` = 24 h, as VPA does instead of decaying old samples), re-evaluated every hour; the need
  is the p90 of CPU cores and, for memory, the p90 of *daily peaks* (VPA's memory histogram holds one peak
  per 24 h aggregation interval, the open interval's running peak included). Margin 15 % (VPA's).
- ``Percentile``: every hour, the p99 of the last 72 h of CPU samples and the maximum memory of the last
  8 days (AWS Compute Optimizer's look-back, tuned). Margin 0: the p99 is the rule.
- ``Autopilot``: every hour, a moving-window maximum with exponential decay (Rzadca et al., "Autopilot",
  EuroSys 2020): the need is max over the last 8 days of ``sample · 2^(−age / half-life)``, half-life 72 h
  for CPU and memory alike — yesterday's peak still counts 79 %. Margin 15 %.

``percentile`` and ``autopilot`` hold the static shape for their first 24 h (a recommendation needs a day of
history); ``reactive`` starts after its first hour, as VPA does.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sculpt.domain.arrays import BoolArray, FloatArray, IntArray
from sculpt.domain.catalog import CatalogArrays

WEEK_S = 7 * 86400.0
HOUR_S = 3600.0
DAY_S = 86400.0
BASELINES: tuple[str, ...] = ("reactive", "percentile", "autopilot")
DEFAULT_MARGIN: dict[str, float] = {"reactive": 0.15, "percentile": 0.0, "autopilot": 0.15}
Step = tuple[BoolArray, FloatArray, FloatArray]  # (due, cpu need, memory need) before the margin


class Need(Protocol):
    """A causal baseline before its margin: observe step ``k`` (samples of that step given), say who is due."""

    def step(self, k: int, t_rel: np.ndarray, cpu: np.ndarray, mem: np.ndarray, live: np.ndarray) -> Step: ...


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

    def need(self, t_rel: np.ndarray, active: np.ndarray) -> Step:
        """(due, cpu, mem): streams whose hourly re-evaluation is due now and their p90s (before the margin)."""
        due = active & (t_rel - self.last_eval >= self.interval_s - 1e-9)
        n = len(due)
        if not due.any():
            return due, np.zeros(n), np.zeros(n)
        self.last_eval = np.where(due, t_rel, self.last_eval)
        open_day = self.mem_hist.copy()
        open_day[self._rows, self._bucket(self.day_peak)] += self.day_w
        return due, self._quantile(self.cpu_hist), self._quantile(open_day)

    def recommend(self, t_rel: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(due, target shape index): streams whose hourly re-evaluation is due now and their target."""
        due, cpu, mem = self.need(t_rel, active)
        if not due.any():
            return due, np.zeros(len(due), dtype=np.int64)
        m = 1.0 + self.margin
        return due, cheapest_allowed_fit(self.arrays, cpu * m, mem * m, self.allowed)

    def step(self, k: int, t_rel: np.ndarray, cpu: np.ndarray, mem: np.ndarray, live: np.ndarray) -> Step:
        self.observe(t_rel, cpu, mem, live)
        return self.need(t_rel, live)


class _Window:
    """Hourly re-evaluation over trailing windows of the (steps, streams) arrays, rows 0..k only (causal)."""

    def __init__(self, cpu: np.ndarray, mem: np.ndarray, step_s: np.ndarray, *, interval_s: float = HOUR_S,
                 warmup_s: float = DAY_S) -> None:
        self.cpu = np.nan_to_num(np.asarray(cpu, dtype=np.float64), nan=0.0)
        self.mem = np.nan_to_num(np.asarray(mem, dtype=np.float64), nan=0.0)
        self.step_s = np.broadcast_to(np.asarray(step_s, dtype=np.float64), (self.cpu.shape[1],))
        self.interval_s = interval_s
        self.warmup_s = warmup_s
        self.last_eval = np.full(self.cpu.shape[1], -np.inf)

    def steps(self, window_s: float) -> IntArray:
        """Samples per stream in a window of ``window_s`` (at least one)."""
        w: IntArray = np.maximum(np.ceil(window_s / self.step_s - 1e-9), 1).astype(np.int64)
        return w

    def due(self, t_rel: np.ndarray, live: np.ndarray) -> BoolArray:
        due: BoolArray = live & (t_rel >= self.warmup_s - 1e-9) & (t_rel - self.last_eval >= self.interval_s - 1e-9)
        self.last_eval = np.where(due, t_rel, self.last_eval)
        return due

    def groups(self, due: BoolArray, w: IntArray) -> list[tuple[int, IntArray]]:
        """Due streams grouped by window length in samples (one group when all steps agree)."""
        rows = np.flatnonzero(due)
        return [(int(v), rows[w[rows] == v]) for v in np.unique(w[rows])]

    def step(self, k: int, t_rel: np.ndarray, cpu: np.ndarray, mem: np.ndarray, live: np.ndarray) -> Step:
        n = self.cpu.shape[1]
        c, m = np.zeros(n), np.zeros(n)
        due = self.due(t_rel, live)
        if due.any():
            self.compute(k, due, c, m)
        return due, c, m

    def compute(self, k: int, due: BoolArray, cpu_out: FloatArray, mem_out: FloatArray) -> None:
        raise NotImplementedError


class Percentile(_Window):
    """Every hour: the ``q`` quantile of the last ``cpu_window_s`` of CPU, the max memory of ``mem_window_s``."""

    def __init__(self, cpu: np.ndarray, mem: np.ndarray, step_s: np.ndarray, *, q: float = 0.99,
                 cpu_window_s: float = 72 * HOUR_S, mem_window_s: float = 8 * DAY_S, warmup_s: float = DAY_S) -> None:
        super().__init__(cpu, mem, step_s, warmup_s=warmup_s)
        self.q = q
        self.w_cpu, self.w_mem = self.steps(cpu_window_s), self.steps(mem_window_s)

    def compute(self, k: int, due: BoolArray, cpu_out: FloatArray, mem_out: FloatArray) -> None:
        for w, rows in self.groups(due, self.w_cpu):
            cpu_out[rows] = np.quantile(self.cpu[max(0, k - w + 1):k + 1, rows], self.q, axis=0)
        for w, rows in self.groups(due, self.w_mem):
            mem_out[rows] = self.mem[max(0, k - w + 1):k + 1, rows].max(axis=0)


class Autopilot(_Window):
    """Every hour: max over the last ``window_s`` of each sample decayed by ``2^(-age / half_life_s)``."""

    def __init__(self, cpu: np.ndarray, mem: np.ndarray, step_s: np.ndarray, *, window_s: float = 8 * DAY_S,
                 half_life_s: float = 72 * HOUR_S, mem_half_life_s: float = 72 * HOUR_S,
                 warmup_s: float = DAY_S) -> None:
        super().__init__(cpu, mem, step_s, warmup_s=warmup_s)
        self.w = self.steps(window_s)
        self.half_life_s, self.mem_half_life_s = half_life_s, mem_half_life_s

    def compute(self, k: int, due: BoolArray, cpu_out: FloatArray, mem_out: FloatArray) -> None:
        for w, rows in self.groups(due, self.w):
            lo = max(0, k - w + 1)
            age_s = (k - np.arange(lo, k + 1))[:, None] * self.step_s[rows][None, :]
            cpu_out[rows] = (self.cpu[lo:k + 1, rows] * np.exp2(-age_s / self.half_life_s)).max(axis=0)
            mem_out[rows] = (self.mem[lo:k + 1, rows] * np.exp2(-age_s / self.mem_half_life_s)).max(axis=0)


def make_need(kind: str, arrays: CatalogArrays, allowed: np.ndarray, cpu: np.ndarray, mem: np.ndarray,
              step_s: np.ndarray) -> Need:
    """The ``Need`` of baseline ``kind`` (one of ``BASELINES``) over the aligned (steps, streams) arrays."""
    if kind == "reactive":
        return Reactive(arrays, allowed, cpu.shape[1])
    if kind == "percentile":
        return Percentile(cpu, mem, step_s)
    if kind == "autopilot":
        return Autopilot(cpu, mem, step_s)
    raise ValueError(f"unknown baseline {kind!r}")


def with_margin(arrays: CatalogArrays, allowed: np.ndarray, cpu: np.ndarray, mem: np.ndarray,
                margin: float) -> IntArray:
    """The cheapest allowed shape covering the need times ``1 + margin``."""
    target: IntArray = cheapest_allowed_fit(arrays, cpu * (1.0 + margin), mem * (1.0 + margin), allowed)
    return target
