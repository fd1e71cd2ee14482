"""``sculpt morph``: move the running fleet to another shape or region now (in place or blue/green).

``--json`` prints ``{"migration_id", "strategy", "from": {"shape", "region", "version", "replicas"},
"to": {"shape", "region"}, "result": "done"|"rolled_back"|"unchanged", "reason", "steps": [{"state",
"started", "ended", "replica", "detail"}], "pause_ms", "pause_ms_max", "duration_s", "versions"}`` (times in
UNIX seconds; ``pause_ms`` is the total time the load balancer held requests, ``pause_ms_max`` the longest
single pause). Exit code 0
when the morph is done or nothing had to change, 1 when it was rolled back (the reason is printed).
"""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json, interrupt_on_signals

StrategyOpt = Annotated[str, typer.Option("--strategy", help="auto | in-place | blue-green")]


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    shape: Annotated[str | None, typer.Option("--shape", help="target shape (default: the current one)")] = None,
    region: Annotated[str | None, typer.Option("--region", help="target region (default: the current one)")] = None,
    strategy: StrategyOpt = "auto",
    fault: Annotated[str | None, typer.Option("--fault", help="inject a fault (see docs/migration.md); "
                                              "also $SCULPT_FAULT")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="seconds green may take to become healthy (default: 30 locally, 900 on a cloud)")] = None,
    step_timeout: Annotated[float | None, typer.Option(
        "--step-timeout", min=1, help="seconds any other step may take (default: 30 locally, 1800 on a cloud)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Morph the fleet to --shape/--region with a journaled, rollback-safe migration, step by step."""
    import dataclasses
    import os

    from sculpt.app.wiring import morph_platform, wire
    from sculpt.domain.clock import SystemClock
    from sculpt.domain.errors import ConfigError
    from sculpt.migrate import MorphRequest, Orchestrator, Timeouts, parse_faults, recover
    from sculpt.migrate.cloud import CloudPlatform
    from sculpt.migrate.faults import FAULT_ENV
    from sculpt.migrate.states import Step

    faults = parse_faults(fault if fault is not None else os.environ.get(FAULT_ENV))
    w = wire(spec)
    try:
        if w.spec is None:
            raise ConfigError("no fleet spec was given", "pass --spec sculpt.yaml")
        platform, cloud_timeouts = morph_platform(w)
        for rep in recover(w.state_dir, w.stack, ledger=w.ledger, platform=platform, timeouts=cloud_timeouts):
            typer.echo(f"recovered interrupted morph {rep.migration_id}: {rep.result}", err=True)
        _, current = platform.current()
        target_shape = shape or current.slots[0].shape
        target_region = region or current.slots[0].region
        w.catalog.offering(target_shape, target_region)  # unknown shape/region: one-line NotFoundError
        total = [0]

        def show(step: Step) -> None:
            if step.ended is None:
                total[0] += 1
                typer.echo(f"[{step.replica}] {step.state.value} ...", err=True)
            else:
                typer.echo(f"[{step.replica}] {step.state.value} done in {step.ended - step.started:.2f}s", err=True)

        base = cloud_timeouts or Timeouts(healthy_s=30.0, step_s=30.0, drain_s=max(w.spec.lb.drain_s, 1.0))
        timeouts = dataclasses.replace(base, healthy_s=timeout or base.healthy_s, step_s=step_timeout or base.step_s)
        if isinstance(platform, CloudPlatform):
            platform.timeouts = timeouts  # a moved volume's new holder gets the same --timeout
        orch = Orchestrator(platform, w.ledger, SystemClock(), faults=faults, progress=show, timeouts=timeouts)
        if faults.active:
            typer.echo(f"injecting fault: {faults}", err=True)
        interrupt_on_signals()  # `kill` rolls back like Ctrl-C; only SIGKILL cannot
        report = orch.morph(MorphRequest(target_shape if shape else None, target_region if region else None,
                                         strategy))  # type: ignore[arg-type]
    finally:
        w.deliver_events()
        w.close()
    if json_out:
        emit_json(report.to_json())
    else:
        what = f"{report.source['shape']}@{report.source['region']} -> {report.target['shape']}@{report.target['region']}"
        if report.result == "unchanged":
            typer.echo(f"{w.stack}: already on {report.target['shape']} in {report.target['region']}; nothing to do")
        elif report.result == "done":
            took = (report.steps[-1].ended or 0) - report.steps[0].started if report.steps else 0.0
            typer.echo(f"{w.stack}: morphed {what} ({report.strategy}) in {took:.1f}s, paused "
                       f"{report.pause_ms:.0f} ms; versions {', '.join(map(str, report.versions))}")
    if report.result == "rolled_back":
        typer.echo(f"error: morph {report.migration_id} rolled back: {report.reason}", err=True)
        raise typer.Exit(1)
