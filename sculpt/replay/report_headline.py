"""The replay's headline in numbers: what a month costs under each policy, what sculpt saves, where it loses.

One function, ``headline``, shared by ``sculpt replay --json``, ``sculpt bench replay`` and the HTML report
(which prints exactly these values, so the page and the JSON cannot disagree).

- ``month_h``: a month is 730 h (8760 / 12). ``monthly_usd[p]`` = Σ over traces of (the trace's cost /
  its replayed hours) × 730: the fleet's monthly bill were every VM to run all month as it did in the trace.
- ``saving_vs[base][p]``: ``monthly_usd[base] − monthly_usd[p]`` in $/month and as % of the base
  (negative: ``p`` costs more).
- ``captured_vs_oracle[p]``: ``(static − p) / (static − oracle)``, the share of the hindsight saving ``p``
  reaches (1 = all of it; undefined when the oracle saves nothing).
- ``losses``: traces where sculpt costs more than static / than reactive, and traces with OOM events under
  sculpt where static had none. ``floor``: traces where every policy sits on the smallest allowed shape
  throughout (nothing to save there: sculpt's saving comes from the others).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from sculpt.replay.harness import ReplayResult

MONTH_H = 730.0
SUBJECT = "sculpt"  # the policy the losses are counted for


def date_of(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def trace_hours(r: ReplayResult) -> np.ndarray:
    return np.array([max(t.hours, 1e-9) for t in r.traces], dtype=np.float64)


def monthly_per_trace(r: ReplayResult) -> dict[str, np.ndarray]:
    """$/month of each trace under each policy (cost per replayed hour × 730)."""
    h = trace_hours(r)
    return {p: s.cost_usd / h * MONTH_H for p, s in r.scores.items()}


def floor_mask(r: ReplayResult, allowed: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """(traces where every policy only ever serves a smallest allowed shape, those shapes' indices).

    "Smallest" is the cheapest price among ``allowed`` (all the region's shapes when not given)."""
    ok = np.ones(len(r.arrays), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    floor = ok & (r.arrays.price <= float(r.arrays.price[ok].min()) + 1e-12)
    at_floor = np.ones(len(r.traces), dtype=bool)
    for s in r.shapes.values():
        on = floor[np.maximum(s, 0)] | ~r.valid
        at_floor &= on.all(axis=0)
    return at_floor, [int(i) for i in np.flatnonzero(floor)]


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def headline(r: ReplayResult, allowed: np.ndarray | None = None) -> dict[str, Any]:
    """The headline figures (see the module docstring); ``allowed``: the shapes the policies chose among."""
    pols = list(r.scores)
    monthly_t = monthly_per_trace(r)
    monthly = {p: round(float(v.sum()), 2) for p, v in monthly_t.items()}
    saving: dict[str, dict[str, dict[str, float | None]]] = {}
    for base in ("static", "reactive"):
        if base in monthly:
            saving[base] = {p: {"usd_month": round(monthly[base] - monthly[p], 2),
                                "pct": _pct(monthly[base] - monthly[p], monthly[base])}
                            for p in pols if p != base}
    captured: dict[str, float | None] = {}
    if "static" in monthly and "oracle" in monthly:
        room = monthly["static"] - monthly["oracle"]
        for p in pols:
            if p not in ("static", "oracle"):
                captured[p] = round((monthly["static"] - monthly[p]) / room, 4) if room > 1e-9 else None
    risk = {p: {k: v for k, v in s.total().items() if k != "cost_usd"} for p, s in r.scores.items()}
    names = [t.name for t in r.traces]
    losses: dict[str, Any] = {"policy": SUBJECT if SUBJECT in r.scores else None}
    if SUBJECT in r.scores:
        me = r.scores[SUBJECT]
        for base in ("static", "reactive"):
            if base in r.scores:
                worse = np.flatnonzero(me.cost_usd > r.scores[base].cost_usd + 1e-9)
                losses[f"costlier_than_{base}"] = [names[i] for i in worse]
                losses[f"extra_usd_month_vs_{base}"] = round(float(
                    (monthly_t[SUBJECT][worse] - monthly_t[base][worse]).sum()), 2)
        if "static" in r.scores:
            oom = np.flatnonzero((me.oom_events > 0) & (r.scores["static"].oom_events == 0))
            losses["oom_where_static_had_none"] = [names[i] for i in oom]
            losses["oom_events_where_static_had_none"] = int(me.oom_events[oom].sum())
    at_floor, floor_shapes = floor_mask(r, allowed)
    first = min(float(t.t[0]) for t in r.traces)
    last = max(float(t.t[-1]) for t in r.traces)
    return {
        "month_h": MONTH_H,
        "traces": len(r.traces),
        "date_range": {"first": date_of(first), "last": date_of(last)},
        "monthly_usd": monthly,
        "saving_vs": saving,
        "captured_vs_oracle": captured,
        "risk": risk,
        "losses": losses,
        "floor": {"shapes": [str(r.arrays.names[i]) for i in floor_shapes],
                  "traces": [names[i] for i in np.flatnonzero(at_floor)]},
    }
