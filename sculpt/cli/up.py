"""``sculpt up``: make the fleet in sculpt.yaml real as a new stack version (starts the agent if needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json, interrupt_on_signals


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    json_out: JsonOpt = False,
    message: Annotated[str, typer.Option("--message", "-m", help="recorded with the version in history")] = "",
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds instances may take to become "
                                                                    "healthy")] = 30.0,
) -> None:
    """Apply the spec: start, resize or hand over instances, then record the new version.

    A slot that needs a new instance (its app's command, env or health path changed, its
    region changed, or its shape changed where cgroups cannot resize live) is replaced by a
    blue/green handover with state sync, like `sculpt morph`.

    --json prints {"stack", "version", "result" (succeeded | failed), "changes": {op: count},
    "replaced": {slot: why}, "reason" (why it failed, else null), "seconds" (the command's
    wall time), "lb": {"address"}, "instances": [...]}.
    """
    import time

    from sculpt.app.status import stack_status
    from sculpt.app.wiring import recover_unfinished, wire

    t0 = time.monotonic()
    w = wire(spec, apply_timeout_s=timeout)
    for line in recover_unfinished(w):
        typer.echo(line, err=True)
    replaced: dict[str, str] = {}
    failed: str | None = None
    try:
        fleet = w.fleet()
        diff = w.engine.preview(fleet)
        typer.echo(f"{w.stack}: {diff}" if not diff.empty else f"{w.stack}: no changes; re-applying", err=True)
        typer.echo(f"applying {len(fleet.slots)} slot(s) through the {w.engine.name} engine ...", err=True)
        stepwise = w.engine.stepwise()  # a change is one version of steps: stateful slots are handed over
        if stepwise is not None:
            from sculpt.app.change import apply_change
            from sculpt.domain.clock import SystemClock
            from sculpt.migrate import Timeouts
            from sculpt.migrate.local import LocalPlatform

            assert w.spec is not None
            from sculpt.migrate.faults import faults_from_env

            interrupt_on_signals()
            res = apply_change(stepwise, LocalPlatform(stepwise, w.state_dir), w.ledger, SystemClock(), fleet,
                               kind="up", message=message or "up", record_spec=w.spec,
                               timeouts=Timeouts(healthy_s=timeout, drain_s=max(w.spec.lb.drain_s, 1.0)),
                               faults=faults_from_env(), progress=_progress)
            version, replaced, failed = res.version, res.replaced, res.reason if res.result == "failed" else None
        else:
            version = w.engine.up(fleet, message)
        status = stack_status(w)
    finally:
        w.deliver_events()
        w.close()
    took = time.monotonic() - t0
    lb = (status or {}).get("lb") or {"address": None}
    instances = (status or {}).get("instances", [])
    if json_out:
        emit_json({"stack": w.stack, "version": version, "result": "failed" if failed else "succeeded",
                   "changes": diff.summary, "replaced": replaced, "reason": failed, "seconds": round(took, 3),
                   "lb": lb, "instances": instances})
    if failed:
        typer.echo(f"error: version {version} failed: {failed} (the fleet runs as before the handover; "
                   "see `sculpt history`). To fix: see the instance logs, then run `sculpt up` again", err=True)
        raise typer.Exit(1)
    if json_out:
        return
    healthy = sum(1 for i in instances if i.get("healthy"))
    unknown = sum(1 for i in instances if i.get("healthy") is None)
    health = f"{healthy}/{len(instances)} healthy" + (f" ({unknown} unknown)" if unknown else "")
    handed = f"; handed over {', '.join(replaced)}" if replaced else ""
    typer.echo(f"{w.stack}: version {version} succeeded in {took:.1f}s — {health}, "
               f"serving on http://{lb.get('address')}{handed}")
    for note in (status or {}).get("notes", []):
        typer.echo(f"note: {note}", err=True)


def _progress(step: object) -> None:
    from sculpt.migrate.states import Step

    assert isinstance(step, Step)
    if step.ended is None:
        typer.echo(f"  [{step.replica}] {step.state.value} ...", err=True)
