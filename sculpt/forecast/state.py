"""Per-stream state for thousands of instance streams, as numpy columns (no Python loop per stream per tick).

Why it exists: every model learns from the same thing, a *period series* per stream. Raw samples (one
per tick, any cadence) are folded into 5-minute *slots* (mean of the samples in the slot); when a period
(the forecast horizon, one hour by default) closes, its CPU demand is the p95 over its slots and its memory
demand the peak. Models only see closed periods, so their work is bounded by the period rate, not the
tick rate; the per-tick part here is a few vectorised numpy operations for the whole fleet.

A period closes eagerly when a sample lands in its last slot (so the forecast for the next period is ready
before it starts), or late when a sample of a later period arrives. Samples are validated on the way in:
non-finite or negative CPU, non-finite or backwards timestamps are skipped and counted in ``bad``; a
missing memory reading carries the last one forward (counted in ``bad["mem_missing"]``); a jump over one or
more whole periods is counted in ``bad["gaps"]`` (the history simply continues: lags are "periods observed").

>>> import numpy as np
>>> st = StreamTable(period_s=3600)
>>> idx = st.indices(["a", "b"])
>>> for k in range(12):
...     closed = st.push(idx, np.full(2, 300.0 * k), np.array([1.0, 2.0]), np.array([0.5, np.nan]))
>>> closed.tolist(), st.n_periods[:2].tolist()
([0, 1], [1, 1])
>>> st.last(closed, 1)[0][:, 0].tolist()
[1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

from sculpt.domain.arrays import BoolArray, FloatArray, IntArray

EXTRA_CHANNELS: tuple[str, ...] = ("net_kbps", "disk_kbps", "latency_ms", "rps")
TAIL_SLOTS = 3  # the "tail" of a period: its last 3 slots (15 minutes), the freshest view of demand
BAD_KINDS: tuple[str, ...] = ("nan", "negative", "backwards", "mem_missing", "gaps", "late")


class TableState(TypedDict):
    """What ``StreamTable.state`` returns and ``StreamTable.from_state`` reads back (plain, picklable)."""

    k: int
    period_s: float
    H: int
    keys: list[str]
    bad: dict[str, int]
    arrays: dict[str, NDArray[Any]]


class StreamTable:
    """Slots of the open period and a ring of closed periods, one row per stream."""

    # per-row columns, allocated (and grown) by ``_alloc``; the first axis is the stream row
    last_t: FloatArray  # time of the last accepted sample, s
    period_id: IntArray  # index of the open period (t // period_s), -1 before the first sample
    closed_flag: BoolArray  # the open period has already been closed eagerly
    slot_sum: FloatArray  # (rows, k) CPU cores summed per slot of the open period
    slot_cnt: FloatArray  # (rows, k) samples per slot
    mem_peak: FloatArray  # GiB, peak of the open period
    last_mem: FloatArray  # GiB, last reading (carried forward over missing ones)
    last_cpu: FloatArray  # cores, last reading
    extra_sum: FloatArray  # (rows, len(EXTRA_CHANNELS))
    extra_cnt: FloatArray
    hist_cpu: FloatArray  # (rows, H) ring of closed periods: p95 CPU cores
    hist_mem: FloatArray  # (rows, H) peak memory GiB
    hist_slotmax: FloatArray
    hist_slotlast: FloatArray
    hist_tail: FloatArray
    hist_pid: IntArray
    hist_extra: FloatArray  # (rows, H, len(EXTRA_CHANNELS))
    n_periods: IntArray  # closed periods seen
    head: IntArray  # next ring position
    skipped: IntArray  # samples rejected by validation

    def __init__(self, period_s: float = 3600.0, *, slot_s: float = 300.0, history: int = 192) -> None:
        self.k = max(1, int(round(period_s / slot_s)))  # slots per period
        self.period_s = float(period_s)
        self.slot_s = self.period_s / self.k
        self.H = int(history)
        self.index: dict[str, int] = {}
        self.keys: list[str] = []
        self._last_streams: Sequence[str] | None = None
        self._last_idx: IntArray | None = None
        self._unique_idx: IntArray | None = None
        self.bad: dict[str, int] = dict.fromkeys(BAD_KINDS, 0)
        self._alloc(0, 16)

    # -- storage ---------------------------------------------------------------------------------------------
    def _alloc(self, old: int, cap: int) -> None:
        def grow(name: str, shape: tuple[int, ...], fill: float, dtype: type = np.float64) -> None:
            new: NDArray[Any] = np.full((cap, *shape), fill, dtype=dtype)
            if old:
                new[:old] = getattr(self, name)[:old]
            setattr(self, name, new)

        k, H, E = self.k, self.H, len(EXTRA_CHANNELS)
        grow("last_t", (), -np.inf)
        grow("period_id", (), -1, np.int64)
        grow("closed_flag", (), 0, np.bool_)
        grow("slot_sum", (k,), 0.0)
        grow("slot_cnt", (k,), 0.0)
        grow("mem_peak", (), np.nan)
        grow("last_mem", (), 0.0)
        grow("last_cpu", (), 0.0)
        grow("extra_sum", (E,), 0.0)
        grow("extra_cnt", (E,), 0.0)
        grow("hist_cpu", (H,), 0.0)
        grow("hist_mem", (H,), 0.0)
        grow("hist_slotmax", (H,), 0.0)
        grow("hist_slotlast", (H,), 0.0)
        grow("hist_tail", (H,), 0.0)
        grow("hist_pid", (H,), -1, np.int64)
        grow("hist_extra", (H, E), np.nan)
        grow("n_periods", (), 0, np.int64)
        grow("head", (), 0, np.int64)
        grow("skipped", (), 0, np.int64)
        self.cap = cap

    def __len__(self) -> int:
        return len(self.keys)

    def indices(self, streams: Sequence[str], *, create: bool = True) -> IntArray:
        """Row index of each stream (new streams get a row when ``create``; else -1)."""
        if streams is self._last_streams and self._last_idx is not None and len(streams) == self._last_idx.size:
            return self._last_idx
        self._unique_idx = None
        get = self.index.get
        out = np.fromiter((get(s, -1) for s in streams), dtype=np.int64, count=len(streams))
        missing = np.flatnonzero(out < 0)
        if create and missing.size:
            for j in missing.tolist():
                s = streams[j]
                i = self.index.get(s)
                if i is None:
                    i = len(self.keys)
                    self.index[s] = i
                    self.keys.append(s)
                out[j] = i
            if len(self.keys) > self.cap:
                self._alloc(self.cap, max(len(self.keys), 2 * self.cap))
        if create:
            self._last_streams, self._last_idx = streams, out
            self._unique_idx = out if np.unique(out).size == out.size else None
        return out

    # -- ingest ----------------------------------------------------------------------------------------------
    def push(
        self,
        idx: np.ndarray,
        t: np.ndarray,
        cpu: np.ndarray,
        mem: np.ndarray,
        extra: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fold one sample per row into the open periods; return the rows whose period closed (sorted)."""
        t = np.asarray(t, dtype=np.float64)
        cpu = np.asarray(cpu, dtype=np.float64)
        mem = np.asarray(mem, dtype=np.float64)
        if idx.size > 1 and idx is not self._unique_idx and np.unique(idx).size != idx.size:  # duplicates: take them one at a time
            closed = [self.push(idx[j : j + 1], t[j : j + 1], cpu[j : j + 1], mem[j : j + 1],
                                None if extra is None else extra[j : j + 1]) for j in range(idx.size)]
            return np.unique(np.concatenate(closed)) if closed else np.empty(0, np.int64)
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(t) & np.isfinite(cpu)
            neg = finite & (cpu < 0)
            back = finite & ~neg & (t <= self.last_t[idx])
        ok = finite & ~neg & ~back
        nbad = int(idx.size - ok.sum())
        if nbad:
            self.bad["nan"] += int((~finite).sum())
            self.bad["negative"] += int(neg.sum())
            self.bad["backwards"] += int(back.sum())
            np.add.at(self.skipped, idx[~ok], 1)
            idx, t, cpu, mem = idx[ok], t[ok], cpu[ok], mem[ok]
            if extra is not None:
                extra = extra[ok]
        if idx.size == 0:
            return np.empty(0, np.int64)
        mem_ok = np.isfinite(mem) & (mem >= 0)
        if not mem_ok.all():
            self.bad["mem_missing"] += int((~mem_ok).sum())
            mem = np.where(mem_ok, mem, self.last_mem[idx])
        self.last_mem[idx] = mem
        self.last_cpu[idx] = cpu
        self.last_t[idx] = t

        pid = np.floor(t / self.period_s).astype(np.int64)
        cur = self.period_id[idx]
        newer = pid > cur
        late_close = idx[newer & (cur >= 0) & ~self.closed_flag[idx]]
        gaps = newer & (cur >= 0) & (pid > cur + 1)
        if gaps.any():
            self.bad["gaps"] += int(gaps.sum())
        if late_close.size:
            self._close(late_close)
        # start new periods
        if newer.any():
            r = idx[newer]
            self.period_id[r] = pid[newer]
            self.closed_flag[r] = False
            self.slot_sum[r] = 0.0
            self.slot_cnt[r] = 0.0
            self.mem_peak[r] = np.nan
            self.extra_sum[r] = 0.0
            self.extra_cnt[r] = 0.0
        # samples of an already-closed period (after its last slot opened) are not folded in
        live = ~self.closed_flag[idx] & (pid == self.period_id[idx])
        if not live.all():
            self.bad["late"] += int((~live).sum())
            idx, t, cpu, mem, pid = idx[live], t[live], cpu[live], mem[live], pid[live]
            if extra is not None:
                extra = extra[live]
        slot = np.clip(((t - pid * self.period_s) // self.slot_s).astype(np.int64), 0, self.k - 1)
        self.slot_sum[idx, slot] += cpu
        self.slot_cnt[idx, slot] += 1.0
        self.mem_peak[idx] = np.fmax(self.mem_peak[idx], mem)
        if extra is not None and extra.size:
            e = np.asarray(extra, dtype=np.float64)
            fin = np.isfinite(e)
            self.extra_sum[idx] += np.where(fin, e, 0.0)
            self.extra_cnt[idx] += fin
        eager = idx[slot == self.k - 1]
        if eager.size:
            self._close(eager)
        if late_close.size and eager.size:
            return np.union1d(late_close, eager)
        return np.sort(late_close) if late_close.size else np.sort(eager)

    def _close(self, rows: np.ndarray) -> None:
        cnt = self.slot_cnt[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(cnt > 0, self.slot_sum[rows] / np.maximum(cnt, 1.0), np.nan)
            p95 = period_p95(means)
            ex = np.where(self.extra_cnt[rows] > 0, self.extra_sum[rows] / np.maximum(self.extra_cnt[rows], 1), np.nan)
        filled = np.where(np.isnan(means), -np.inf, means)
        last_slot = np.argmax(np.where(cnt > 0, np.arange(self.k)[None, :], -1), axis=1)
        h = self.head[rows]
        self.hist_cpu[rows, h] = p95
        self.hist_mem[rows, h] = np.nan_to_num(self.mem_peak[rows], nan=0.0)
        self.hist_slotmax[rows, h] = filled.max(axis=1)
        self.hist_slotlast[rows, h] = means[np.arange(rows.size), last_slot]
        self.hist_tail[rows, h] = tail_max(means, TAIL_SLOTS)
        self.hist_pid[rows, h] = self.period_id[rows]
        self.hist_extra[rows, h] = ex
        self.head[rows] = (h + 1) % self.H
        self.n_periods[rows] += 1
        self.closed_flag[rows] = True

    # -- reads -----------------------------------------------------------------------------------------------
    def _pos(self, rows: np.ndarray, n: int) -> np.ndarray:
        """Ring positions of the last ``n`` closed periods, newest first: shape (len(rows), n)."""
        return (self.head[rows, None] - 1 - np.arange(n)[None, :]) % self.H

    def last(self, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(cpu, mem) of the last ``n`` closed periods, newest first; NaN where the stream has fewer."""
        pos = self._pos(rows, n)
        have = np.arange(n)[None, :] < np.minimum(self.n_periods[rows], self.H)[:, None]
        cpu = np.where(have, self.hist_cpu[rows[:, None], pos], np.nan)
        mem = np.where(have, self.hist_mem[rows[:, None], pos], np.nan)
        return cpu, mem

    def gather(self, name: str, rows: np.ndarray, n: int) -> np.ndarray:
        """Any ``hist_*`` ring (``"slotmax"``, ``"slotlast"``, ``"pid"``...) for the last ``n`` periods."""
        pos = self._pos(rows, n)
        have = np.arange(n)[None, :] < np.minimum(self.n_periods[rows], self.H)[:, None]
        arr = getattr(self, "hist_" + name)[rows[:, None], pos]
        if arr.dtype.kind == "f":
            if arr.ndim == 3:
                return np.where(have[:, :, None], arr, np.nan)
            return np.where(have, arr, np.nan)
        return np.where(have, arr, -1)

    def state(self) -> TableState:
        n = len(self.keys)
        names = ["last_t", "period_id", "closed_flag", "slot_sum", "slot_cnt", "mem_peak", "last_mem", "last_cpu",
                 "extra_sum", "extra_cnt", "hist_cpu", "hist_mem", "hist_slotmax", "hist_slotlast", "hist_tail", "hist_pid",
                 "hist_extra", "n_periods", "head", "skipped"]
        return {"k": self.k, "period_s": self.period_s, "H": self.H, "keys": list(self.keys), "bad": dict(self.bad),
                "arrays": {a: getattr(self, a)[:n].copy() for a in names}}

    @classmethod
    def from_state(cls, s: TableState) -> StreamTable:
        st = cls(float(s["period_s"]), slot_s=float(s["period_s"]) / int(s["k"]), history=int(s["H"]))
        keys = list(s["keys"])
        st.indices(keys)
        st._last_streams = st._last_idx = None
        st.bad.update(s["bad"])
        for a, v in s["arrays"].items():
            getattr(st, a)[: len(keys)] = v
        return st


def period_p95(slot_values: np.ndarray) -> np.ndarray:
    """p95 across each row's slots, ignoring NaN (numpy's linear interpolation); the benchmark's definition."""
    v = np.sort(np.where(np.isnan(slot_values), np.inf, slot_values), axis=1)
    n = np.isfinite(v).sum(axis=1)
    pos = 0.95 * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    r = np.arange(v.shape[0])
    frac = pos - lo
    a, b = v[r, lo], v[r, hi]
    with np.errstate(invalid="ignore"):
        out = a + (b - a) * frac
    return np.where(n > 0, np.where(frac == 0, a, out), np.nan)


def tail_max(slot_values: np.ndarray, n: int) -> np.ndarray:
    """Max of each row's last ``n`` slots that have data (the newest readings of a period)."""
    v = np.where(np.isnan(slot_values), -np.inf, slot_values)
    have = np.isfinite(v)
    # rank of each observed slot from the end: 0 for the newest observed slot
    rank = np.cumsum(have[:, ::-1], axis=1)[:, ::-1] - 1
    out = np.where(have & (rank < n), v, -np.inf).max(axis=1)
    return np.where(np.isfinite(out), out, np.nan)
