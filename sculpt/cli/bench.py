"""``sculpt bench``: the measurement group (prints figures, writes JSON). A thin aggregator.

Each benchmark lives in its own ``bench_*.py`` module as a plain function; this module imports them and
registers each on ``app`` (one line per verb, in help order), so the dependency runs one way: the group
knows its verbs, a verb does not know its group. It stays cheap to import: the ``bench_*`` modules import
typer and the stdlib at module level and everything heavy inside their functions.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from sculpt.cli import bench_forecast, bench_lb, bench_morph, bench_replay, bench_up

app = typer.Typer(help="Measure sculpt (prints figures, writes JSON).", no_args_is_help=True)


def commands() -> tuple[tuple[str, Callable[..., None]], ...]:
    """Every ``sculpt bench`` verb and the function that runs it, in ``sculpt bench --help`` order."""
    return (
        ("replay", bench_replay.bench_replay),
        ("tick", bench_replay.bench_tick),
        ("cli", bench_replay.bench_cli),
        ("forecast", bench_forecast.bench_forecast),
        ("forecast-tick", bench_forecast.bench_forecast_tick),
        ("lb", bench_lb.bench_lb),
        ("morph", bench_morph.bench_morph),
        ("up", bench_up.bench_up),
    )


for _name, _command in commands():
    app.command(_name)(_command)
