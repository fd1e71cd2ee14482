"""``sculpt fleets``: every stack in the state directory, what it runs and what was last decided about it.

Why it exists: ``status`` answers for one spec's stack and asks its agent; someone looking after several
fleets wants the list first, also when nothing runs. Read from the ledger only (``<state dir>/ledger.db``,
``$SCULPT_HOME`` or ``.sculpt/`` beside ``--spec``), which it never creates: no agent, cloud or
model is contacted.

``--json`` prints ``[{"stack", "version", "result", "time", "current_version", "slots", "shapes":
{"<shape>@<region>": n}, "last_decision": {"summary", "kind", "time", "source"} | null, "watcher_pid"}]``:
``version`` is the latest version (``result`` says whether it succeeded), ``current_version`` the latest
that succeeded, whose fleet ``shapes`` counts; ``last_decision`` is the newest of the stack's decision
events (``sculpt watch`` records them), its moves and its versions' messages (``source``: ``event``,
``move`` or ``version``); ``watcher_pid`` the live ``sculpt watch`` holding the stack, if any. With no ledger or
no stack it prints a one-line hint (``[]`` with ``--json``) and exits 0.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json, is_tty

DECISION_KINDS = ("decision", "policy-block", "move", "rollback")


def shape_mix(fleet: dict[str, Any] | None) -> dict[str, int]:
    """``{"<shape>@<region>": slots}`` of a version's fleet, most slots first (ties by name)."""
    slots = (fleet or {}).get("slots") or []
    mix = Counter(f"{s.get('shape', '?')}@{s.get('region', '?')}" for s in slots if isinstance(s, dict))
    return dict(sorted(mix.items(), key=lambda kv: (-kv[1], kv[0])))


def last_decision(ledger: Any, stack: str, versions: list[Any]) -> dict[str, Any] | None:
    """The newest of: the stack's events (decisions, policy blocks, moves, rollbacks), its moves (a ledger
    older than its events table has moves without events) and its versions' messages; an event wins a tie
    with the move it records."""
    found: list[dict[str, Any]] = []
    got = ledger.events(stack, kinds=DECISION_KINDS)
    if got:
        e = got[-1]
        found.append({"summary": e.summary, "kind": e.kind, "time": e.time, "source": "event"})
    moves = ledger.moves(stack)
    if moves:
        m = moves[-1]
        where = f" in {m.to_region}" if m.to_region != m.from_region else ""
        found.append({"summary": f"{m.slot}: {m.from_shape} -> {m.to_shape}{where} ({m.origin})", "kind": "move",
                      "time": float(m.time), "source": "move"})
    if versions:
        v = versions[-1]
        found.append({"summary": f"v{v.version} {v.kind}: {v.message or '-'} ({v.result})", "kind": str(v.kind),
                      "time": float(v.time), "source": "version"})
    return max(found, key=lambda d: d["time"]) if found else None


def watch_lock(stack: str) -> str:
    """``sculpt.loop.service.watch_lock`` without importing the loop (1 s of numpy and models) for a listing;
    tests/unit/test_fleets_cli.py checks they agree."""
    return f"{stack}:watch"


def watcher(ledger: Any, stack: str) -> int | None:
    from sculpt.ledger import pid_alive

    held = ledger.lock_holder(watch_lock(stack))
    return held[0] if held is not None and pid_alive(held[0]) else None


def overview(ledger: Any) -> list[dict[str, Any]]:
    """One row per stack in ``ledger`` (see the module docstring for the keys)."""
    rows = []
    for stack in ledger.stacks():
        versions = ledger.versions(stack)
        latest = versions[-1] if versions else None
        current = next((v for v in reversed(versions) if v.result == "succeeded"), None)
        mix = shape_mix(current.fleet if current else None)
        rows.append({"stack": stack, "version": latest.version if latest else None,
                     "result": latest.result if latest else None, "time": latest.time if latest else None,
                     "current_version": current.version if current else None, "slots": sum(mix.values()),
                     "shapes": mix, "last_decision": last_decision(ledger, stack, versions),
                     "watcher_pid": watcher(ledger, stack)})
    return rows


def ago(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = max(0.0, now - t)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    if s < 172800:
        return f"{s / 3600:.0f}h ago"
    return f"{s / 86400:.0f}d ago"


def command(spec: SpecOpt = DEFAULT_SPEC, json_out: JsonOpt = False) -> None:
    """List every stack in the state directory: version, shape mix, last decision and when."""
    from sculpt.ledger import Ledger, state_dir

    where = state_dir(spec)
    path = where / "ledger.db"
    rows: list[dict[str, Any]] = []
    if Path(path).exists():  # a read must not create a ledger where there was none
        ledger = Ledger(path)
        try:
            rows = overview(ledger)
        finally:
            ledger.close()
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo(f"no stacks in {where} yet: `sculpt up` creates one (or set $SCULPT_HOME / --spec to "
                   "another project's state)")
        return
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    t = Table(title=f"fleets in {where}", title_justify="left")
    for col in ("stack", "version", "shapes", "last decision", "when", "watched"):
        t.add_column(col, overflow="fold" if col in ("shapes", "last decision") else "ellipsis")
    for r in rows:
        version = "-" if r["version"] is None else f"v{r['version']}" + (
            "" if r["result"] == "succeeded" else f" ({r['result']}; running v{r['current_version'] or '-'})")
        shapes = ", ".join(f"{n}× {k}" for k, n in r["shapes"].items()) or "-"
        d = r["last_decision"]
        t.add_row(r["stack"], version, shapes, d["summary"] if d else "-", ago(d["time"] if d else None, now),
                  f"pid {r['watcher_pid']}" if r["watcher_pid"] else "no")
    Console(width=None if is_tty() else 160).print(t)
