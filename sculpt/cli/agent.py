"""``sculpt agent``: run a stack's supervisor agent in the foreground (``sculpt up`` starts it detached)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def command(
    stack: Annotated[str, typer.Option("--stack", help="the stack (fleet) whose instances it supervises")],
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="default: $SCULPT_HOME or ./.sculpt",
                                                   envvar="SCULPT_HOME")] = None,
) -> None:
    """Own the stack's instances and load balancer until Ctrl-C, SIGTERM or `sculpt down`."""
    from sculpt.ledger import state_dir as default_state_dir
    from sculpt.providers.local.agent import run_agent

    code = run_agent(state_dir or default_state_dir(), stack)
    if code:
        raise typer.Exit(code)
