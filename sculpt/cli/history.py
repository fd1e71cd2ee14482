"""``sculpt history``: every version of the stack, oldest first.

``--json`` prints a list of ``{"version", "time", "result", "message", "kind", "fleet": {"slots": [...]}}``
(``time`` in UNIX seconds; ``result`` is ``pending``, ``succeeded`` or ``failed``; ``kind`` is ``up``,
``rollback``, ``down`` or whatever wrote it, e.g. a morph).
"""

from __future__ import annotations

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, StackOpt, emit_json, is_tty, open_stack


def command(spec: SpecOpt = DEFAULT_SPEC, stack: StackOpt = None, json_out: JsonOpt = False) -> None:
    """List the stack's versions: number, time, result, kind, message and slots."""
    w = open_stack(stack, spec)
    try:
        versions = w.ledger.versions(w.stack)
    finally:
        w.close()
    if json_out:
        emit_json([v.to_json() for v in versions])
        return
    if not versions:
        typer.echo(f"stack '{w.stack}' has no versions yet; run `sculpt up`")
        return
    import time

    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{w.stack} history", title_justify="left")
    for col in ("version", "time (UTC)", "result", "kind", "slots", "message"):
        t.add_column(col, justify="right" if col == "version" else "left")
    for v in versions:
        slots = v.fleet.get("slots", [])
        shapes = ", ".join(sorted({f"{s['shape']}@{s['region']}" for s in slots})) or "-"
        t.add_row(str(v.version), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.time)), v.result, v.kind,
                  f"{len(slots)} × {shapes}" if slots else "-", v.message)
    Console(width=None if is_tty() else 160).print(t)
