"""``sculpt down``: stop every instance, the load balancer and the agent of the stack (history is kept)."""

from __future__ import annotations

import typer

from sculpt.cli._common import DEFAULT_SPEC, SpecOpt, StackOpt, open_stack


def command(spec: SpecOpt = DEFAULT_SPEC, stack: StackOpt = None) -> None:
    """Stop the stack's instances, load balancer and agent; record a 'down' version."""
    w = open_stack(stack, spec)
    try:
        running = w.engine.provider.running() if hasattr(w.engine, "provider") else True
        w.engine.destroy()
    finally:
        w.close()
    typer.echo(f"{w.stack}: down" if running else f"{w.stack}: was not running; nothing to stop")
