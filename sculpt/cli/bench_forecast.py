"""``sculpt bench forecast`` and ``sculpt bench forecast-tick``: forecast accuracy on traces, and per-tick cost.

Imports only typer and the stdlib at module level; the models (river, torch) load when a command runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from sculpt.cli.bench_replay import machine, machine_note

MODELS = "last-value,seasonal-naive,river,lstm,ensemble"


def _fmt(v: object) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def bench_forecast(
    traces: Annotated[Path, typer.Option("--traces", help="directory of Bitbrains or NAB trace CSVs")],
    models: Annotated[str, typer.Option("--models", help="comma-separated model names")] = MODELS,
    limit: Annotated[int, typer.Option("--limit", help="read at most this many traces (0: all)")] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="also write the JSON here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
) -> None:
    """Progressive (predict, then learn) next-hour p95 CPU and peak memory forecasts on every trace in DIR."""
    from sculpt.domain.errors import ConfigError
    from sculpt.forecast import MODELS as KNOWN
    from sculpt.forecast import torch_available
    from sculpt.forecast.evaluate import evaluate_models
    from sculpt.forecast.traces import read_dir, to_grid

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in KNOWN]
    if unknown:
        raise ConfigError(f"unknown model(s): {', '.join(unknown)}", f"use names from: {', '.join(KNOWN)}")
    notes: list[str] = []
    if "lstm" in names and not torch_available():
        names.remove("lstm")
        notes.append("torch is not installed: lstm skipped, ensemble is river-only")
    t0 = time.perf_counter()
    grid = to_grid(read_dir(traces, limit=limit or None))
    # one run per model, so model_s / cpu_s are each model's own time: evaluated together, the ensemble's
    # members are scored from the ensemble's run and would all carry the ensemble's time
    res = {m: evaluate_models(grid, [m], seed=seed)[m] for m in names}
    doc: dict[str, Any] = {  # the JSON document written with --out / --json
        "models": {m: {k: r.get(k) for k in ("mae", "mem_mae", "pinball_50", "pinball_95", "coverage_90")}
                   for m, r in res.items()},
        "traces": len(grid.names),
        "samples": int((grid.cpu == grid.cpu).sum()),
        "elapsed_s": round(time.perf_counter() - t0, 2),
        "model_s": {m: r.get("model_s") for m, r in res.items()},
        "cpu_s": {m: r.get("cpu_s") for m, r in res.items()},
        "scored_hours": {m: r.get("scored") for m, r in res.items()},
        "notes": notes + sorted({n for r in res.values() for n in r.get("notes", [])}),
        "machine": machine(),
    }
    lv = doc["models"].get("last-value", {}).get("mae")
    ens = doc["models"].get("ensemble", {}).get("mae")
    best = min((doc["models"][m]["mae"] for m in ("river", "lstm") if m in doc["models"]), default=None)
    doc["ratios"] = {
        "ensemble_vs_last_value": round(ens / lv, 4) if ens and lv else None,
        "ensemble_vs_best_single": round(ens / best, 4) if ens and best else None,
    }
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2))
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"{doc['traces']} traces, {doc['samples']} samples, {doc['elapsed_s']} s on "
               f"{machine_note(doc['machine'])} (next-hour p95 CPU cores, peak memory GiB; model_s: each model's "
               "own run)")
    typer.echo(f"{'model':<16}{'mae':>9}{'mem_mae':>9}{'pin50':>9}{'pin95':>9}{'cov90':>8}{'model_s':>9}{'cpu_s':>8}")
    for m, r in doc["models"].items():
        typer.echo(f"{m:<16}{_fmt(r['mae']):>9}{_fmt(r['mem_mae']):>9}{_fmt(r['pinball_50']):>9}"
                   f"{_fmt(r['pinball_95']):>9}{_fmt(r['coverage_90']):>8}{_fmt(doc['model_s'][m]):>9}"
                   f"{_fmt(doc['cpu_s'][m]):>8}")
    typer.echo(f"ensemble / last-value MAE: {_fmt(doc['ratios']['ensemble_vs_last_value'])}   "
               f"ensemble / best of river, lstm: {_fmt(doc['ratios']['ensemble_vs_best_single'])}")
    for n in doc["notes"]:
        typer.echo(f"note: {n}")


def bench_forecast_tick(
    streams: Annotated[int, typer.Option("--streams", min=1)] = 10_000,
    ticks: Annotated[int, typer.Option("--ticks", min=1)] = 36,
    model: Annotated[str, typer.Option("--model")] = "ensemble",
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
) -> None:
    """Wall time of learn_many + forecast_many for N synthetic streams per 5-minute tick."""
    from sculpt.forecast.evaluate import bench_tick

    r = bench_tick(streams, ticks, model)
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"{model}: {streams} streams x {ticks} ticks: mean {r['mean_ms']} ms, p50 {r['p50_ms']} ms, "
               f"p95 {r['p95_ms']} ms, max {r['max_ms']} ms (period-close ticks {r['boundary_mean_ms']} ms, others "
               f"{r['between_mean_ms']} ms; measured on {machine_note()})")
