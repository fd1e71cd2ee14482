"""``sculpt down``: stop every instance, the load balancer and the agent of the stack (history is kept)."""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, SpecOpt

StackOpt = Annotated[str | None, typer.Option("--stack", help="stack name (default: the spec's fleet)")]


def command(spec: SpecOpt = DEFAULT_SPEC, stack: StackOpt = None) -> None:
    """Stop the stack's instances, load balancer and agent; record a 'down' version."""
    from sculpt.app.wiring import recover_unfinished, wire_stack

    w = wire_stack(stack, spec)
    for line in recover_unfinished(w):
        typer.echo(line, err=True)
    try:
        running = w.engine.provider.running() if hasattr(w.engine, "provider") else True
        w.engine.destroy()
    finally:
        w.close()
    typer.echo(f"{w.stack}: down" if running else f"{w.stack}: was not running; nothing to stop")
