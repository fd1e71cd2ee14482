"""``sculpt demo``: bring up a local fleet with the demo app, drive it, and watch sculpt morph it: in
place, blue/green with its pause and the keys verified, and to the cheaper region.

See ``sculpt.app.demo`` for the story it tells and the time compression it uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sculpt.cli._common import JsonOpt


def command(
    duration: Annotated[float, typer.Option("--duration", min=10, help="seconds the load runs")] = 90.0,
    trace: Annotated[Path | None, typer.Option("--trace", help="trace CSV whose shape drives the load "
                                                               "(default: one from ../shared/data if present)")]
    = None,
    home: Annotated[Path | None, typer.Option("--home", help="state directory (default: a temporary one, "
                                                             "removed afterwards)")] = None,
    model: Annotated[str, typer.Option("--model", help="forecast model")] = "river",
    json_out: JsonOpt = False,
) -> None:
    """One command: local fleet + demo app + trace-shaped load + the sculptor in auto mode; exit 1 without a morph.

    Each morph is told with the decision's reason and how it was made: in place, or blue/green with the
    load balancer's pause and the keys read back through it (a move to the cheaper local-b is always
    blue/green). --json prints {"source", "morphs", "moves": [{"kind", "from", "to", "from_region",
    "to_region", "region_move", "result", "seconds", "pause_ms", "steps", "keys_checked",
    "keys_verified", "reason"}], "shown": {"in_place", "blue_green", "region_move"}, "ticks",
    "requests", "failed", "writes", "writes_failed", "first_morph_s", "leftover_pids", ...}.
    """
    from sculpt.app.demo import DemoConfig, run_demo

    def say(line: str) -> None:
        typer.echo(line, err=json_out)

    result = run_demo(DemoConfig(duration_s=duration, trace=trace, home=home, model=model), say=say)
    if json_out:
        from sculpt.cli._common import emit_json

        emit_json(result.to_json())
    if not result.morphs:
        typer.echo("error: no morph happened during the demo. To fix: run it again with a longer --duration, "
                   "or on a less busy machine.", err=True)
        raise typer.Exit(1)
