"""``sculpt bench up``: how long ``sculpt up`` takes to bring N local instances to healthy, and how long
``sculpt --help`` takes to start (targets: < 3 s and < 0.3 s). Prints figures and writes JSON.

Each run is a fresh temporary project with its own SCULPT_HOME: ``sculpt init``, a spec with N replicas,
then the wall time of ``sculpt up`` as a user runs it (a new process, the agent started detached, every
instance healthy when it returns), checked with ``sculpt status --json``, then ``sculpt down``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sculpt.cli.bench_replay import machine, machine_note

UP_TARGET_S = 3.0
HELP_TARGET_S = 0.3


def bench_up(
    instances: Annotated[int, typer.Option("--instances", min=1, max=3, help="replicas to start")] = 3,
    runs: Annotated[int, typer.Option("--runs", min=1, help="repetitions (the median is reported)")] = 3,
    out: Annotated[Path, typer.Option("--out", help="where to write the JSON")] = Path("bench-results/up.json"),
    json_out: Annotated[bool, typer.Option("--json", help="print the JSON result on stdout")] = False,
) -> None:
    """Time `sculpt up` of N local instances to all healthy, and `sculpt --help` start-up."""
    import json
    import os
    import shutil
    import statistics
    import subprocess
    import sys
    import tempfile
    import time

    cli = [sys.executable, "-m", "sculpt.cli.main"]

    def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    up_s: list[float] = []
    for n in range(runs):
        work = Path(tempfile.mkdtemp(prefix="sculpt-bench-up-"))
        env = {**os.environ, "SCULPT_HOME": str(work / "home")}
        try:
            run(["init"], work, env)
            spec = work / "sculpt.yaml"
            spec.write_text(spec.read_text().replace("desired: 1", f"desired: {instances}", 1))
            t0 = time.perf_counter()
            r = run(["up"], work, env)
            took = time.perf_counter() - t0
            if r.returncode != 0:
                typer.echo(r.stderr.strip(), err=True)
                raise typer.Exit(1)
            st = json.loads(run(["status", "--json"], work, env).stdout)
            healthy = sum(1 for i in st["instances"] if i["healthy"])
            if healthy != instances:
                typer.echo(f"error: only {healthy}/{instances} healthy after up", err=True)
                raise typer.Exit(1)
            up_s.append(took)
            typer.echo(f"run {n + 1}/{runs}: sculpt up of {instances} instances -> all healthy in {took:.3f}s",
                       err=True)
        finally:
            run(["down"], work, env)
            shutil.rmtree(work, ignore_errors=True)

    help_s: list[float] = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([*cli, "--help"], capture_output=True, timeout=60, check=True)
        help_s.append(time.perf_counter() - t0)

    result = {
        "benchmark": "up",
        "instances": instances,
        "runs": runs,
        "up_s": {"median": round(statistics.median(up_s), 4), "min": round(min(up_s), 4),
                 "max": round(max(up_s), 4), "all": [round(x, 4) for x in up_s], "target": UP_TARGET_S},
        "help_s": {"median": round(statistics.median(help_s), 4), "min": round(min(help_s), 4),
                   "target": HELP_TARGET_S},
        "cpus": os.cpu_count(),
        "machine": machine(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    ok_up = "ok" if result["up_s"]["median"] < UP_TARGET_S else "MISSED"  # type: ignore[index]
    ok_help = "ok" if result["help_s"]["median"] < HELP_TARGET_S else "MISSED"  # type: ignore[index]
    typer.echo(f"sculpt up, {instances} instances to healthy: median {statistics.median(up_s):.3f}s "
               f"(target < {UP_TARGET_S:g}s: {ok_up})")
    typer.echo(f"sculpt --help: median {statistics.median(help_s):.3f}s (target < {HELP_TARGET_S:g}s: {ok_help})")
    typer.echo(f"measured on {machine_note()}")
    typer.echo(f"wrote {out}")
