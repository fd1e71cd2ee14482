"""``sculpt up``: make the fleet in sculpt.yaml real as a new stack version (starts the agent if needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json


def command(
    spec: SpecOpt = DEFAULT_SPEC,
    json_out: JsonOpt = False,
    message: Annotated[str, typer.Option("--message", "-m", help="recorded with the version in history")] = "",
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds instances may take to become "
                                                                    "healthy")] = 30.0,
) -> None:
    """Apply the spec: start, resize or replace instances, then record the new version.

    --json prints {"stack", "version", "result", "changes": {op: count}, "lb": {"address"}, "instances": [...]}.
    """
    import time

    from sculpt.app.status import stack_status
    from sculpt.app.wiring import recover_unfinished, wire

    t0 = time.monotonic()
    w = wire(spec, apply_timeout_s=timeout)
    for line in recover_unfinished(w):
        typer.echo(line, err=True)
    try:
        fleet = w.fleet()
        diff = w.engine.preview(fleet)
        typer.echo(f"{w.stack}: {diff}" if not diff.empty else f"{w.stack}: no changes; re-applying", err=True)
        typer.echo(f"applying {len(fleet.slots)} slot(s) through the {w.engine.name} engine ...", err=True)
        version = w.engine.up(fleet, message)
        status = stack_status(w)
    finally:
        w.close()
    took = time.monotonic() - t0
    lb = (status or {}).get("lb") or {"address": None}
    instances = (status or {}).get("instances", [])
    if json_out:
        emit_json({"stack": w.stack, "version": version, "result": "succeeded", "changes": diff.summary,
                   "seconds": round(took, 3), "lb": lb, "instances": instances})
        return
    healthy = sum(1 for i in instances if i.get("healthy"))
    unknown = sum(1 for i in instances if i.get("healthy") is None)
    health = f"{healthy}/{len(instances)} healthy" + (f" ({unknown} unknown)" if unknown else "")
    typer.echo(f"{w.stack}: version {version} succeeded in {took:.1f}s — {health}, "
               f"serving on http://{lb.get('address')}")
    for note in (status or {}).get("notes", []):
        typer.echo(f"note: {note}", err=True)
