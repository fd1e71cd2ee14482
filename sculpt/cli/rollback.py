"""``sculpt rollback``: re-apply an earlier version's fleet as a new version (history stays append-only).

``--json`` prints ``{"stack", "version", "rolled_back_to", "result"}``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, StackOpt, emit_json, open_stack


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    to: Annotated[int | None, typer.Option("--to", help="version to go back to (default: the previous "
                                                          "succeeded version)")] = None,
    stack: StackOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Go back to version N (default: the succeeded version before the current one)."""
    from sculpt.domain.errors import NotFoundError

    w = open_stack(stack, spec)
    try:
        target = to if to is not None else w.engine.previous_succeeded()
        if target is None:
            raise NotFoundError(f"stack '{w.stack}' has no earlier succeeded version to roll back to",
                                "see `sculpt history`, or pass --to N")
        typer.echo(f"rolling {w.stack} back to version {target} ...", err=True)
        version = w.engine.rollback(target)
    finally:
        w.close()
    if json_out:
        emit_json({"stack": w.stack, "version": version, "rolled_back_to": target, "result": "succeeded"})
        return
    typer.echo(f"{w.stack}: version {version} re-applies version {target} (succeeded)")
