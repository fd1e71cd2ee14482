"""Features of the next period, from a stream's closed periods, as one numpy matrix for many streams.

Why it exists: the river model, the LSTM's inputs and the scikit-learn prior must see the same features,
computed the same way (and vectorised: a period closes for thousands of streams at once). Everything is
divided by the stream's scale (an EWMA of its level: target scaling), so one model per profile can serve
streams of any size. Missing history (a young stream) is filled with the last value, i.e. persistence.

Columns (``NAMES``): CPU lags 1, 2, 3, 24 and 168 periods, rolling mean of 6 and 24, max and std of 24,
the last period's last and highest 5-minute slot and its tail (max of the last 15 minutes); memory lags 1, 2, 24 and rolling mean of 24; network,
disk, latency and throughput (requests/s) relative to their 24-period mean (log; 0 when not measured); hour-of-day and day-of-week of the next period (sin/cos)
and a weekend flag. With hourly periods, lag 24 is "same hour yesterday", 168 "same hour last week".
"""

from __future__ import annotations

import warnings

import numpy as np

from sculpt.domain.arrays import FloatArray
from sculpt.forecast.state import StreamTable

NAMES: tuple[str, ...] = (
    "c1", "c2", "c3", "c24", "c168", "cmean6", "cmean24", "cmax24", "cstd24", "slot_last", "slot_max", "tail",
    "m1", "m2", "m24", "mmean24", "net", "disk", "latency", "rps", "hod_sin", "hod_cos", "dow_sin", "dow_cos", "weekend",
)
CLIP = 20.0


def _fill(a: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), fallback, a)


def calendar(period_start_s: np.ndarray) -> np.ndarray:
    """Hour-of-day and day-of-week (sin, cos) and a weekend flag for period start times (UTC seconds)."""
    hod = (period_start_s % 86400.0) / 3600.0
    dow = ((period_start_s // 86400.0) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    return np.column_stack([np.sin(2 * np.pi * hod / 24), np.cos(2 * np.pi * hod / 24),
                            np.sin(2 * np.pi * dow / 7), np.cos(2 * np.pi * dow / 7), (dow >= 5).astype(float)])


def extract(table: StreamTable, rows: np.ndarray, scale: np.ndarray) -> FloatArray:
    """Feature matrix ``(len(rows), len(NAMES))`` for the period after each row's newest closed period."""
    H = min(table.H, 168)
    season = max(1, int(round(86400.0 / table.period_s)))
    week = min(7 * season, table.H)
    cpu, mem = table.last(rows, max(H, week))
    s_c = scale[:, 0][:, None]
    s_m = scale[:, 1][:, None]
    c = cpu / s_c
    m = mem / s_m
    c1 = c[:, 0]
    m1 = m[:, 0]
    d = min(season, c.shape[1])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cmean6 = np.nanmean(c[:, :6], axis=1)
        cmean24 = np.nanmean(c[:, :d], axis=1)
        cmax24 = np.nanmax(c[:, :d], axis=1)
        cstd24 = np.nanstd(c[:, :d], axis=1)
        mmean24 = np.nanmean(m[:, :d], axis=1)
        ex = table.gather("extra", rows, d)  # (n, d, E)
        ex_mean = np.nanmean(ex, axis=1)
        rel = np.log1p(np.maximum(ex[:, 0, :], 0)) - np.log1p(np.maximum(ex_mean, 0))
    slot_last = table.gather("slotlast", rows, 1)[:, 0] / scale[:, 0]
    slot_max = table.gather("slotmax", rows, 1)[:, 0] / scale[:, 0]
    tail = table.gather("tail", rows, 1)[:, 0] / scale[:, 0]
    pid = table.gather("pid", rows, 1)[:, 0]
    cal = calendar((pid + 1).astype(np.float64) * table.period_s)
    cols = [
        c1, _fill(c[:, 1], c1), _fill(c[:, 2], c1),
        _fill(c[:, d - 1], c1) if c.shape[1] >= d else c1,
        _fill(c[:, week - 1], c1) if c.shape[1] >= week else c1,
        cmean6, cmean24, cmax24, np.nan_to_num(cstd24), _fill(slot_last, c1), _fill(slot_max, c1), _fill(tail, c1),
        m1, _fill(m[:, 1], m1), _fill(m[:, d - 1], m1) if m.shape[1] >= d else m1, _fill(mmean24, m1),
        np.nan_to_num(rel[:, 0]), np.nan_to_num(rel[:, 1]), np.nan_to_num(rel[:, 2]), np.nan_to_num(rel[:, 3]),
    ]
    X: FloatArray = np.column_stack([*cols, cal])
    return np.clip(np.nan_to_num(X, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)
