"""``sculpt preview``: the diff ``sculpt up`` would apply, applying nothing.

The same fleet ``up`` computes (the spec merged with what morphs and the sculptor chose, see
``sculpt.app.wiring.desired_fleet``), compared with the fleet that runs now: which slots are created,
updated in place, replaced by a blue/green handover (and why), deleted, and which keep a morph-chosen shape
or region. No agent is started, no version is written and no interrupted morph is recovered (the next
command that changes the stack does that; the preview says so).

Exit codes: 0 no change, 3 changes, 1 an error. ``--json`` prints ``{"stack", "changes": {op: n}, "slots":
[{"op", "slot", "fields", "before", "after", "reason", "kept"}], "kept": [{"slot", "shape", "region",
"note"}], "replacements": {slot: reason}, "spec_changed": [field, ...]}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json

if TYPE_CHECKING:
    from sculpt.app.wiring import Wiring

CHANGES_EXIT = 3
"""The exit code when ``up`` would change something (like ``terraform plan -detailed-exitcode``'s 2, but 2
is a policy violation or usage error here)."""


def command(spec: SpecOpt = DEFAULT_SPEC, json_out: JsonOpt = False) -> None:
    """Show what `sculpt up` would change, applying nothing; exit 0 no change, 3 changes."""
    from sculpt.app.wiring import wire

    w = wire(spec)
    try:
        notes = _notes(w)
        fleet = w.fleet()
        diff = w.engine.preview(fleet)
    finally:
        w.close()
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if json_out:
        data = diff.to_json()
        emit_json({"stack": w.stack, "changes": data["summary"], "slots": data["changes"], "kept": data["kept"],
                   "replacements": data["replacements"], "spec_changed": data["spec_changed"]})
    else:
        typer.echo(f"{w.stack}: {diff}")
        if not diff.empty:
            counts = ", ".join(f"{n} to {op}" for op, n in sorted(diff.summary.items()) if op != "same")
            typer.echo(f"{w.stack}: {counts or 'spec changes only'}; nothing applied (`sculpt up` applies it)")
    if not diff.empty:
        raise typer.Exit(CHANGES_EXIT)


def _notes(w: Wiring) -> list[str]:
    """What a preview leaves alone that the running or next changing command deals with."""
    from sculpt.ledger import pid_alive

    out = []
    for m in w.ledger.unfinished_migrations(w.stack):
        if m.pid and pid_alive(m.pid):
            out.append(f"morph {m.id} is in progress (pid {m.pid}, {m.state}): the fleet is changing")
        else:
            out.append(f"morph {m.id} was interrupted ({m.state}); the next command that changes the stack "
                       "recovers it first, so what it applies may differ")
    out += [f"version {v.version} ({v.kind}) was left pending by a process that died; the next command that "
            "changes the stack closes it" for v in w.ledger.pending_versions(w.stack)
            if v.pid and not pid_alive(v.pid)]
    return out
