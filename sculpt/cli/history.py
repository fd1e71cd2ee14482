"""``sculpt history``: every user-visible version of the stack, oldest first, each with its steps.

One version per command (``kind``: ``up``, ``morph``, ``rollback``, ``down``, ``requirements``); the stack
updates a command made (a blue/green morph: add green, shift, retire blue) are its steps. ``--json`` prints
a list of ``{"version", "time", "result", "message", "kind", "fleet": {"slots": [...]}, "steps": [{"step",
"time", "result", "message"}]}`` (``time`` in UNIX seconds; ``result`` is ``pending``, ``succeeded`` or
``failed``). The text view indents each version's steps under it (a single step that only repeats its
version is not repeated).
"""

from __future__ import annotations

from typing import Any

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, StackOpt, emit_json, is_tty, open_stack, utc


def _slots(fleet: dict[str, Any]) -> str:
    """The fleet's slots as counts per shape@region, ``2× std-1c-1024m@local-a + 1× std-2c-2048m@local-a``
    (a bare list after one count read as that many of the first shape)."""
    from collections import Counter

    counts = Counter(f"{s['shape']}@{s['region']}" for s in fleet.get("slots", []))
    return " + ".join(f"{n}× {shape}" for shape, n in sorted(counts.items())) or "-"


def command(spec: SpecOpt = DEFAULT_SPEC, stack: StackOpt = None, json_out: JsonOpt = False) -> None:
    """List the stack's versions (number, time, result, kind, slots, message), each with its steps."""
    w = open_stack(stack, spec)
    try:
        versions = w.ledger.versions(w.stack)
        steps = {v.version: w.ledger.steps(w.stack, v.version) for v in versions}
    finally:
        w.close()
    if json_out:
        emit_json([{**v.to_json(), "steps": [s.to_json() for s in steps[v.version]]} for v in versions])
        return
    if not versions:
        typer.echo(f"stack '{w.stack}' has no versions yet; run `sculpt up`")
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{w.stack} history", title_justify="left")
    for col in ("version", "time (UTC)", "result", "kind", "slots", "message"):
        t.add_column(col, justify="right" if col == "version" else "left")
    for v in versions:
        t.add_row(str(v.version), utc(v.time), v.result, v.kind, _slots(v.fleet), v.message)
        own = steps[v.version]
        if len(own) == 1 and own[0].result == v.result and own[0].message in (v.message, v.kind):
            continue
        for s in own:
            t.add_row("", f"  {utc(s.time)}", f"  {s.result}", f"  step {s.step}", f"  {_slots(s.fleet)}",
                      f"  {s.message}")
    Console(width=None if is_tty() else 160).print(t)
