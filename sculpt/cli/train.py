"""``sculpt train``: fit a per-profile cold-start prior from traces (scikit-learn) and say whether it helps.

Imports only typer and the stdlib at module level; scikit-learn and the models load when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def command(
    traces: Annotated[Path, typer.Option("--traces", help="directory of Bitbrains or NAB trace CSVs")],
    profile: Annotated[str, typer.Option("--profile", help="application profile the prior is for")] = "general",
    out: Annotated[Path | None, typer.Option("--out", help="prior file (default: $SCULPT_HOME/priors/P.prior)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="read at most this many traces (0: all)")] = 0,
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate",
                                           help="hold half the traces out and report cold-start MAE")] = True,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
) -> None:
    """Fit a per-profile prior (quantile gradient boosting on lag features) used while a stream is young."""
    from sculpt.domain.errors import ConfigError
    from sculpt.domain.spec import PROFILES
    from sculpt.forecast.prior import default_prior_path, fit_prior, holdout
    from sculpt.forecast.traces import read_dir, to_grid

    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}'", f"use one of: {', '.join(PROFILES)}")
    grid = to_grid(read_dir(traces, limit=limit or None))
    report = holdout(grid, profile, seed=seed) if evaluate and len(grid.names) >= 2 else None
    prior = fit_prior(grid, profile, seed=seed)
    # the default path is where `sculpt watch` and `sculpt plan` find it: a prior the hold-out says does not
    # help is not put there (``--out`` keeps it anyway, elsewhere)
    unhelpful = report is not None and not report["helps"]
    path = prior.save(out) if out is not None else None if unhelpful else prior.save(default_prior_path(profile))
    doc = {"profile": profile, "prior": str(path) if path else None, "traces": len(grid.names), "rows": prior.rows,
           "holdout": report, "used_by": "sculpt watch, sculpt plan (this state dir), sculpt replay --prior"}
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"prior for '{profile}' fitted on {prior.rows} periods of {len(grid.names)} traces: "
               f"{path or 'not saved (the hold-out says it does not help; --out FILE keeps it anyway)'}")
    if report:
        a, b = report["without_prior"], report["with_prior"]
        typer.echo(f"cold start (first {report['cold_start_periods']} h of {report['test_traces']} held-out traces): "
                   f"MAE {a['mae']:.4g} without, {b['mae']:.4g} with the prior; "
                   f"memory MAE {a['mem_mae'] or 0:.4g} vs {b['mem_mae'] or 0:.4g} -> "
                   f"{'it helps' if report['helps'] else 'it does not help here'}")
    if path is not None and out is None:
        typer.echo(f"`sculpt watch` and `sculpt plan` of '{profile}' fleets with this state directory use it for "
                   "streams younger than two days; `sculpt replay --prior FILE` too")
