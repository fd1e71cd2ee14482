"""``sculpt replay``: run recorded traces through static, reactive, sculpt and oracle policies side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sculpt.cli._common import JsonOpt, emit_json

POLICIES = ("static", "reactive", "sculpt", "oracle")


def command(
    traces: Annotated[list[Path], typer.Argument(help="trace files or directories (Bitbrains, NAB, generic CSV)")],
    catalog: Annotated[str, typer.Option(help="catalog whose prices the simulated cloud charges")] = "aws",
    region: Annotated[str, typer.Option(help="region of the catalog to price in")] = "us-east-1",
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", help="policies to run (repeatable): static, reactive, sculpt, oracle; default all")] = None,
    families: Annotated[str, typer.Option(help="comma-separated shape families allowed")] =
        "m5,c5,r5,m6i,c6i,r6i,m7i,c7i,r7i",
    model: Annotated[str, typer.Option(help="forecast model of the sculpt policy (river: see docs/replay.md)")]
        = "river",
    reference_shape: Annotated[str, typer.Option(
        help="shape NAB traces' CPU % refers to (NAB does not record it)")] = "m5.large",
    migration_s: Annotated[float, typer.Option(help="seconds a move boots before it serves (both shapes billed)")]
        = 600.0,
    aggressiveness: Annotated[float, typer.Option(min=0.0, max=1.0, help="0: move only to avoid breaches; 1: chase savings")]
        = 0.5,
    capacity_errors: Annotated[float, typer.Option(min=0.0, max=1.0, help="chance a resize fails (simulated)")] = 0.0,
    seed: Annotated[int, typer.Option(help="seed of models and simulated errors")] = 0,
    per_trace: Annotated[bool, typer.Option("--per-trace", help="with --json: add per-trace metrics")] = False,
    report: Annotated[Path | None, typer.Option(help="write an HTML report with plots here")] = None,
    prior: Annotated[Path | None, typer.Option(
        help="cold-start prior from `sculpt train` for young streams (river and ensemble models)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Replay traces on the simulated cloud and compare cost, under-provisioning, OOMs and migrations."""
    from sculpt.catalog import load_catalog
    from sculpt.decide.cost import CostModel
    from sculpt.domain.errors import ConfigError
    from sculpt.replay.harness import ReplayConfig, run_replay
    from sculpt.replay.readers import expand, read_trace

    chosen = tuple(policy) if policy else POLICIES
    bad = [p for p in chosen if p not in POLICIES]
    if bad:
        raise ConfigError(f"unknown policy '{bad[0]}'", f"use some of: {', '.join(POLICIES)}")
    cat = load_catalog(catalog)
    ref_vcpu = cat.shape(reference_shape).vcpu
    fams = tuple(f.strip() for f in families.split(",") if f.strip())
    files = expand(list(traces))
    progress = _Bar(len(files))
    loaded = []
    for f in files:
        loaded.append(read_trace(f, reference_shape_vcpu=ref_vcpu))
        progress.update_read()
    config = ReplayConfig(region=region, families=fams, policies=chosen, migration_s=migration_s,
                          capacity_error_rate=capacity_errors, seed=seed, model=model,
                          cost=CostModel(aggressiveness=aggressiveness, overlap_s=migration_s))
    factory = None
    if prior is not None:
        from sculpt.forecast import make_predictor
        from sculpt.forecast.prior import PRIOR_MODELS, load_prior

        if model not in PRIOR_MODELS:
            raise ConfigError(f"--prior needs a model that blends one in, not '{model}'",
                              f"use --model {' or --model '.join(PRIOR_MODELS)}")
        fitted = load_prior(prior)  # a missing or unreadable file is a one-line error before any replay

        def factory() -> Any:
            return make_predictor(model, seed=seed, horizon_s=config.cost.horizon_h * 3600.0, prior=fitted)
    try:
        result = run_replay(loaded, cat, config, progress=progress.update_steps, predictor_factory=factory)
    finally:
        progress.close()
    from sculpt.decide.decision import family_mask
    from sculpt.replay.report_headline import headline

    allowed = family_mask(result.arrays, fams)
    if report is not None:
        from sculpt.replay.report import write_report

        write_report(result, report, allowed=allowed)
    data = result.to_json(per_trace=per_trace)
    data["headline"] = headline(result, allowed)
    if json_out:
        emit_json(data)
        return
    _print_table(result, data)
    if report is not None:
        typer.echo(f"report: {report}")


class _Bar:
    """A progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, files: int) -> None:
        import sys

        self.enabled = sys.stderr.isatty()
        self._p = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                               TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._p.start()
            self._read = self._p.add_task("reading traces", total=files)
            self._steps = self._p.add_task("replaying", total=None)

    def update_read(self) -> None:
        if self._p is not None:
            self._p.advance(self._read)

    def update_steps(self, done: int, total: int) -> None:
        if self._p is not None:
            self._p.update(self._steps, completed=done, total=total)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _print_table(result: object, data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from sculpt.replay.harness import ReplayResult

    assert isinstance(result, ReplayResult)
    pol = data["policies"]
    hl = data["headline"]
    base = pol.get("oracle", {}).get("cost_usd") or None
    t = Table(title=f"replay of {data['traces']} trace(s), {data['trace_hours']:,} h, recorded "
                    f"{hl['date_range']['first']} to {hl['date_range']['last']} ({result.elapsed_s:.1f} s)")
    for col in ("policy", "cost $", "$/month", "x oracle", "under-provisioned", "OOM events", "migrations"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, m in pol.items():
        ratio = f"{m['cost_usd'] / base:.2f}" if base else "-"
        t.add_row(name, f"{m['cost_usd']:,.2f}", f"{hl['monthly_usd'][name]:,.2f}", ratio,
                  f"{m['underprovisioned_fraction']:.3%}", str(m["oom_events"]), str(m["migrations"]))
    Console().print(t)
    for line in headline_lines(hl):
        typer.echo(line)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)


def headline_lines(hl: dict[str, Any]) -> list[str]:
    """The headline in words: sculpt's saving against static and reactive, the oracle's share, the losses."""
    out: list[str] = []
    sv, lo = hl["saving_vs"], hl["losses"]
    if "sculpt" not in hl["monthly_usd"]:
        return out
    parts = []
    for b in ("static", "reactive"):
        if b in sv:
            s = sv[b]["sculpt"]
            verb = "saves" if s["usd_month"] >= 0 else "costs"
            more = "" if s["usd_month"] >= 0 else " more"
            pct = f" ({abs(s['pct']):.1f} %)" if s["pct"] is not None else ""
            parts.append(f"{verb} ${abs(s['usd_month']):,.2f}/month{more}{pct} vs {b}")
    cap = hl["captured_vs_oracle"].get("sculpt")
    if cap is not None:
        parts.append(f"captures {100 * cap:.1f} % of the oracle's saving")
    if parts:
        out.append(f"sculpt {', '.join(parts)} (a month = {hl['month_h']:g} h)")
    n = hl["traces"]
    flags = [f"costs more than {b} on {len(lo[f'costlier_than_{b}'])} of {n} traces"
             for b in ("static", "reactive") if f"costlier_than_{b}" in lo]
    if "oom_where_static_had_none" in lo:
        flags.append(f"has {lo['oom_events_where_static_had_none']} OOM events on "
                     f"{len(lo['oom_where_static_had_none'])} traces where static had none")
    if flags:
        out.append("losses: sculpt " + "; ".join(flags))
    if hl["floor"]["traces"]:
        out.append(f"{len(hl['floor']['traces'])} of {n} traces sit on the smallest allowed shape "
                   f"({', '.join(hl['floor']['shapes'])}) under every policy: nothing to save there")
    return out
