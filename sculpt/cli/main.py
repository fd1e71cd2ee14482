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

    def list_commands(self, ctx: Any) -> list[str]:
        """Verbs panel by panel (``PANELS`` order), each panel in registration order: typer would list every
        command before every sub-app, splitting the panels' order from the newcomer's."""
        names = list(super().list_commands(ctx))

        def panel(name: str) -> int:
            p = getattr(self.commands.get(name), "rich_help_panel", None)
            return PANELS.index(p) if p in PANELS else len(PANELS)

        return sorted(names, key=lambda n: (panel(n), names.index(n)))

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
    events,
    fleets,
    history,
    init,
    ledger,
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

# `sculpt --help` groups the verbs in these panels (typer's rich help panels), each in the order a newcomer
# meets them. New verbs join one: `app.command("fleets", rich_help_panel=FLEET)(fleets.command)`.
FLEET = "Fleet: define, apply, inspect, undo"
SCULPTOR = "Sculptor: forecast and decide"
EVALUATION = "Evaluation: replay and benchmarks"
CLOUDS = "Clouds: shapes and prices"
TOOLS = "Tools"
PANELS = (FLEET, SCULPTOR, EVALUATION, CLOUDS, TOOLS)

app.command("init", rich_help_panel=FLEET)(init.command)
app.command("preview", rich_help_panel=FLEET)(preview.command)
app.command("up", rich_help_panel=FLEET)(up.command)
app.command("status", rich_help_panel=FLEET)(status.command)
app.command("fleets", rich_help_panel=FLEET)(fleets.command)
app.command("history", rich_help_panel=FLEET)(history.command)
app.command("rollback", rich_help_panel=FLEET)(rollback.command)
app.command("morph", rich_help_panel=FLEET)(morph.command)
app.command("down", rich_help_panel=FLEET)(down.command)
app.command("demo", rich_help_panel=SCULPTOR)(demo.command)
app.command("plan", rich_help_panel=SCULPTOR)(plan.command)
app.command("watch", rich_help_panel=SCULPTOR)(watch.command)
app.command("events", rich_help_panel=SCULPTOR)(events.command)
app.command("train", rich_help_panel=SCULPTOR)(train.command)
app.command("replay", rich_help_panel=EVALUATION)(replay.command)
app.add_typer(bench.app, name="bench", rich_help_panel=EVALUATION)
app.add_typer(catalog.app, name="catalog", rich_help_panel=CLOUDS)
app.add_typer(policy.app, name="policy", rich_help_panel=TOOLS)
app.add_typer(ledger.app, name="ledger", rich_help_panel=TOOLS)
app.command("agent", rich_help_panel=TOOLS)(agent.command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
