"""``sculpt watch``: run the sculptor loop on the fleet — observe, learn, predict, decide, act.

``--mode recommend`` (default) reports what it would do and changes nothing (like the VPA's Off mode);
``--mode auto`` morphs the fleet through the migration orchestrator. ``--once`` runs one tick and prints
it; it exits 3 (after printing) when that tick read no usable metric of any instance (no serving instance,
or the source down, refusing or answering garbage), so a cron job or CI step notices a blind watcher. On a
terminal the view is a live dashboard; otherwise (or with ``--json``) one JSON object per tick
(``{"stack", "mode", "t", "tick", "model", "decision", "reason", "plan": {...}, "instances": [{"slot",
"stream", "shape", "cpu_cores", "mem_gib", "utilisation", "rps", "latency_p95_ms", "forecast": {"cpu_p50",
"cpu_p95"}, "top_shapes": [{"shape", "p"}], "confidence", "decision", "reason"}], "action": null | {"from",
"to", "region", "result", "detail", "migration_id", "seconds"}, "warnings": [...], "tick_ms",
"model_ms"}``). ``--api HOST:PORT`` also serves the HTTP API (see docs/sculptor.md).

Only one watcher per stack: a second one exits with "locked". SIGTERM (and the first Ctrl-C) let the tick
and any morph in flight finish, checkpoint the model, and exit 0.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    once: Annotated[bool, typer.Option("--once", help="run a single tick and exit")] = False,
    mode: Annotated[str, typer.Option("--mode", help="recommend (report only) | auto (morph the fleet)")]
    = "recommend",
    model: Annotated[str, typer.Option("--model", help="last-value | seasonal-naive | river | lstm | ensemble")]
    = "ensemble",
    source: Annotated[str, typer.Option(
        "--source", help="local | prometheus=URL | cloudwatch[=REGION] | gcp-monitoring")] = "local",
    backfill: Annotated[float | None, typer.Option(
        "--backfill", min=0, help="hours of --source history to learn first (default: 24 without a model "
                                  "checkpoint, else 0; the local source keeps no history)")] = None,
    ticks: Annotated[int | None, typer.Option("--ticks", min=1, help="stop after N ticks")] = None,
    tick_s: Annotated[float | None, typer.Option("--tick", min=0.1, help="seconds between ticks "
                                                                         "(default: the spec's tick_s)")] = None,
    api: Annotated[str | None, typer.Option("--api", help="also serve the HTTP API on HOST:PORT")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Watch the fleet and keep it on the right shape (recommend or auto); --once exits 3 when no usable
    metrics were read."""
    import signal
    import sys
    import time

    from sculpt.app.service import open_service
    from sculpt.domain.errors import ConfigError

    if mode not in ("recommend", "auto"):
        raise ConfigError(f"unknown mode '{mode}'", "use --mode recommend or --mode auto")

    def progress(step: object) -> None:
        st = getattr(step, "state", None)
        if getattr(step, "ended", None) is None and st is not None:
            typer.echo(f"  morph step {getattr(st, 'value', st)} ...", err=True)

    old: dict[int, object] = {}
    opened = open_service(spec, mode=mode, model=model, source=source, progress=progress,  # type: ignore[arg-type]
                          backfill_h=backfill)
    svc = opened.service
    server = None
    try:
        for note in opened.notes:
            typer.echo(f"note: {note}", err=True)
        if api:
            from sculpt.app.api import serve_in_thread

            server = serve_in_thread(svc, api, opened.wiring.ledger, opened.wiring.engine)
            typer.echo(f"API on http://{server.address} (OpenAPI at /docs); {server.token_note}", err=True)
        interrupted = [0]

        def on_signal(signum: int, _frame: object) -> None:
            interrupted[0] += 1
            if interrupted[0] > 1 and signum == signal.SIGINT:
                raise KeyboardInterrupt
            typer.echo("stopping after the tick in flight ...", err=True)
            svc.stop()

        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        if once:
            svc.prime()
            time.sleep(min(1.0, tick_s or svc.spec.tick_s))
            report = svc.tick()
            if json_out or not sys.stdout.isatty():
                from sculpt.app.view import json_line

                typer.echo(json_line(report))
            else:
                from sculpt.app.view import story_line

                typer.echo(str(report.plan))
                typer.echo(story_line(report))
            if not report.instances:
                from sculpt.cli.plan import no_metrics_exit

                no_metrics_exit(list(report.warnings), source)
            return
        svc.prime()
        if json_out or not sys.stdout.isatty():
            from sculpt.app.view import JsonLines

            view: object = JsonLines(sys.stdout)
        else:
            from sculpt.app.view import Dashboard

            view = Dashboard(svc, opened.notes, tick_s=tick_s)
        with view:  # type: ignore[attr-defined]
            n = svc.run(ticks=ticks, on_tick=view.update, tick_s=tick_s)  # type: ignore[attr-defined]
        typer.echo(f"{svc.spec.fleet}: stopped after {n} tick(s); model checkpointed", err=True)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if server is not None:
            server.stop()
        opened.close()
