"""``sculpt bench morph``: a real morph under real load — failed requests, lost writes, pause, duration.

Why it exists: the morph protocol's promises (no failed request, no lost acknowledged write, a short pause,
a quick blue/green) are measured here on the local provider: a throwaway stack (its own state directory),
the demo app, the load generator driving mixed reads and writes through the load balancer, ``sculpt morph``
run as its own process (so ``crash-at`` faults really kill it, after which ``recover`` runs), then a read-back
of every acknowledged write. Benchmarks print figures and write JSON; they assert nothing.

Targets: ``failed`` = 0, ``lost_writes`` = 0, ``pause_ms_max`` <= 500, blue/green ``duration_s`` <= 10.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sculpt.cli.bench import app

FAULTS = {
    "blue-green": ("none", "green-unhealthy", "restore-fails", "shift-fails", "step-timeout",
                   "step-timeout:DRAIN_BLUE", "crash-at:SYNC_STATE", "crash-at:SHIFT", "crash-at:DRAIN_BLUE"),
    "in-place": ("none", "green-unhealthy", "step-timeout:WAIT_HEALTHY", "crash-at:RESIZE"),
}
SHAPES = ("std-0.5c-512m", "std-1c-1024m")


def _sculpt(args: list[str], home: Path, cwd: Path, timeout_s: float = 180.0) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SCULPT_HOME": str(home)}
    env.pop("SCULPT_FAULT", None)
    return subprocess.run([sys.executable, "-m", "sculpt.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def run_one(strategy: str, fault: str, *, rate: float = 250.0, replicas: int = 1, routing: str = "weighted",
            seed: int = 0, step_timeout_s: float = 3.0) -> dict[str, Any]:
    """One morph of a fresh stack under load; returns the figures (see the module docstring)."""
    import tempfile
    import time

    from sculpt.demoapp.loadgen import LoadGen, verify
    from sculpt.migrate import recover

    with tempfile.TemporaryDirectory(prefix="sculpt-bench-morph-") as tmp:
        root = Path(tmp)
        home = root / "state"
        spec = root / "sculpt.yaml"
        spec.write_text(f"fleet: bench\nshape: {SHAPES[0]}\nregion: local-a\nregions: [local-b]\n"
                        f"replicas: {{min: {replicas}, max: {max(replicas, 3)}, desired: {replicas}}}\n"
                        f"lb: {{routing: {routing}}}\n")
        out: dict[str, Any] = {"strategy": strategy, "fault": fault, "replicas": replicas, "routing": routing,
                               "rate_rps": rate}
        up = _sculpt(["up", "--spec", str(spec), "--json"], home, root)
        if up.returncode != 0:
            out.update(result="error", reason=up.stderr.strip().splitlines()[-1:])
            return out
        try:
            lb = json.loads(up.stdout)["lb"]["address"]
            url = f"http://{lb}"
            load = LoadGen(url, rate, write_ratio=0.5, keys=500, duration_s=600.0, seed=seed)
            load.start()
            time.sleep(1.0)
            args = ["morph", "--spec", str(spec), "--json", "--shape", SHAPES[1], "--strategy", strategy,
                    "--timeout", str(step_timeout_s), "--step-timeout", str(step_timeout_s)]
            if fault != "none":
                args += ["--fault", fault]
            t0 = time.monotonic()
            m = _sculpt(args, home, root)
            wall = time.monotonic() - t0
            report: dict[str, Any] = {}
            if m.stdout.strip():
                report = json.loads(m.stdout)
            recovered = []
            if m.returncode < 0:  # killed by an injected crash: what the next sculpt command would do
                recovered = [r.to_json() for r in recover(home, "bench")]
                report = recovered[0] if recovered else {}
            time.sleep(1.0)
            res = load.stop()
            lost = verify(url, res)
            status = _sculpt(["status", "--spec", str(spec), "--json"], home, root)
            lbstats: dict[str, Any] = {}
            from sculpt.providers.local.client import AgentClient

            try:
                lbstats = AgentClient(home, "bench").stats()
            except Exception:  # noqa: BLE001 - figures only
                lbstats = {}
            out.update(
                result=report.get("result", "error" if m.returncode else "unknown"),
                reason=report.get("reason") or (m.stderr.strip().splitlines()[-1] if m.returncode > 0 and
                                                m.stderr.strip() else None),
                requests=res.requests, failed=res.failed, lost_writes=lost, acked_writes=len(res.acked_writes),
                # the longest time a client request waited at a paused LB (a crash can stretch it)
                pause_ms_max=max(float(report.get("pause_ms_max", 0.0)), float(lbstats.get("pause_ms_max") or 0.0)),
                held_ms_max=lbstats.get("pause_ms_max"),
                duration_s=report.get("duration_s", 0.0), wall_s=round(wall, 3), p99_ms=res.p99_ms,
                achieved_rps=res.achieved_rps, recovered=bool(recovered),
                instances=len(json.loads(status.stdout).get("instances", [])) if status.returncode == 0 else None,
            )
        finally:
            _sculpt(["down", "--spec", str(spec)], home, root)
        return out


@app.command("morph")
def bench_morph(
    strategy: Annotated[str, typer.Option(help="blue-green | in-place | auto | all")] = "blue-green",
    fault: Annotated[str, typer.Option(help=f"none | all | one of {', '.join(FAULTS['blue-green'][1:])}")] = "none",
    rate: Annotated[float, typer.Option(help="offered load, requests per second (half writes)")] = 250.0,
    replicas: Annotated[int, typer.Option(help="replicas of the fleet")] = 1,
    routing: Annotated[str, typer.Option(help="weighted | hash")] = "weighted",
    json_out: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
    out: Annotated[Path | None, typer.Option(help="also write the JSON here")] = None,
) -> None:
    """Morph a throwaway local stack under load; print failed, lost_writes, pause_ms_max, duration_s."""
    strategies = ["blue-green", "in-place"] if strategy == "all" else [strategy]
    rows = []
    for s in strategies:
        for f in (FAULTS.get(s, FAULTS["blue-green"]) if fault == "all" else [fault]):
            typer.echo(f"bench morph: strategy={s} fault={f} ...", err=True)
            row = run_one(s, f, rate=rate, replicas=replicas, routing=routing)
            rows.append(row)
            if not json_out:
                typer.echo(f"{s:<10} {f:<20} {row.get('result', '?'):<11} requests={row.get('requests')} "
                           f"failed={row.get('failed')} lost={row.get('lost_writes')} "
                           f"pause_ms_max={row.get('pause_ms_max')} duration_s={row.get('duration_s')}")
    data: Any = rows[0] if len(rows) == 1 else rows
    text = json.dumps(data, indent=2, default=str)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
