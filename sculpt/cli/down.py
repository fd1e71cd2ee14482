"""``sculpt down``: stop every instance, the load balancer and the agent of the stack (history is kept).

A ledger that cannot be read (damaged, a directory, unreadable) does not keep a local stack running: its
processes are found from the state directory's own records (``agents/<stack>.json``, the processes started
for that state dir) and stopped all the same; the command then fails with the ledger's one-line error,
since no ``down`` version could be recorded.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sculpt.cli._common import DEFAULT_SPEC, SpecOpt, StackOpt, open_stack
from sculpt.domain.errors import LedgerError


def command(spec: SpecOpt = DEFAULT_SPEC, stack: StackOpt = None) -> None:
    """Stop the stack's instances, load balancer and agent; record a 'down' version."""
    try:
        w = open_stack(stack, spec)
    except LedgerError:
        _down_without_ledger(stack, spec)
        raise
    try:
        running = w.engine.running()
        w.engine.destroy()
    finally:
        w.close()
    typer.echo(f"{w.stack}: down" if running else f"{w.stack}: was not running; nothing to stop")


def _down_without_ledger(stack: str | None, spec: Path) -> None:
    """Stop the local processes of the stack named by ``--stack`` or the spec, reading no ledger."""
    from sculpt.domain.errors import SculptError
    from sculpt.ledger import state_dir
    from sculpt.providers.local.procs import AgentPaths
    from sculpt.providers.local.teardown import stop_stack

    name = stack
    if name is None or spec.exists():
        try:
            from sculpt.domain.spec import load_spec

            loaded = load_spec(spec)
        except SculptError:
            loaded = None
        if loaded is not None and loaded.provider != "local":
            return  # a cloud stack's resources are found through its stack engine, which needs the ledger
        name = name or (loaded.fleet if loaded is not None else None)
    if name is None:
        return
    home = state_dir(spec if spec.exists() else None)
    if stop_stack(AgentPaths(home, name)):
        typer.echo(f"warning: stopped every local process of stack '{name}' without its ledger", err=True)
