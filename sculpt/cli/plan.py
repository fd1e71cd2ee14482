"""``sculpt plan``: the next plan for the current fleet, for CI and reviews (nothing is changed).

It resumes the model the watcher checkpointed (``<stack>:watch`` in the ledger) — or, without one (a CI
runner), learns the last 24 h of a range source's history (``--source
prometheus=URL|cloudwatch|gcp-monitoring``, ``--backfill HOURS``) — takes one reading of the running fleet
when there is one, and runs the same pure decision as ``sculpt watch``. With little history the plan says
so and holds (confidence 0).

Exit codes: 0 when the plan is allowed (with or without a change), 2 when a mandatory policy rule blocks
it, 3 when no usable metric was read — the fleet runs but the source is down, refused, answered garbage or
NaN for every instance, or ``--source`` names a metric source and no fleet runs for it to read: the plan is
a hold made on nothing, so a CI gate must not pass it — and 1 for errors. With the default ``--source
local`` and no running fleet the plan says the fleet is not running and exits 0 (or 2). ``--json`` prints ``Plan.to_json()``: ``{"stack", "decision", "actions", "reason",
"expected_monthly_delta_usd", "confidence", "risk", "urgent", "distribution": {shape: p}, "policy":
[{"rule", "level", "passed", "message"}]}``; ``--markdown`` prints a pull-request comment.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    json_out: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print the plan as a pull-request comment")] = False,
    model: Annotated[str, typer.Option("--model", help="forecast model whose checkpoint to use")] = "ensemble",
    source: Annotated[str, typer.Option(
        "--source", help="local | prometheus=URL | cloudwatch[=REGION] | gcp-monitoring")] = "local",
    backfill: Annotated[float | None, typer.Option(
        "--backfill", min=0, help="hours of --source history to learn first (default: 24 without a model "
                                  "checkpoint, else 0; the local source keeps no history)")] = None,
    sample_s: Annotated[float, typer.Option("--sample", min=0, help="seconds between the two readings that "
                                                                    "measure rates (CPU, rps)")] = 1.0,
) -> None:
    """Print the next plan for the fleet; exit 2 when policy blocks it, 3 when no usable metrics were read."""
    import time

    from sculpt.app.service import open_service

    opened = open_service(spec, mode="recommend", model=model, source=source, lock=False, recover=False,
                          save=False, backfill_h=backfill)
    try:
        svc = opened.service
        for note in opened.notes:
            typer.echo(f"note: {note}", err=True)
        unmeasured: list[str] | None = None  # the tick's warnings when the running fleet gave no reading
        if svc.port.view.slots():
            svc.prime()
            time.sleep(sample_s)
            report = svc.tick()
            plan = report.plan
            if not report.instances:
                unmeasured = list(report.warnings)
        else:
            plan = svc.plan()
            plan = plan.model_copy(update={"reason": f"{plan.reason} (the fleet is not running: `sculpt up` "
                                           "starts it)"}) if plan.confidence == 0 else plan
            if source.partition("=")[0] != "local":  # a metric source was named, and it had nothing to read
                unmeasured = [f"the fleet is not running, so --source {source} had no instance to read"]
    finally:
        opened.close()
    if json_out:
        emit_json(plan.to_json())
    elif markdown:
        typer.echo(plan.to_markdown(), nl=False)
    else:
        typer.echo(str(plan))
    if not plan.allowed:
        raise typer.Exit(2)
    if unmeasured is not None:
        no_metrics_exit(unmeasured, source)


def no_metrics_exit(warnings: list[str], source: str) -> None:
    """Exit 3 with one ``warning:`` line: nothing usable was measured, so the plan is not a verdict."""
    why = f" ({warnings[0]})" if warnings else ""
    typer.echo(f"warning: no usable metrics were read from --source {source}{why}; exit 3 (check the source)",
               err=True)
    raise typer.Exit(NO_METRICS_EXIT)


NO_METRICS_EXIT = 3
