"""What runs now, for ``sculpt status`` and ``sculpt up``, whatever the engine.

Why it exists: the local engine asks its agent (processes, limits, the load balancer's address); a Pulumi
stack has no agent, so its view is assembled from three places — the ledger's current fleet (shapes,
colours, weights), the stack outputs (the load balancer's URL, each slot's cloud instance id and private
address; on GCP the managed instance group's instance names instead) and the cloud's own health checks through the morph platform (the ALB's target health on AWS). Both
produce the same keys, so the verbs print one table and one ``--json`` shape.

It also says what each instance should run, as the Kubernetes VPA does (``recommend``): the
``lower_bound`` / ``target`` / ``upper_bound`` shapes are the cheapest that fit the forecast with probability
5 % / 50 % / 95 %, read from the one shape distribution (``sculpt.decide.distribution``, the Plan's), from the
live loop (``service_recommendations``, the API) or from the model the stack's watcher last checkpointed in
the ledger (``checkpoint_recommendations``, ``sculpt status``: another process).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sculpt.decide.distribution import (
    Fit,
    FitColumns,
    cheapest_distribution,
    cheapest_fitting,
    fit_probabilities,
    upper,
)
from sculpt.domain.catalog import CatalogArrays
from sculpt.domain.errors import SculptError

log = logging.getLogger("sculpt.status")


def stack_status(w: Any) -> dict[str, Any] | None:
    """The running stack of wiring ``w`` (see ``sculpt.app.wiring.Wiring``), or ``None`` when nothing runs."""
    view: dict[str, Any] | None = w.engine.status()
    if view is None or w.engine.reports_health:
        return view
    health, names, notes = _cloud_health(w)
    for row in view["instances"]:
        row["healthy"] = health.get(row["id"])
        row["instance_id"] = row["instance_id"] or names.get(row["id"])
    view["notes"] = notes
    return view


def _cloud_health(w: Any) -> tuple[dict[str, bool], dict[str, str], list[str]]:
    """Slot id -> healthy from the cloud's health checks, slot id -> instance name where the stack outputs
    do not name instances (GCP's managed instance groups), and notes; empty (with the reason) when the
    cloud cannot be read."""
    if w.spec is None:
        return {}, {}, []
    from sculpt.app.cloud import CloudWiring
    from sculpt.migrate.gcp import GcpPlatform

    try:
        platform = CloudWiring.of(w.engine, w.catalog, w.spec, mode="recommend").platform
        if platform is None:
            return {}, {}, [f"health is not read on provider '{w.spec.provider}'"]
        if isinstance(platform, GcpPlatform):  # one listing gives both the health and the instance names
            hits = platform.matched(platform.current()[1])
            return {sid: m.healthy for sid, (_, m) in hits.items()}, {sid: m.name for sid, (_, m) in hits.items()}, []
        return {sid: inst.healthy for sid, inst in platform.instances().items()}, {}, []
    except SculptError as e:
        log.debug("health unknown: %s", e)
        return {}, {}, [f"health unknown: {e}"]


# -- recommendations (what the Kubernetes VPA calls lowerBound / target / upperBound) ---------------------------
BOUNDS = ("lower_bound", "target", "upper_bound")
LEVELS = (0.05, 0.5, 0.95)  # the fit probability each bound needs


def _f(x: float, n: int = 4) -> float | None:
    return round(x, n) if math.isfinite(x) else None


def recommend(arrays: CatalogArrays, allowed: np.ndarray | None, cap: float, forecast: FitColumns,
              current: Sequence[str | None], *, confidence: np.ndarray | None = None,
              notes: Sequence[str | None] | None = None, source: str = "the forecast") -> list[dict[str, Any]]:
    """The recommended shapes for each stream (row) of ``forecast``, from the one shape distribution
    (``sculpt.decide.distribution``): ``lower_bound`` / ``target`` / ``upper_bound`` are the cheapest allowed
    shapes of ``arrays`` that fit the forecast within ``cap`` (the SLO's max utilisation) with probability
    at least 5 % / 50 % / 95 %, each with its cores, memory, price and ``p_fit``; ``distribution`` is
    P(shape is the cheapest that fits), as in the Plan; ``why`` says so in one line. Shapes without a
    price are never recommended. Without a finite CPU p50 and p95 the bounds are ``None``."""
    priced = np.isfinite(arrays.price) & (np.ones(len(arrays), dtype=bool) if allowed is None
                                          else np.asarray(allowed, dtype=bool))
    fit = fit_probabilities(arrays, forecast, cap)
    picks = [cheapest_fitting(fit, priced, level) for level in LEVELS]
    c50, c95 = np.asarray(forecast.cpu_p50, np.float64), upper(forecast.cpu_p95, forecast.cpu_hi)
    m50, m95 = np.asarray(forecast.mem_p50, np.float64), upper(forecast.mem_p95, forecast.mem_hi)
    out = []
    for k in range(fit.shape[0]):
        conf = float(confidence[k]) if confidence is not None else math.nan
        rec: dict[str, Any] = {b: None for b in BOUNDS}
        rec.update({"current": current[k], "utilisation_cap": cap, "confidence": _f(conf),
                    "levels": dict(zip(BOUNDS, LEVELS, strict=True)),
                    "demand": {"cpu_cores": {"p50": _f(float(c50[k])), "p95": _f(float(c95[k]))},
                               "memory_gib": {"p50": _f(float(m50[k])), "p95": _f(float(m95[k]))}},
                    "distribution": {}})
        out.append(rec)
        if not priced.any():
            rec["why"] = "no allowed shape has a price in this region (check `families` and `sculpt catalog`)"
            continue
        if not (math.isfinite(float(c50[k])) and math.isfinite(float(c95[k]))):  # the decision holds on it too
            rec["why"] = f"no forecast yet from {source}: `sculpt watch` learns the fleet's demand first"
            continue
        for bound, (idx, _) in zip(BOUNDS, picks, strict=True):
            j = int(idx[k])
            rec[bound] = {"shape": str(arrays.names[j]), "cpu_cores": float(arrays.vcpu[j]),
                          "memory_gib": float(arrays.memory_gib[j]), "usd_per_hour": _f(float(arrays.price[j]), 6),
                          "p_fit": _f(float(fit[k, j]))}
        rec["distribution"] = cheapest_distribution(arrays, fit[k], priced)
        rec["why"] = _why(rec, [bool(found[k]) for _, found in picks], source, conf,
                          notes[k] if notes is not None else None)
    return out


def _why(rec: dict[str, Any], found: list[bool], source: str, confidence: float, note: str | None) -> str:
    d, cap = rec["demand"], rec["utilisation_cap"]
    tgt, lo, hi = rec["target"], rec["lower_bound"], rec["upper_bound"]
    mem = ("memory unread" if d["memory_gib"]["p50"] is None
           else f"{d['memory_gib']['p50']:.2f}-{d['memory_gib']['p95'] or 0:.2f} GiB")
    why = (f"target {tgt['shape']} is the cheapest allowed shape that holds the forecast (p50-p95 "
           f"{d['cpu_cores']['p50']:.2f}-{d['cpu_cores']['p95'] or 0:.2f} cores, {mem}) at <= {cap:.0%} use "
           f"with probability {tgt['p_fit']:.0%}; {lo['shape']} .. {hi['shape']} fit with >= 5% .. >= 95% "
           f"({source}")
    why += f", confidence {confidence:.0%})" if math.isfinite(confidence) else ")"
    missing = [f"{level:.0%}" for level, ok in zip(LEVELS, found, strict=True) if not ok]
    if missing:
        why += f"; no allowed shape fits with >= {missing[0]}, so the likeliest to fit is named"
    if rec["current"] is not None and rec["current"] != tgt["shape"]:
        why += f"; runs {rec['current']} now" + (f" ({note})" if note else "")
    return why


def allowed_of(spec: Any, arrays: CatalogArrays) -> np.ndarray:
    from sculpt.decide.decision import family_mask

    return family_mask(arrays, spec.families)


def service_recommendations(svc: Any) -> dict[str, dict[str, Any]]:
    """Slot id -> recommendation for the instances of a running ``SculptorService``'s last tick, from the
    forecast the decision sees (``forecast_now``: the model's, floored by the latest readings)."""
    last = svc.last
    if last is None or not last.instances:
        return {}
    with svc.lock:
        slots = [i.slot for i in last.instances if i.slot in svc.port.row_of]
        if not slots:
            return {}
        rows = np.array([svc.port.row_of[s] for s in slots], dtype=np.int64)
        _, floored = svc.forecast_now(rows)
        arrays = svc.port.arrays
        allowed = allowed_of(svc.spec, arrays)
        cap = float(svc.cost.utilisation_cap)
    by_slot = {i.slot: i for i in last.instances}
    insts = [by_slot[s] for s in slots]
    recs = recommend(arrays, allowed, cap, floored, [i.shape for i in insts],
                     confidence=np.asarray(floored.confidence, dtype=np.float64),
                     notes=[f"plan: {i.decision}, {i.reason}" if i.decision else None for i in insts],
                     source=f"model {svc.guard.name}")
    return dict(zip(slots, recs, strict=True))


def checkpoint_recommendations(w: Any, instances: list[dict[str, Any]],
                               now: float | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Slot id -> recommendation for a stack's running ``instances`` (``sculpt status``), from the model the
    stack's watcher last checkpointed in the ledger (``sculpt watch`` saves it every 30 ticks and at exit);
    no checkpoint, no recommendation (and a note saying how to get one). Another process has no fresh
    readings, so the forecast is the model's own (no nowcast floor)."""
    import time

    from sculpt.decide.cost import cost_model_for
    from sculpt.forecast import persist
    from sculpt.loop.service import checkpoint_key, stream_names

    spec = w.spec
    if spec is None or not instances:
        return {}, []
    key = checkpoint_key(w.stack)
    saved = sorted(w.ledger.checkpoints(key), key=lambda r: r[2])
    if not saved:
        return {}, ["no recommendations yet: `sculpt watch` forecasts the fleet and saves its model for status"]
    _, model, when = saved[-1]
    cm = cost_model_for(spec)
    horizon_s = cm.horizon_h * 3600.0
    try:
        predictor, note = persist.restore(w.ledger, key, model, profile=spec.profile, horizon_s=horizon_s)
    except SculptError as e:
        return {}, [f"no recommendations: the checkpointed model '{model}' cannot be loaded here ({e.message})"]
    if note:
        return {}, [f"no recommendations: {note}"]
    ids = sorted(str(i["id"]) for i in instances)
    streams = stream_names(w.stack, len(ids))  # the watcher gives slots their rows in id order
    try:
        fc = predictor.forecast_many(streams, horizon_s)
    except Exception as e:  # noqa: BLE001 - a model that cannot forecast here never stops `sculpt status`
        log.debug("checkpointed model failed to forecast", exc_info=True)
        return {}, [f"no recommendations: the checkpointed model '{model}' could not forecast ({type(e).__name__})"]
    age = max(0.0, (time.time() if now is None else now) - when)
    source = f"model {model} checkpointed {_age(age)} ago"
    shapes = {str(i["id"]): (i.get("shape"), i.get("region") or spec.region) for i in instances}
    out: dict[str, dict[str, Any]] = {}
    for region in sorted({r for _, r in shapes.values()}):
        ks = [k for k, sid in enumerate(ids) if shapes[sid][1] == region]
        arrays = w.catalog.arrays(region)
        rows = np.array(ks, dtype=np.int64)
        part = Fit(*(np.asarray(v, dtype=np.float64)[rows] for v in (fc.cpu_p50, fc.cpu_p95, fc.cpu_hi, fc.mem_p50,
                                                                      fc.mem_p95, fc.mem_hi)))
        recs = recommend(arrays, allowed_of(spec, arrays), cm.utilisation_cap, part,
                         [shapes[ids[k]][0] for k in ks], confidence=np.asarray(fc.confidence, np.float64)[rows],
                         source=source)
        out.update({ids[k]: rec for k, rec in zip(ks, recs, strict=True)})
    return out, []


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
