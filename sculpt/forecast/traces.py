"""A minimal trace reader for the forecasting benchmark and ``sculpt train`` (the full readers are in replay).

Why it exists: the benchmark needs numpy columns, fast, from two formats — Bitbrains GWA-T-12 VM files
(``timestamp_s, cpu_cores, cpu_capacity_mhz, cpu_usage_mhz, ..., mem_usage_kb, disk_*, net_*``, gzip or
not) and NAB series (``timestamp,value``). Demand in cores is ``cpu_usage_mhz / (cpu_capacity_mhz /
cpu_cores)``; memory is ``mem_usage_kb`` in GiB. A NAB ``value`` becomes the CPU channel as-is (its units
are the series' own) with no memory. ``to_grid`` puts many traces on one 5-minute tick grid.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sculpt.domain.arrays import FloatArray
from sculpt.domain.errors import ConfigError, NotFoundError


@dataclass(frozen=True)
class Trace:
    """One stream's samples as columns (seconds, cores, GiB, kB/s, kB/s)."""

    name: str
    t: np.ndarray
    cpu: np.ndarray
    mem: np.ndarray
    net: np.ndarray
    disk: np.ndarray


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 - closed by the caller's with


def _num(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


def read_trace(path: str | Path) -> Trace:
    """Read one Bitbrains or NAB file; ``ConfigError`` for an unknown header."""
    p = Path(path)
    with _open(p) as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ConfigError(f"trace {p} is empty", "pass a Bitbrains or NAB CSV file")
    head, body = [h.strip() for h in rows[0]], rows[1:]
    name = p.name.split(".")[0]
    if "cpu_usage_mhz" in head:
        col = {h: i for i, h in enumerate(head)}
        a = np.array([[_num(r[col[c]]) for c in head] for r in body if len(r) == len(head)], dtype=np.float64)
        a = a.reshape(-1, len(head))

        def g(c: str) -> FloatArray:
            return a[:, col[c]]

        with np.errstate(invalid="ignore", divide="ignore"):
            cpu = g("cpu_usage_mhz") / (g("cpu_capacity_mhz") / g("cpu_cores"))
        mem = g("mem_usage_kb") / (1024.0 * 1024.0)
        net = g("net_rx_kbps") + g("net_tx_kbps")
        disk = g("disk_read_kbps") + g("disk_write_kbps")
        return Trace(name, g("timestamp_s"), cpu, mem, net, disk)
    if head[:2] == ["timestamp", "value"]:
        t = np.array([datetime.fromisoformat(r[0]).replace(tzinfo=UTC).timestamp() for r in body])
        v = np.array([_num(r[1]) for r in body])
        nan = np.full_like(v, np.nan)
        return Trace(name, t, v, nan, nan, nan)
    raise ConfigError(f"trace {p} has an unknown header ({', '.join(head[:4])}...)",
                      "pass Bitbrains VM files (timestamp_s, cpu_usage_mhz, ...) or NAB files (timestamp,value)")


def read_dir(directory: str | Path, limit: int | None = None) -> list[Trace]:
    """Every trace file in ``directory`` (sorted by name; summary CSVs without a time column are skipped)."""
    d = Path(directory)
    if not d.is_dir():
        raise NotFoundError(f"no trace directory at {d}", "pass --traces DIR with Bitbrains or NAB CSV files")
    out: list[Trace] = []
    for p in sorted(d.iterdir()):
        if not (p.name.endswith(".csv") or p.name.endswith(".csv.gz")):
            continue
        try:
            out.append(read_trace(p))
        except ConfigError:
            continue  # e.g. selected_vms.csv, a summary rather than a trace
        if limit and len(out) >= limit:
            break
    if not out:
        raise NotFoundError(f"no readable trace in {d}", "pass a directory of Bitbrains or NAB CSV files")
    return out


@dataclass(frozen=True)
class Grid:
    """Traces on a common tick grid: ``cpu[tick, stream]`` (NaN: no sample), tick times, stream names."""

    names: list[str]
    t: np.ndarray  # (ticks,) seconds, the start of each tick
    cpu: np.ndarray
    mem: np.ndarray
    net: np.ndarray
    disk: np.ndarray
    tick_s: float


WEEK_S = 7 * 86400.0


def to_grid(traces: list[Trace], tick_s: float = 300.0, period_s: float = 3600.0) -> Grid:
    """Average each trace into ``tick_s`` buckets on one grid that starts at a period boundary.

    Traces recorded in different weeks (NAB) are shifted by whole weeks so they overlap: hour of day and
    day of week are kept, and the grid stays short.
    """
    starts = [float(np.nanmin(tr.t)) for tr in traces]
    ref = max(starts)
    traces = [Trace(tr.name, tr.t + np.floor((ref - s) / WEEK_S) * WEEK_S, tr.cpu, tr.mem, tr.net, tr.disk)
              for tr, s in zip(traces, starts, strict=True)]
    t0 = min(float(np.nanmin(tr.t)) for tr in traces)
    t0 = np.floor(t0 / period_s) * period_s
    t1 = max(float(np.nanmax(tr.t)) for tr in traces)
    n = int((t1 - t0) // tick_s) + 1
    n = int(np.ceil(n / (period_s / tick_s)) * (period_s / tick_s))
    mats = {k: np.full((n, len(traces)), np.nan) for k in ("cpu", "mem", "net", "disk")}
    for j, tr in enumerate(traces):
        ok = np.isfinite(tr.t)
        b = ((tr.t[ok] - t0) // tick_s).astype(np.int64)
        for k in mats:
            v = getattr(tr, k)[ok]
            fin = np.isfinite(v)
            s = np.bincount(b[fin], weights=v[fin], minlength=n)[:n]
            c = np.bincount(b[fin], minlength=n)[:n]
            with np.errstate(invalid="ignore", divide="ignore"):
                mats[k][:, j] = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    return Grid([tr.name for tr in traces], t0 + tick_s * np.arange(n), mats["cpu"], mats["mem"], mats["net"],
                mats["disk"], tick_s)
