"""``sculpt bench``: the group lists every verb once, in one order, each run by its ``bench_*`` function."""

from __future__ import annotations

from typer.testing import CliRunner

from sculpt.cli import bench
from sculpt.cli.main import app

VERBS = ["replay", "tick", "cli", "forecast", "forecast-tick", "lb", "morph", "up"]


def test_the_group_registers_each_verb_once_in_help_order() -> None:
    assert [name for name, _ in bench.commands()] == VERBS
    registered = [(c.name, c.callback) for c in bench.app.registered_commands]
    assert registered == list(bench.commands())  # nothing else registered itself on the group
    out = CliRunner().invoke(app, ["bench", "--help"]).output
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("│ ") and not line.startswith("│  ")]
    assert rows[rows.index("replay"):] == VERBS  # the Commands panel, after the Options one
