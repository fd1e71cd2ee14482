"""``sculpt bench morph``: a real morph under real load — failed requests, lost writes, pause, duration.

Why it exists: the morph protocol's promises (no failed request, no lost acknowledged write, a short pause,
a quick blue/green) are measured here on the local provider: a throwaway stack (its own state directory),
the demo app, the load generator driving mixed reads and writes through the load balancer, ``sculpt morph``
run as its own process (so ``crash-at`` faults really kill it, after which ``recover`` runs), then a read-back
of every acknowledged write. Benchmarks print figures and write JSON; they assert nothing.

Targets: ``failed`` = 0, ``lost_writes`` = 0, ``pause_ms_max`` <= 500, blue/green ``duration_s`` <= 10.

``--chaos N`` runs N random operation sequences instead (:mod:`sculpt.cli.chaos`, the same operations and
checks as the state-safety property test): each on a throwaway stack under a steady verified load, ``up``
(unchanged / shape / env), ``morph`` (in place / blue-green / region), ``rollback [--to N]``, kill -9 of the
controller at a random step or moment, kill -9 of the agent, waits past the pause lease and recovery by a
random verb. It prints sequences run, acknowledged writes, lost, failed requests and the longest
unavailability (overall, after an agent kill, after a controller kill), measured from the load generator's
own records. Targets: ``lost`` = 0 (and nothing ``reverted``); after an agent kill <= 2 s; after a controller
kill <= the pause bound, ``lb.pause_lease_s`` (3 s on these stacks): a dead controller's pause is ended by
the agent's recovery, never by waiting the lease out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sculpt.cli.bench_replay import machine_note

FAULTS = {
    "blue-green": ("none", "green-unhealthy", "restore-fails", "shift-fails", "step-timeout",
                   "step-timeout:DRAIN_BLUE", "crash-at:SYNC_STATE", "crash-at:SHIFT", "crash-at:DRAIN_BLUE"),
    "in-place": ("none", "green-unhealthy", "step-timeout:WAIT_HEALTHY", "crash-at:RESIZE"),
}
SHAPES = ("std-0.5c-512m", "std-1c-1024m")
AGENT_KILL_TARGET_S = 2.0


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


def run_chaos(n: int, *, seed: int = 0, steps: int = 5, rate: float = 150.0, lease_s: float = 3.0,
              progress: Any = None) -> dict[str, Any]:
    """``n`` chaos sequences (seeds ``seed`` .. ``seed + n - 1``); the totals, the targets and one row per
    sequence."""
    import time

    from sculpt.cli.chaos import run_sequence, summarize

    rows = []
    t0 = time.monotonic()
    for i in range(n):
        row = run_sequence(seed + i, steps, rate_rps=rate, lease_s=lease_s)
        rows.append(row)
        if progress is not None:
            progress(i, row)
    total = summarize(rows)
    bound = lease_s
    agent, ctl = total["longest_unavailable_after_agent_kill_s"], total["longest_unavailable_after_controller_kill_s"]
    total.update(
        seed=seed, steps_per_sequence=steps, rate_rps=rate, pause_lease_s=lease_s, pause_bound_s=bound,
        wall_s=round(time.monotonic() - t0, 1),
        targets={"lost": total["lost"] == 0 and total["reverted"] == 0,
                 "after_agent_kill": agent is None or agent <= AGENT_KILL_TARGET_S,
                 "after_controller_kill": ctl is None or ctl <= bound},
        rows=[r.to_json() for r in rows])
    total["targets_met"] = all(total["targets"].values())
    return total


def _chaos_line(i: int, row: Any) -> str:
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}s"

    return (f"#{i:<3} seed={row.seed:<5} steps={len(row.steps)} acked={row.acked_writes:<5} lost={row.lost:<3} "
            f"failed={row.failed:<5} unavailable={s(row.longest_unavailable_s)} after-agent-kill="
            f"{s(row.after_agent_kill_s)} after-controller-kill={s(row.after_controller_kill_s)} "
            f"problems={len(row.problems)}  [{' '.join(row.steps)}]"
            + (f" failed in {row.failed_by_step}" if row.failed else "")
            + f" longest in {row.longest_unavailable_in}")


def bench_morph(
    strategy: Annotated[str, typer.Option(help="blue-green | in-place | auto | all")] = "blue-green",
    fault: Annotated[str, typer.Option(help=f"none | all | one of {', '.join(FAULTS['blue-green'][1:])}")] = "none",
    rate: Annotated[float | None, typer.Option(help="offered load, requests per second (half writes); default "
                                                    "250, with --chaos 150")] = None,
    replicas: Annotated[int, typer.Option(help="replicas of the fleet")] = 1,
    routing: Annotated[str, typer.Option(help="weighted | hash")] = "weighted",
    json_out: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
    out: Annotated[Path | None, typer.Option(help="also write the JSON here")] = None,
    chaos: Annotated[int, typer.Option("--chaos", min=0, help="run N random operation sequences with random "
                                                                "kills instead (see docs/migration.md)")] = 0,
    seed: Annotated[int, typer.Option(help="--chaos: the first sequence's seed (sequence i uses seed + i)")] = 0,
    steps: Annotated[int, typer.Option(min=1, help="--chaos: operations per sequence")] = 5,
) -> None:
    """Morph a throwaway local stack under load; print failed, lost_writes, pause_ms_max, duration_s.

    With --chaos N: N random sequences of commands, kills and waits under load; print sequences, acknowledged
    writes, lost, failed requests and the longest unavailability."""
    if chaos:
        def show(i: int, row: Any) -> None:
            typer.echo(_chaos_line(i, row), err=json_out)
            for p in row.problems[:5]:
                typer.echo(f"      {p[:300]}", err=json_out)

        total = run_chaos(chaos, seed=seed, steps=steps, rate=150.0 if rate is None else rate, progress=show)
        text = json.dumps(total, indent=2, default=str)
        if out is not None:
            out.write_text(text + "\n")
        if json_out:
            typer.echo(text)
        else:
            def fmt(x: float | None) -> str:
                return "-" if x is None else f"{x:.2f}s"

            typer.echo(f"sequences run: {total['sequences']} ({total['steps']} steps, {total['wall_s']}s); "
                       f"acknowledged writes: {total['acked_writes']}; lost: {total['lost']}; reverted: "
                       f"{total['reverted']}; failed requests: {total['failed']} of {total['requests']}")
            typer.echo(f"longest unavailability: {fmt(total['longest_unavailable_s'])}; after an agent kill: "
                       f"{fmt(total['longest_unavailable_after_agent_kill_s'])} (target <= {AGENT_KILL_TARGET_S:g}s); "
                       f"after a controller kill: {fmt(total['longest_unavailable_after_controller_kill_s'])} "
                       f"(target <= {total['pause_bound_s']:g}s)")
            typer.echo(f"sequences with problems: {total['sequences_with_problems']} {total['problems']}; "
                       f"targets met: {total['targets_met']}")
            typer.echo(f"measured on {machine_note()}")
        return
    rate = 250.0 if rate is None else rate
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
    if not json_out:
        typer.echo(f"measured on {machine_note()}")
    data: Any = rows[0] if len(rows) == 1 else rows
    text = json.dumps(data, indent=2, default=str)
    if out is not None:
        out.write_text(text + "\n")
    if json_out:
        typer.echo(text)
