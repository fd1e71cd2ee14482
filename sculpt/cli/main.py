"""The ``sculpt`` typer application: registers each verb and turns ``SculptError`` into one line + exit code.

Exit codes: 0 ok; 1 an error the message explains (bad spec, locked stack, provider failure);
2 a policy violation (``sculpt plan``, ``sculpt policy check``) or a usage error; 3 ``sculpt preview``
found changes.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from typer.core import TyperGroup


class SculptGroup(TyperGroup):
    """Root group: a ``SculptError`` raised by any verb becomes ``error: <one line>`` and its exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (see interrupt_on_signals): after rolling back
            what = getattr(e, "signame", "SIGINT").replace("SIGINT", "Ctrl-C") or "Ctrl-C"
            typer.echo(f"error: interrupted ({what}); what was in flight was finished or undone", err=True)
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - only SculptError is handled; others re-raise
            from sculpt.domain.errors import SculptError

            if isinstance(e, SculptError):
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(e.exit_code) from None
            raise


app = typer.Typer(
    cls=SculptGroup,
    name="sculpt",
    help="Keep running applications on the right instance shape, predictively.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log debug detail to stderr"),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="warning: %(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# -- verbs (each module is cheap to import: heavy imports live inside the commands) ------------------------
from sculpt.cli import (  # noqa: E402
    agent,
    bench,
    catalog,
    demo,
    down,
    history,
    init,
    morph,
    plan,
    policy,
    preview,
    replay,
    rollback,
    status,
    train,
    up,
    watch,
)

# in the order a newcomer meets them
app.command("init")(init.command)
app.command("preview")(preview.command)
app.command("up")(up.command)
app.command("status")(status.command)
app.command("history")(history.command)
app.command("rollback")(rollback.command)
app.command("down")(down.command)
app.command("morph")(morph.command)
app.command("plan")(plan.command)
app.command("watch")(watch.command)
app.command("demo")(demo.command)
app.command("replay")(replay.command)
app.command("train")(train.command)
app.add_typer(catalog.app, name="catalog")
app.add_typer(policy.app, name="policy")
app.add_typer(bench.app, name="bench")
app.command("agent")(agent.command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
