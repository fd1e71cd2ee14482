"""``sculpt bench replay|tick|cli``: replay throughput, the loop's per-tick latency, CLI start-up time.

Benchmarks print figures and write JSON (``--out``); they assert nothing. Each says what it ran on
(``machine``: CPUs and load average, from ``os``): a load near or above the CPU count makes wall times
noisy, so repeat runs before comparing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

OutOpt = Annotated[Path | None, typer.Option("--out", help="also write the JSON here")]


JsonOpt = Annotated[bool, typer.Option("--json", help="print the JSON instead of the figures as lines")]


def machine() -> dict[str, Any]:
    """What a figure was measured on: the CPU count and the load average (1, 5, 15 min) at the end of the run."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not on every platform
        load = []
    return {"cpus": os.cpu_count(), "load_avg": load}


def machine_note(m: dict[str, Any] | None = None) -> str:
    """``machine()`` in words, e.g. "2 CPUs, load average 1.93 2.10 1.88"."""
    m = m or machine()
    load = " ".join(f"{x:g}" for x in m["load_avg"])
    return f"{m['cpus']} CPUs" + (f", load average {load}" if load else "")


def _lines(data: Any, prefix: str = "") -> list[str]:
    """Figures as ``a.b.c: value`` lines, for people."""
    if isinstance(data, dict):
        return [line for k, v in data.items() for line in _lines(v, f"{prefix}{k}.")]
    if isinstance(data, list) and len(data) > 8:
        return [f"{prefix.rstrip('.')}: [{len(data)} values]"]
    return [f"{prefix.rstrip('.')}: {data}"]


def _emit(data: dict[str, Any], out: Path | None, json_out: bool = False) -> None:
    text = json.dumps(data, indent=2)
    typer.echo(text if json_out else "\n".join(_lines(data)))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def bench_replay(
    traces: Annotated[list[Path] | None, typer.Argument(help="trace files/directories; default: the Bitbrains set")]
        = None,
    model: Annotated[str, typer.Option(help="forecast model of the sculpt policy (river: see docs/replay.md)")]
        = "river",
    region: Annotated[str, typer.Option()] = "us-east-1",
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Full replay (four policies) with the targets checked: sculpt vs oracle, static and reactive."""
    import time
    from datetime import UTC, datetime

    from sculpt.catalog import load_catalog
    from sculpt.cli._common import warn
    from sculpt.domain.errors import NotFoundError
    from sculpt.replay.harness import ReplayConfig, run_replay
    from sculpt.replay.readers import load_traces

    if not traces:
        data = Path(os.environ.get("SCULPT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
        d = data / "traces" / "bitbrains_rnd"
        if not d.exists():
            raise NotFoundError(f"no traces given and the Bitbrains set is not at {d}",
                                "pass trace paths or set SCULPT_DATA to the shared data directory")
        traces = [d]
    t0 = time.perf_counter()
    got = load_traces(list(traces))
    for line in got.warnings:
        warn(line)
    loaded = got.traces
    read_s = time.perf_counter() - t0
    config = ReplayConfig(region=region, model=model)
    r = run_replay(loaded, load_catalog("aws"), config)
    res = r.to_json()
    pol: dict[str, dict[str, float]] = res["policies"]  # type: ignore[assignment]
    s, o, st, re = (pol[p] for p in ("sculpt", "oracle", "static", "reactive"))
    res.update({
        "model": r.model,
        "read_s": round(read_s, 3),
        "wall_s": round(read_s + r.elapsed_s, 3),
        "ratios": {"sculpt_over_oracle": round(s["cost_usd"] / o["cost_usd"], 4),
                   "sculpt_over_static": round(s["cost_usd"] / st["cost_usd"], 4),
                   "sculpt_over_reactive": round(s["cost_usd"] / re["cost_usd"], 4),
                   "static_over_oracle": round(st["cost_usd"] / o["cost_usd"], 4),
                   "reactive_over_oracle": round(re["cost_usd"] / o["cost_usd"], 4)},
        "targets": {"cost_le_1.3x_oracle": s["cost_usd"] <= 1.3 * o["cost_usd"],
                    "cost_le_0.5x_static": s["cost_usd"] <= 0.5 * st["cost_usd"],
                    "cost_lt_reactive": s["cost_usd"] < re["cost_usd"],
                    "under_le_reactive": s["underprovisioned_fraction"] <= re["underprovisioned_fraction"],
                    "oom_le_reactive": s["oom_events"] <= re["oom_events"],
                    "wall_le_120s": read_s + r.elapsed_s <= 120.0},
    })
    from sculpt.decide.decision import family_mask
    from sculpt.replay.report_headline import headline

    res["headline"] = headline(r, family_mask(r.arrays, config.families))
    res["machine"] = (m := machine())
    res["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    res["note"] = f"wall time measured on {machine_note(m)}"
    _emit(res, out, json_out)


def bench_tick(
    instances: Annotated[int, typer.Option("--instances", "-n", help="synthetic streams per tick")] = 10_000,
    ticks: Annotated[int, typer.Option(help="ticks measured")] = 36,
    model: Annotated[str, typer.Option(help="forecast model")] = "ensemble",
    seed: Annotated[int, typer.Option()] = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """predict + decide for N synthetic streams per tick: p50/p95 tick ms (and the decide share)."""
    import time

    import numpy as np

    from sculpt.catalog import load_catalog
    from sculpt.decide.decision import family_mask
    from sculpt.forecast import make_predictor
    from sculpt.forecast.evaluate import synthetic_grid
    from sculpt.loop.tick import Observation, Sculptor
    from sculpt.replay.harness import DEFAULT_FAMILIES

    arrays = load_catalog("aws").arrays("us-east-1")
    allowed = family_mask(arrays, DEFAULT_FAMILIES)
    g = synthetic_grid(instances, ticks + 1, seed=seed)
    names = list(g.names)
    sculptor = Sculptor(make_predictor(model, seed=seed), arrays, names, allowed=allowed, max_migrations_per_day=24)
    rng = np.random.default_rng(seed)
    current = rng.choice(np.flatnonzero(allowed), instances)
    pending = np.zeros(instances, dtype=bool)
    rows = np.arange(instances)
    total: list[float] = []
    decide_ms: list[float] = []
    for i in range(ticks + 1):
        obs = Observation(rows=rows, t=np.full(instances, g.t[i] + 1.0), cpu_cores=g.cpu[i], mem_gib=g.mem[i])
        t0 = time.perf_counter()
        sculptor.learn(obs)
        t1 = time.perf_counter()
        batch = sculptor.plan(float(g.t[i]), current, pending).batch
        t2 = time.perf_counter()
        current = batch.target
        if i == 0:
            continue  # registering streams
        total.append((t2 - t0) * 1000)
        decide_ms.append((t2 - t1) * 1000)
    _emit({"instances": instances, "ticks": ticks, "model": model,
           "p50_ms": round(float(np.median(total)), 3), "p95_ms": round(float(np.percentile(total, 95)), 3),
           "mean_ms": round(float(np.mean(total)), 3),
           "forecast_and_decide_p50_ms": round(float(np.median(decide_ms)), 3),
           "machine": (m := machine()),
           "note": f"learn + forecast + decide per tick, measured on {machine_note(m)}"}, out, json_out)


def bench_cli(
    runs: Annotated[int, typer.Option(help="timed runs")] = 5,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start-up time of `sculpt --help` (a fresh interpreter each run): p50/min/max ms."""
    import statistics
    import subprocess
    import sys
    import time

    times = []
    heavy: list[str] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sculpt.cli.main", "--help"], capture_output=True, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    probe = subprocess.run([sys.executable, "-c", "import sys; from sculpt.cli import main; "
                            "print(','.join(m for m in ('torch','pulumi','boto3','river','sklearn') if m in sys.modules))"],
                           capture_output=True, text=True, check=True)
    heavy = [m for m in probe.stdout.strip().split(",") if m]
    _emit({"runs": runs, "p50_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
           "max_ms": round(max(times), 1), "heavy_modules_imported": heavy,
           "machine": (m := machine()), "note": f"includes interpreter start-up; measured on {machine_note(m)}"},
          out, json_out)
