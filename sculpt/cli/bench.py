"""``sculpt bench``: the measurement group (prints figures, writes JSON). A thin aggregator.

Each benchmark lives in its own ``bench_*.py`` module and registers its command on ``app`` when imported
below; this module stays cheap to import (typer and the stdlib only).
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Measure sculpt (prints figures, writes JSON).", no_args_is_help=True)

# -- benchmarks (one import line each; every module registers itself on ``app``) --------------------------
from sculpt.cli import bench_forecast as _bench_forecast  # noqa: E402,F401
from sculpt.cli import bench_lb as _bench_lb  # noqa: E402,F401
from sculpt.cli import bench_morph as _bench_morph  # noqa: E402,F401
from sculpt.cli import bench_replay as _bench_replay  # noqa: E402,F401
from sculpt.cli import bench_up as _bench_up  # noqa: E402,F401
