"""Helpers shared by the verb modules: spec/ledger resolution, JSON output, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

SpecOpt = Annotated[
    Path, typer.Option("--spec", "-f", help="fleet spec file", envvar="SCULPT_SPEC", show_default=True)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]

DEFAULT_SPEC = Path("sculpt.yaml")


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (the stable ``--json`` contract)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def utc(t: float) -> str:
    """UNIX seconds as ``YYYY-MM-DD HH:MM:SS`` in UTC (the text views of ``history`` and ``events``)."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def is_tty() -> bool:
    return sys.stdout.isatty()


StackOpt = Annotated[str | None, typer.Option("--stack", help="stack name (default: the spec's fleet)")]


def open_stack(stack: str | None, spec: Path) -> Any:
    """Wire the stack named by ``--stack`` (else the spec's) and first recover any interrupted morph."""
    from sculpt.app.wiring import recover_unfinished, wire_stack

    w = wire_stack(stack, spec)
    for line in recover_unfinished(w):
        typer.echo(line, err=True)
    return w


def interrupt_on_signals() -> None:
    """Turn SIGTERM (and SIGINT) into ``Interrupted``, so a ``kill`` rolls a handover back like Ctrl-C and
    the reason says which signal it was; only SIGKILL cannot be handled (the next command recovers it)."""
    import signal

    from sculpt.migrate.orchestrator import Interrupted

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
