"""``sculpt status``: what runs now — the stack version, the load balancer and each instance.

``--json`` prints ``{"stack", "version", "engine", "provider", "enforcement", "live_resize", "agent_pid",
"lb": {"address"}, "lb_pid", "paused_by": {"pid", "since", "lease_s"} | null, "fleet": {"name", "slots"} | null,
"instances": [{"id", "shape", "region", "colour", "weight", "healthy", "pid", "address", "cpu_limit",
"mem_limit_mb", "enforcement", "restarts", "recommendation", ...}], "notes": [...]}`` (``recommendation``: what
the model the stack's watcher last checkpointed recommends, as the Kubernetes VPA does: ``lower_bound``,
``target`` and ``upper_bound``, each ``{"shape", "cpu_cores", "memory_gib", "usd_per_hour", "p_fit"}`` - the
cheapest allowed shape that fits the forecast at the SLO's max utilisation with probability >= 5 %, 50 %, 95 %
(``sculpt.decide.distribution``) - plus ``current``, ``demand``, ``confidence``, ``levels``, ``distribution``
and a one-line ``why``; ``null`` before `sculpt watch` saved a model,
and then ``"recommendations_note"`` says why, else it is ``null``). ``fleet``: the fleet the local agent last
applied, as it keeps it across its own restarts; with the agent dead, its LB process and instances still
serve and ``status`` reports them through the agent that adopts them; on ``engine: pulumi`` each instance also has
``instance_id``, ``healthy`` is the cloud's health check or ``null`` when it cannot be read, and ``notes``
says why). When nothing runs it prints the same keys with
``"version": null``, ``"lb": null``, ``"instances": []`` (plus ``"last_version"``) and exits 1.
"""

from __future__ import annotations

from typing import Any

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, StackOpt, emit_json, is_tty, open_stack
from sculpt.domain.errors import SculptError


def command(spec: SpecOpt = DEFAULT_SPEC, stack: StackOpt = None, json_out: JsonOpt = False) -> None:
    """Show the running stack: version, load balancer, instances, their limits and recommended shapes."""
    from sculpt.app.status import checkpoint_recommendations, stack_status

    w = open_stack(stack, spec)
    recs: dict[str, dict[str, Any]] = {}
    rec_notes: list[str] = []
    try:
        live = stack_status(w)
        latest = w.ledger.latest_version(w.stack)
        current = w.ledger.latest_version(w.stack, succeeded_only=True)
        if live is not None:
            try:
                recs, rec_notes = checkpoint_recommendations(w, list(live.get("instances", [])))
            except SculptError as e:  # the recommendation is extra: status still reports what runs
                rec_notes = [f"no recommendations: {e.message}"]
    finally:
        w.close()
    assert w.spec is not None
    from sculpt.forecast import capabilities

    forecast = capabilities()  # cheap: never imports torch
    base = {"stack": w.stack, "engine": w.spec.engine, "provider": w.spec.provider,
            "forecast": {"models": forecast["models"], "ensemble": forecast["ensemble"], "notes": forecast["notes"]}}
    if live is None:
        if json_out:
            emit_json({**base, "version": None, "lb": None, "instances": [],
                       "last_version": latest.version if latest else None})
        else:
            typer.echo(f"error: stack '{w.stack}' is not running. To fix: run `sculpt up`.", err=True)
        raise typer.Exit(1)
    out = {**base, "version": current.version if current else None,
           "enforcement": live.get("enforcement"), "live_resize": live.get("live_resize"),
           "agent_pid": live.get("agent_pid"), "lb": live.get("lb"), "lb_pid": live.get("lb_pid"),
           "paused_by": live.get("paused_by"),
           "fleet": live.get("fleet"),
           "instances": [{**i, "recommendation": recs.get(str(i["id"]))} for i in live.get("instances", [])],
           "notes": list(live.get("notes", [])), "recommendations_note": "; ".join(rec_notes) or None}
    pb = out["paused_by"]
    if pb:
        import time

        held = time.time() - float(pb.get("since") or time.time())
        lease = f", lease {pb['lease_s']:g}s" if pb.get("lease_s") is not None else ""
        out["notes"].append(f"the load balancer is paused (holding new requests) by pid {pb.get('pid') or '?'} "
                            f"for {held:.1f}s{lease}")
    if json_out:
        emit_json(out)
        return
    from rich.console import Console
    from rich.table import Table

    lb = (out["lb"] or {}).get("address")
    where = f"http://{lb}" if lb else "no load balancer yet"
    t = Table(title=f"{w.stack} v{out['version'] or '-'} — {where} ({out['enforcement']})", title_justify="left")
    for col in ("id", "shape", "region", "colour", "weight", "healthy", "pid", "address", "cpu", "mem MB",
                "restarts"):
        t.add_column(col, justify="right" if col in ("weight", "pid", "cpu", "mem MB", "restarts") else "left")
    for i in out["instances"]:
        t.add_row(i["id"], i["shape"], i["region"], i["colour"], str(i["weight"]),
                  "?" if i["healthy"] is None else "yes" if i["healthy"] else "NO", str(i["pid"] or "-"),
                  str(i["address"] or "-"),
                  f"{i['cpu_limit']:g}" if i["cpu_limit"] is not None else "-", str(i["mem_limit_mb"]),
                  str(i.get("restarts", 0)))
    console = Console(width=None if is_tty() else 160)
    console.print(t)
    shown = [(i["id"], i["recommendation"]) for i in out["instances"] if i["recommendation"]]
    if shown:
        r = Table(title="recommended shapes (lower bound / target / upper bound)", title_justify="left")
        for col in ("id", "now", "lower", "target", "upper", "why"):
            r.add_column(col, overflow="fold" if col == "why" else "ellipsis")
        for sid, rec in shown:
            r.add_row(sid, str(rec.get("current") or "-"),
                      *(_bound(rec.get(b)) for b in ("lower_bound", "target", "upper_bound")), str(rec["why"]))
        console.print(r)
    elif out["recommendations_note"]:
        typer.echo(out["recommendations_note"])
    for note in out["notes"]:
        typer.echo(note)
    typer.echo(f"forecasting: ensemble {forecast['ensemble']}; models {', '.join(forecast['models'])}")
    for note in forecast["notes"]:
        typer.echo(f"note: {note}")


def _bound(b: dict[str, Any] | None) -> str:
    return f"{b['shape']} ({b['cpu_cores']:g} cores, {b['memory_gib']:g} GiB)" if b else "-"
