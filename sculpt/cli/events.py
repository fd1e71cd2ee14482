"""``sculpt events``: the stack's decisions, moves, rollbacks and policy blocks, oldest first.

Read from the ledger, so it works with nothing running and shows what every command and ``sculpt watch``
recorded. ``--follow`` keeps printing new events until Ctrl-C (as ``tail -f``). ``--json`` prints a list of
``{"seq", "time", "stack", "kind", "summary", "data"}``; with ``--follow`` one such object per line (JSON
Lines), so that a pipe sees each event as it happens. ``kind`` is ``decision``, ``policy-block``, ``move``
or ``rollback``.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, StackOpt, emit_json, utc
from sculpt.ledger import EVENT_KINDS as KINDS

POLL_S = 0.5


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    stack: StackOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-F", help="keep printing new events until Ctrl-C")] = False,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", help="only this kind (repeatable): decision, policy-block, move, rollback")] = None,
    since: Annotated[int, typer.Option("--since", min=0, help="only events after this seq")] = 0,
    last: Annotated[int | None, typer.Option("--last", min=1, help="only the newest N events")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the stack's events (decisions, moves, rollbacks, policy blocks); --follow for new ones."""
    from sculpt.app.wiring import wire_stack
    from sculpt.domain.errors import ConfigError

    kinds = tuple(kind or ())
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"unknown event kind {bad[0]!r}", f"use one of {', '.join(KINDS)}")
    w = wire_stack(stack, spec)
    try:
        events = w.ledger.events(w.stack, after=since, kinds=kinds)
        if last is not None:
            events = events[-last:]
        if json_out and not follow:
            emit_json([e.to_json() for e in events])
            return
        if not events and not follow:
            typer.echo(f"stack '{w.stack}' has no events yet (`sculpt watch` and every morph record them)")
            return
        after = since
        while True:
            for e in events:
                if json_out:
                    typer.echo(json.dumps(e.to_json(), default=str))
                else:
                    typer.echo(f"{e.seq:>6}  {utc(e.time)}  {e.kind:<12}  {e.summary}")
                after = e.seq
            if not follow:
                return
            try:
                time.sleep(POLL_S)
            except KeyboardInterrupt:
                return
            events = w.ledger.events(w.stack, after=after, kinds=kinds)
    except KeyboardInterrupt:
        return
    finally:
        w.close()
