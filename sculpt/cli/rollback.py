"""``sculpt rollback``: go back to an earlier version's fleet as a new version (history stays append-only).

On the local engine a rollback is a morph to that version's fleet: every slot whose shape, region or app
differs is handed over (in place where cgroups allow, else blue/green with state sync), so the data the
fleet holds now moves with it. ``--json`` prints ``{"stack", "version", "rolled_back_to", "result"}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sculpt.cli._common import (
    DEFAULT_SPEC,
    JsonOpt,
    SpecOpt,
    StackOpt,
    emit_json,
    interrupt_on_signals,
    open_stack,
)


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    to: Annotated[int | None, typer.Option("--to", help="version to go back to (default: the succeeded "
                                                          "version before the current one)")] = None,
    stack: StackOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Go back to version N (default: the succeeded version before the current one)."""
    from sculpt.domain.errors import NotFoundError

    w = open_stack(stack, spec)
    failed: str | None = None
    try:
        target = to if to is not None else w.engine.previous_succeeded()
        if target is None:
            raise NotFoundError(f"stack '{w.stack}' has no earlier succeeded version to roll back to",
                                "see `sculpt history`, or pass --to N")
        row = _rollback_target(w, target)  # every check before a word of "rolling back"
        stepwise = w.engine.stepwise()  # a rollback is a change to that fleet: stateful slots are handed over
        if stepwise is not None:
            from sculpt.app.change import apply_change
            from sculpt.cli.up import _progress
            from sculpt.domain.clock import SystemClock
            from sculpt.engine.local import fleet_of
            from sculpt.migrate.local import LocalPlatform

            typer.echo(f"rolling {w.stack} back to version {target} ...", err=True)
            from sculpt.migrate.faults import faults_from_env

            interrupt_on_signals()
            res = apply_change(stepwise, LocalPlatform(stepwise, w.state_dir), w.ledger, SystemClock(),
                               fleet_of(row), kind="rollback", message=f"rollback to {target}",
                               faults=faults_from_env(), progress=_progress)
            version = res.version
            failed = res.reason if res.result == "failed" else None
        else:
            typer.echo(f"rolling {w.stack} back to version {target} ...", err=True)
            version = w.engine.rollback(target)
    finally:
        w.deliver_events()
        w.close()
    if json_out:
        emit_json({"stack": w.stack, "version": version, "rolled_back_to": target,
                   "result": "failed" if failed else "succeeded"})
    if failed:
        typer.echo(f"error: rollback to {target} failed: {failed} (the fleet runs as before it). To fix: see "
                   "`sculpt history` and the instance logs, then run `sculpt rollback` again", err=True)
        raise typer.Exit(1)
    if not json_out:
        typer.echo(f"{w.stack}: version {version} re-applies version {target} (succeeded)")


def _rollback_target(w: Any, target: int) -> Any:
    """The ledger row of version ``target``, refused with one line (naming the versions there are) when it
    does not exist, failed, or (a step-wise engine: the rollback is a morph, which needs instances to hand over
    to) has none, a ``down``."""
    from sculpt.domain.errors import ConfigError, NotFoundError

    versions = w.ledger.versions(w.stack)
    row = next((v for v in versions if v.version == target), None)
    if row is None:
        known = f"versions 1..{versions[-1].version}" if versions else "no versions yet"
        raise NotFoundError(f"stack '{w.stack}' has no version {target} ({known})",
                            "pick a version from `sculpt history`")
    if row.result != "succeeded" or (w.engine.stepwise() is not None and not row.fleet.get("slots")):
        why = row.result if row.result != "succeeded" else "has no instances (a `down`)"
        raise ConfigError(f"version {target} of stack '{w.stack}' {why}; only a succeeded version "
                          "with instances can be rolled back to", "pick one in `sculpt history`")
    return row
