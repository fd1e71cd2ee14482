"""The ``sculpt`` typer application: registers each verb and turns ``SculptError`` into one line + exit code.

Exit codes: 0 ok; 1 an error the message explains (bad spec, locked stack, provider failure);
2 a policy violation (``sculpt plan``, ``sculpt policy check``) or a usage error.
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


# -- verbs (each module is cheap to import) ---------------------------------------------------------------
from sculpt.cli import catalog as _catalog  # noqa: E402
from sculpt.cli import init as _init  # noqa: E402

app.command("init")(_init.command)
app.add_typer(_catalog.app, name="catalog")
from sculpt.cli import bench as _bench  # noqa: E402

app.add_typer(_bench.app, name="bench")
from sculpt.cli import train as _train  # noqa: E402

app.command("train")(_train.command)
from sculpt.cli import replay as _replay  # noqa: E402

app.command("replay")(_replay.command)
from sculpt.cli import agent as _agent  # noqa: E402
from sculpt.cli import down as _down  # noqa: E402
from sculpt.cli import history as _history  # noqa: E402
from sculpt.cli import rollback as _rollback  # noqa: E402
from sculpt.cli import status as _status  # noqa: E402
from sculpt.cli import up as _up  # noqa: E402

app.command("up")(_up.command)
app.command("status")(_status.command)
app.command("history")(_history.command)
app.command("rollback")(_rollback.command)
app.command("down")(_down.command)
app.command("agent")(_agent.command)
from sculpt.cli import morph as _morph  # noqa: E402

app.command("morph")(_morph.command)
from sculpt.cli import policy as _policy  # noqa: E402

app.add_typer(_policy.app, name="policy")
from sculpt.cli import demo as _demo  # noqa: E402
from sculpt.cli import plan as _plan  # noqa: E402
from sculpt.cli import watch as _watch  # noqa: E402

app.command("plan")(_plan.command)
app.command("watch")(_watch.command)
app.command("demo")(_demo.command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
