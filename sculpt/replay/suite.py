"""``sculpt replay --suite``: each data set replayed on its own, every policy side by side, and — with
``--curves`` — who wins *at equal risk*.

A decision tuned on one fleet must be judged on others, one at a time: pooling them would let the largest
set speak for all. ``run_suite`` reads each directory as one set (NAB folders: only the series named
``*cpu*``, NAB's CPU-utilisation ones; the rest record bytes and counts), replays it under every policy
(``static``, ``reactive``, ``percentile``, ``autopilot``, ``sculpt``, ``oracle``) and scores per policy:

- ``x_oracle``: total cost / the oracle's (the hindsight lower bound at zero risk);
- ``underprovisioned_fraction``, ``oom_events`` (``sculpt.replay.metrics``);
- ``moves_per_vm_day``: completed migrations per day of replayed VM time;
- ``captured``: ``(static − policy) / (static − oracle)`` in total $, the share of the hindsight saving
  reached (``None`` when the oracle saves nothing).

With ``sweep`` each set also runs sculpt at every ``AGGRESSIVENESS`` and each baseline at every
``MARGINS`` (one replay: the forecast and the baselines' statistics are shared, ``sculpt.replay.fanout``),
draws each policy's cost–risk frontier (``sculpt.replay.curves``; risk = under-provisioned fraction, cost
= × oracle) and reads sculpt's cost at the risk of each baseline's default point, with the ratio to the
cheapest baseline frontier at that risk (< 1: sculpt is cheaper at equal risk).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.domain.catalog import Catalog
from sculpt.replay.baselines import BASELINES
from sculpt.replay.curves import cost_at, frontier
from sculpt.replay.harness import POLICIES, Progress, ReplayConfig, ReplayResult, run_replay
from sculpt.replay.metrics import Score
from sculpt.replay.readers import DEFAULT_REFERENCE_VCPU, Loaded, load_traces, sniff_layout
from sculpt.replay.report_headline import MONTH_H

AGGRESSIVENESS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MARGINS: tuple[float, ...] = (-0.2, -0.1, 0.0, 0.15, 0.3, 0.5)  # × (1 + margin): negative ones run riskier
Say = Callable[[str], None]


@dataclass(frozen=True)
class SetResult:
    """One data set of a suite: its replay, what reading it repaired or skipped, and its figures."""

    name: str
    path: str
    result: ReplayResult
    warnings: list[str]
    skipped: list[str]

    @property
    def vm_days(self) -> float:
        return self.result.trace_hours / 24.0

    def row(self, score: Score) -> dict[str, float | int | None]:
        """The suite's figures of one run (a policy or a sweep variant) on this set."""
        sc = self.result.scores
        cost = float(score.cost_usd.sum())
        oracle = float(sc["oracle"].cost_usd.sum()) if "oracle" in sc else None
        static = float(sc["static"].cost_usd.sum()) if "static" in sc else None
        room = static - oracle if static is not None and oracle is not None else None
        t = score.total()
        return {
            "cost_usd": round(cost, 2),
            "x_oracle": round(cost / oracle, 4) if oracle else None,
            "underprovisioned_fraction": t["underprovisioned_fraction"],
            "oom_events": t["oom_events"],
            "migrations": t["migrations"],
            "moves_per_vm_day": round(int(t["migrations"]) / max(self.vm_days, 1e-9), 4),
            "captured": round((float(static or 0.0) - cost) / room, 4) if room is not None and room > 1e-9 else None,
        }

    def monthly(self, score: Score) -> float:
        """$/month as the report's headline counts it (cost per replayed hour × 730, summed over traces)."""
        hours = np.array([max(t.hours, 1e-9) for t in self.result.traces])
        return float((score.cost_usd / hours * MONTH_H).sum())

    def policies(self) -> dict[str, dict[str, float | int | None]]:
        return {p: self.row(s) for p, s in self.result.scores.items()}

    def curves(self) -> dict[str, list[dict[str, Any]]]:
        """Per swept policy, its points by parameter (the default one flagged)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for v in self.result.sweep:
            out.setdefault(v.policy, []).append({"param": v.param, "default": v.default, **self.row(v.score)})
        return out

    def equal_risk(self) -> dict[str, dict[str, Any]]:
        """Per baseline: its default point's risk and cost, sculpt's cost there, the best baseline there."""
        pts = self.curves()
        if "sculpt" not in pts:
            return {}
        fronts = {p: frontier((float(q["underprovisioned_fraction"]), float(q["x_oracle"])) for q in v
                              if q["x_oracle"] is not None) for p, v in pts.items()}
        out: dict[str, dict[str, Any]] = {}
        for b in BASELINES:
            d = next((q for q in pts.get(b, []) if q["default"]), None)
            if d is None or d["x_oracle"] is None:
                continue
            risk = float(d["underprovisioned_fraction"])
            mine = cost_at(fronts["sculpt"], risk)
            there = {q: c for q in BASELINES if q in fronts and (c := cost_at(fronts[q], risk)) is not None}
            best = min(there, key=lambda q: there[q]) if there else None
            out[b] = {"risk": risk, "x_oracle": d["x_oracle"], "oom_events": d["oom_events"],
                      "sculpt_x_oracle": None if mine is None else round(mine, 4),
                      "best_baseline": best, "best_x_oracle": None if best is None else round(there[best], 4),
                      "ratio_to_best": None if mine is None or best is None else round(mine / there[best], 4)}
        return out

    def to_json(self) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {"name": self.name, "path": self.path, "traces": len(r.traces),
                               "trace_hours": round(r.trace_hours, 2), "vm_days": round(self.vm_days, 2),
                               "elapsed_s": round(r.elapsed_s, 2), "model": r.model, "warnings": self.warnings,
                               "skipped": self.skipped, "policies": self.policies()}
        if r.sweep:
            out["curves"] = self.curves()
            out["frontier"] = {p: frontier((q["underprovisioned_fraction"], q["x_oracle"]) for q in v
                                           if q["x_oracle"] is not None) for p, v in out["curves"].items()}
            out["equal_risk"] = self.equal_risk()
        return out


def nab_cpu_only(path: Path) -> str | None:
    """A suite's filter: NAB files record their metric only in their name; keep the CPU-utilisation ones."""
    if sniff_layout(path) == "nab" and "cpu" not in path.name.lower():
        return "a NAB series not named *cpu* (a suite replays NAB's CPU-utilisation series only)"
    return None


def suite_config(base: ReplayConfig, sweep: bool) -> ReplayConfig:
    """Every policy; with ``sweep``, every aggressiveness and margin of the curves."""
    return replace(base, policies=POLICIES, sweep_aggressiveness=AGGRESSIVENESS if sweep else (),
                   sweep_margins={b: MARGINS for b in BASELINES} if sweep else {})


def run_suite(
    sets: Sequence[str | Path],
    catalog: Catalog,
    config: ReplayConfig,
    *,
    reference_shape_vcpu: float = DEFAULT_REFERENCE_VCPU,
    predictor_factory: Callable[[], Any] | None = None,
    say: Say | None = None,
    warn: Say | None = None,
    progress: Progress | None = None,
) -> list[SetResult]:
    """Replay each directory (or file) of ``sets`` separately under ``config`` (see ``suite_config``).
    ``say`` gets a line per set started and finished (stderr in the CLI), ``warn`` each file repaired or
    skipped as the set is read (also kept in ``SetResult.warnings``), ``progress`` the steps of each."""
    out: list[SetResult] = []
    for i, raw in enumerate(sets, 1):
        path = Path(raw)
        name = path.name.removesuffix(".gz").removesuffix(".csv")
        loaded: Loaded = load_traces([path], reference_shape_vcpu=reference_shape_vcpu, exclude=nab_cpu_only)
        if warn is not None:
            for line in loaded.warnings:
                warn(line)
        if say is not None:
            say(f"[{i}/{len(sets)}] {name}: {len(loaded.traces)} traces"
                + (f" ({len(loaded.skipped)} skipped)" if loaded.skipped else "") + ", replaying")
        started = time.perf_counter()
        r = run_replay(loaded.traces, catalog, config, predictor_factory=predictor_factory, progress=progress)
        if say is not None:
            say(f"[{i}/{len(sets)}] {name}: done in {time.perf_counter() - started:.1f} s")
        out.append(SetResult(name=name, path=str(path), result=r, warnings=loaded.warnings, skipped=loaded.skipped))
    return out


def report_curves(s: SetResult) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[str]]]:
    """The report's cost–risk polylines of a set: per swept policy, (under-provisioned, $/month) by
    parameter, and each point's label (``a=0.2``, ``m=+15%``)."""
    lines: dict[str, list[tuple[float, float]]] = {}
    labels: dict[str, list[str]] = {}
    for v in s.result.sweep:
        t = v.score.total()
        lines.setdefault(v.policy, []).append((float(t["underprovisioned_fraction"]), s.monthly(v.score)))
        labels.setdefault(v.policy, []).append(f"a={v.param:g}" if v.policy == "sculpt" else f"m={v.param:+.0%}")
    return lines, labels
