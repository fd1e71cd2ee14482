"""``sculpt replay``: run recorded traces through static, the baselines, sculpt and oracle side by side;
``--suite`` replays each data set separately, ``--curves`` adds the cost–risk sweep (``sculpt.replay.suite``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sculpt.cli._common import JsonOpt, emit_json, warn

POLICIES = ("static", "reactive", "percentile", "autopilot", "sculpt", "oracle")
DEFAULT_POLICIES = ("static", "reactive", "sculpt", "oracle")
BASELINES = ("reactive", "percentile", "autopilot")


def command(
    traces: Annotated[list[Path], typer.Argument(
        help="trace files or directories (Bitbrains, NAB, generic CSV); with --suite, one data set each")],
    catalog: Annotated[str, typer.Option(help="catalog whose prices the simulated cloud charges")] = "aws",
    region: Annotated[str, typer.Option(help="region of the catalog to price in")] = "us-east-1",
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", help="policies to run (repeatable): static, reactive, percentile, autopilot, sculpt, oracle; "
                         "default static, reactive, sculpt, oracle (--suite: all)")] = None,
    margin: Annotated[list[str] | None, typer.Option(
        "--margin", help="a baseline's safety margin, NAME=VALUE (repeatable; e.g. percentile=0.1): "
                         "the need x (1 + VALUE)")] = None,
    suite: Annotated[bool, typer.Option(
        "--suite", help="replay each TRACES directory as a separate data set, every policy, a table per set")] = False,
    curves: Annotated[bool, typer.Option(
        "--curves", "--sweep", help="with --suite: sweep aggressiveness and margins, report cost at equal risk")]
        = False,
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
    report: Annotated[Path | None, typer.Option(
        help="write an HTML report with plots here (--suite: a directory, one SET.html per set)")] = None,
    prior: Annotated[Path | None, typer.Option(
        help="cold-start prior from `sculpt train` for young streams (river and ensemble models)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Replay traces on the simulated cloud and compare cost, under-provisioning, OOMs and migrations."""
    from sculpt.catalog import load_catalog
    from sculpt.decide.cost import CostModel
    from sculpt.domain.errors import ConfigError
    from sculpt.replay.harness import ReplayConfig, run_replay
    from sculpt.replay.readers import expand, load_traces

    chosen = tuple(policy) if policy else (POLICIES if suite else DEFAULT_POLICIES)
    bad = [p for p in chosen if p not in POLICIES]
    if bad:
        raise ConfigError(f"unknown policy '{bad[0]}'", f"use some of: {', '.join(POLICIES)}")
    if curves and not suite:
        raise ConfigError("--curves sweeps a suite", "add --suite (each TRACES directory is one data set)")
    margins = _margins(margin or [])
    cat = load_catalog(catalog)
    ref_vcpu = cat.shape(reference_shape).vcpu
    fams = tuple(f.strip() for f in families.split(",") if f.strip())
    config = ReplayConfig(region=region, families=fams, policies=chosen, migration_s=migration_s,
                          capacity_error_rate=capacity_errors, seed=seed, model=model, margins=margins,
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
    if suite:
        _run_suite(list(traces), cat, config, chosen=tuple(policy) if policy else None, curves=curves,
                   ref_vcpu=ref_vcpu, factory=factory, report=report, json_out=json_out)
        return
    files = expand(list(traces))
    progress = _Bar(len(files))
    try:
        got = load_traces(list(traces), reference_shape_vcpu=ref_vcpu, on_file=progress.update_read)
    except BaseException:
        progress.close()
        raise
    loaded = got.traces
    for w in got.warnings:
        progress.warn(w)
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


def _margins(items: list[str]) -> dict[str, float]:
    """``--margin NAME=VALUE`` pairs; a one-line error for anything else."""
    from sculpt.domain.errors import ConfigError

    out: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if name.strip() not in BASELINES or not -1.0 < v < 10.0:
            raise ConfigError(f"--margin '{item}' is not NAME=VALUE with NAME one of {', '.join(BASELINES)}",
                              "write e.g. --margin percentile=0.1 (a value above -1)")
        out[name.strip()] = v
    return out


def _run_suite(sets: list[Path], cat: Any, config: Any, *, chosen: tuple[str, ...] | None, curves: bool,
               ref_vcpu: float, factory: Any, report: Path | None, json_out: bool) -> None:
    """``--suite``: each set replayed on its own; a table per set (or one JSON document)."""
    from dataclasses import replace

    from sculpt.replay.suite import run_suite, suite_config

    cfg = suite_config(config, curves)
    if chosen is not None:
        cfg = replace(cfg, policies=chosen)
    bar = _Bar(None)
    try:
        results = run_suite(sets, cat, cfg, reference_shape_vcpu=ref_vcpu, predictor_factory=factory,
                            say=bar.say, warn=bar.warn, progress=bar.update_steps)
    finally:
        bar.close()
    if report is not None:
        from sculpt.decide.decision import family_mask
        from sculpt.replay.report import write_report
        from sculpt.replay.suite import report_curves

        for s in results:
            lines, labels = report_curves(s)
            write_report(s.result, report / f"{s.name}.html", allowed=family_mask(s.result.arrays, cfg.families),
                         curves=lines or None, labels=labels or None, equal_risk=s.equal_risk() or None)
    if json_out:
        emit_json({"sets": [s.to_json() for s in results],
                   "config": {"region": cfg.region, "families": list(cfg.families), "model": cfg.model,
                              "migration_s": cfg.migration_s, "aggressiveness": cfg.cost.aggressiveness,
                              "margins": {b: cfg.margin(b) for b in BASELINES},
                              "sweep": {"aggressiveness": list(cfg.sweep_aggressiveness),
                                        "margins": {b: list(v) for b, v in cfg.sweep_margins.items()}}
                              if curves else None}})
        return
    from sculpt.cli.replay_suite import print_suite

    print_suite(results)
    if report is not None:
        typer.echo(f"reports: {', '.join(str(report / f'{s.name}.html') for s in results)}")


class _Bar:
    """A progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, files: int | None) -> None:
        import sys

        self.enabled = sys.stderr.isatty()
        self._p = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                               TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._p.start()
            self._read = self._p.add_task("reading traces", total=files, visible=files is not None)
            self._steps = self._p.add_task("replaying", total=None)

    def say(self, line: str) -> None:
        """A line of progress on stderr (above the bar when there is one: long runs say what they do)."""
        if self._p is not None:
            self._p.console.print(f"suite: {line}", highlight=False, markup=False)
        else:
            typer.echo(f"suite: {line}", err=True)

    def warn(self, line: str) -> None:
        if self._p is not None:
            self._p.console.print(f"warning: {line}", highlight=False, markup=False)
        else:
            warn(line)

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
