"""Progressive (predict, then learn) evaluation of predictors on real traces, and the per-tick throughput probe.

Why it exists: ``sculpt bench forecast`` and ``sculpt bench tick`` need the same loop the controller runs
(``learn_many`` every tick for all streams, ``forecast_many`` at every period boundary), measured from the
outside through the ``Predictor`` protocol only. The truth a forecast is scored against is computed here,
independently of the models, with the same definition (p95 over the period's 5-minute means for CPU, peak
for memory).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sculpt.forecast.base import Predictor, SampleBatch
from sculpt.forecast.engine import pinball
from sculpt.forecast.state import period_p95
from sculpt.forecast.traces import Grid


def _batch(streams: Sequence[str], t: np.ndarray, cpu: np.ndarray, mem: np.ndarray, net: np.ndarray,
           disk: np.ndarray) -> SampleBatch:
    return SampleBatch(streams=streams, t=t, cpu_cores=cpu, mem_gib=mem, net_kbps=net, disk_kbps=disk)


def truth(grid: Grid, period_s: float = 3600.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-period truth ``(cpu_p95, mem_peak)``, shape (periods, streams); NaN where a period has no sample."""
    k = int(round(period_s / grid.tick_s))
    p = grid.cpu.shape[0] // k
    c = grid.cpu[: p * k].reshape(p, k, -1).transpose(0, 2, 1).reshape(p * grid.cpu.shape[1], k)
    cpu = period_p95(c).reshape(p, -1)
    m = grid.mem[: p * k].reshape(p, k, -1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mem = np.nanmax(m, axis=1)
    return cpu, mem


def progressive(
    make: Callable[[], Predictor],
    grid: Grid,
    *,
    period_s: float = 3600.0,
    warmup_periods: int = 1,
    views: dict[str, Callable[[Any], Predictor]] | None = None,
) -> dict[str, Any]:
    """Feed ``grid`` tick by tick; before each period starts, forecast it; score against ``truth``.

    ``views`` scores several predictors from one run (e.g. an ensemble and each of its members, which see
    exactly the same samples); the result is then ``{view name: metrics}``.
    """
    model = make()
    views_ = views or {"model": lambda m: m}
    targets = {name: get(model) for name, get in views_.items()}
    k = int(round(period_s / grid.tick_s))
    n_t, n_s = grid.cpu.shape
    names = list(grid.names)
    y_cpu, y_mem = truth(grid, period_s)
    preds = {v: np.full((y_cpu.shape[0], n_s, 6), np.nan) for v in targets}  # cpu p50, p95, lo, hi, mem p50, n
    spent = 0.0
    cpu0 = time.process_time()
    for i in range(n_t):
        row = grid.cpu[i]
        have = np.flatnonzero(np.isfinite(row))
        if have.size:
            b = _batch([names[j] for j in have], np.full(have.size, grid.t[i] + grid.tick_s / 2), row[have],
                       grid.mem[i, have], grid.net[i, have], grid.disk[i, have])
            t0 = time.perf_counter()
            model.learn_many(b)
            spent += time.perf_counter() - t0
        if (i + 1) % k == 0 and (i + 1) // k < y_cpu.shape[0]:
            for v, target in targets.items():
                t0 = time.perf_counter()
                fb = target.forecast_many(names, period_s)
                spent += time.perf_counter() - t0
                preds[v][(i + 1) // k] = np.column_stack([fb.cpu_p50, fb.cpu_p95, fb.cpu_lo, fb.cpu_hi,
                                                          fb.mem_p50, fb.samples])
    out = {v: _score(preds[v], y_cpu, y_mem, warmup_periods, bool(getattr(t, "has_interval", True)),
                     list(t.notes)) for v, t in targets.items()}
    cpu_s = time.process_time() - cpu0  # includes the scoring loop's few ms; robust to a busy machine
    for v in out:
        out[v]["model_s"] = round(spent, 3)
        out[v]["cpu_s"] = round(cpu_s, 3)
    return out if views else out["model"]


def _score(preds: np.ndarray, y_cpu: np.ndarray, y_mem: np.ndarray, warmup: int, has_interval: bool,
           notes: list[str]) -> dict[str, Any]:
    ok = np.isfinite(y_cpu) & np.isfinite(preds[..., 0]) & (preds[..., 5] >= warmup)
    yc, p = y_cpu[ok], preds[ok]
    okm = ok & np.isfinite(y_mem)
    if not ok.any():
        return {"mae": None, "mem_mae": None, "pinball_50": None, "pinball_95": None, "coverage_90": None,
                "scored": 0, "notes": notes}
    return {
        "mae": float(np.mean(np.abs(p[:, 0] - yc))),
        "mem_mae": float(np.mean(np.abs(preds[okm][:, 4] - y_mem[okm]))) if okm.any() else None,
        "pinball_50": float(np.mean(pinball(yc, p[:, 0], 0.5))),
        "pinball_95": float(np.mean(pinball(yc, p[:, 1], 0.95))),
        "coverage_90": float(np.mean((yc >= p[:, 2]) & (yc <= p[:, 3]))) if has_interval else None,
        "scored": int(ok.sum()),
        "notes": notes,
    }


def _member_view(j: int) -> Callable[[Any], Predictor]:
    """The ``j``-th member of an ensemble, as a view for ``progressive``."""
    return lambda m: m.members[j]


def evaluate_models(grid: Grid, models: Sequence[str], *, seed: int = 0, period_s: float = 3600.0,
                    profile: str = "general") -> dict[str, dict[str, Any]]:
    """Metrics per model name; members of the ensemble are scored from the ensemble's own run."""
    from sculpt.forecast import make_predictor

    results: dict[str, dict[str, Any]] = {}
    todo = list(dict.fromkeys(models))
    if "ensemble" in todo:
        probe = make_predictor("ensemble", seed=seed, horizon_s=period_s, profile=profile)
        member_names = list(getattr(probe, "member_names", []))
        views: dict[str, Callable[[Any], Predictor]] = {"ensemble": lambda m: m}
        for j, name in enumerate(member_names):
            if name in todo:
                views[name] = _member_view(j)
        t0 = time.perf_counter()
        res = progressive(lambda: make_predictor("ensemble", seed=seed, horizon_s=period_s, profile=profile),
                          grid, period_s=period_s, views=views)
        wall = time.perf_counter() - t0
        for v, r in res.items():
            r["run_s"] = round(wall, 2)
            r["shared_run"] = "ensemble" if v != "ensemble" else None
            results[v] = r
        todo = [m for m in todo if m not in results]
    for name in todo:
        t0 = time.perf_counter()
        r = progressive(functools.partial(make_predictor, name, seed=seed, horizon_s=period_s, profile=profile),
                        grid, period_s=period_s)
        r["run_s"] = round(time.perf_counter() - t0, 2)
        results[name] = r
    return {m: results[m] for m in models if m in results}


def synthetic_grid(n_streams: int, ticks: int, *, seed: int = 0, tick_s: float = 300.0) -> Grid:
    """Diurnal demand with noise and bursts for many streams (the throughput probe's input)."""
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 - (1_700_000_000.0 % 3600) + tick_s * np.arange(ticks)
    base = rng.gamma(2.0, 0.5, n_streams)
    phase = rng.uniform(0, 2 * np.pi, n_streams)
    day = 1 + 0.5 * np.sin(2 * np.pi * t[:, None] / 86400 + phase[None, :])
    cpu = base[None, :] * day * rng.lognormal(0, 0.2, (ticks, n_streams))
    mem = (base * 2)[None, :] * (1 + 0.1 * rng.standard_normal((ticks, n_streams)) ** 2)
    nan = np.full_like(cpu, np.nan)
    return Grid([f"s{i}" for i in range(n_streams)], t, cpu, mem, nan, nan, tick_s)


def bench_tick(n_streams: int = 10_000, ticks: int = 36, model: str = "ensemble", *, seed: int = 0,
               warmup_ticks: int = 1) -> dict[str, Any]:
    """Wall time of ``learn_many`` + ``forecast_many`` for ``n_streams`` streams per tick (ms).

    ``boundary`` ticks are those at which every stream's period closes (the models' work starts there and
    is spread over the next few ticks by the close budget); the others are the vectorised ingest plus that
    spill-over. The first ``warmup_ticks`` (registering the streams, first torch call) are not counted.
    Measured on whatever the machine is doing: noisy.
    """
    from sculpt.forecast import make_predictor

    p = make_predictor(model, seed=seed)
    g = synthetic_grid(n_streams, warmup_ticks + ticks, seed=seed)
    names = list(g.names)
    per_tick: list[float] = []
    boundary: list[float] = []
    for i in range(warmup_ticks + ticks):
        b = SampleBatch(streams=names, t=np.full(n_streams, g.t[i] + 1.0), cpu_cores=g.cpu[i], mem_gib=g.mem[i])
        t0 = time.perf_counter()
        p.learn_many(b)
        p.forecast_many(names, 3600.0)
        dt = (time.perf_counter() - t0) * 1000
        if i >= warmup_ticks:
            (boundary if (i + 1) % 12 == 0 else per_tick).append(dt)
    allt = per_tick + boundary
    return {
        "model": model, "streams": n_streams, "ticks": ticks,
        "mean_ms": round(float(np.mean(allt)), 2), "p50_ms": round(float(np.median(allt)), 2),
        "p95_ms": round(float(np.percentile(allt, 95)), 2), "max_ms": round(float(np.max(allt)), 2),
        "boundary_mean_ms": round(float(np.mean(boundary)), 2) if boundary else None,
        "between_mean_ms": round(float(np.mean(per_tick)), 2) if per_tick else None,
        "notes": list(p.notes),
    }
