"""What runs now, for ``sculpt status`` and ``sculpt up``, whatever the engine.

Why it exists: the local engine asks its agent (processes, limits, the load balancer's address); a Pulumi
stack has no agent, so its view is assembled from three places — the ledger's current fleet (shapes,
colours, weights), the stack outputs (the load balancer's URL, each slot's cloud instance id and private
address; on GCP the managed instance group's instance names instead) and the cloud's own health checks through the morph platform (the ALB's target health on AWS). Both
produce the same keys, so the verbs print one table and one ``--json`` shape.

It also says what each instance should run, as the Kubernetes VPA does (``recommend``): the
``lower_bound`` / ``target`` / ``upper_bound`` shapes that hold the forecast interval's low / median / high,
from the live loop (``service_recommendations``, the API) or from the model the stack's watcher last
checkpointed in the ledger (``checkpoint_recommendations``, ``sculpt status``: another process).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from sculpt.domain.errors import SculptError

log = logging.getLogger("sculpt.status")


def stack_status(w: Any) -> dict[str, Any] | None:
    """The running stack of wiring ``w`` (see ``sculpt.app.wiring.Wiring``), or ``None`` when nothing runs."""
    engine = w.engine
    if hasattr(engine, "provider"):
        return engine.provider.status()  # type: ignore[no-any-return]
    fleet = engine.current()
    if fleet is None:
        return None
    outputs = engine.outputs()
    rows = dict(outputs.get("instances") or {})
    health, names, notes = _cloud_health(w)
    instances = []
    for s in fleet.slots:
        row = dict(rows.get(s.id) or {})
        instances.append({
            "id": s.id, "shape": s.shape, "region": s.region, "colour": s.colour, "weight": s.weight,
            "healthy": health.get(s.id), "instance_id": row.get("id") or names.get(s.id),
            "address": row.get("private_ip"),
            "pid": None, "cpu_limit": None, "mem_limit_mb": None, "enforcement": "instance type", "restarts": 0,
        })
    url = str(outputs.get("url") or "")
    address = url.split("://", 1)[-1] or None  # host:port, as the local load balancer reports it
    return {"enforcement": "instance type", "live_resize": False, "agent_pid": None,
            "lb": {"address": address}, "instances": instances, "notes": notes}


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


@dataclass(frozen=True)
class Demand:
    """One instance's forecast demand over the horizon: (low, point, high) CPU cores and memory GiB.

    ``low``/``high`` come from the forecast interval, ``point`` is its median; memory may be NaN (unread)."""

    cpu: tuple[float, float, float]
    mem: tuple[float, float, float]
    confidence: float = math.nan

    def ordered(self) -> Demand:
        """low <= point <= high per resource, so the bounds' shapes can never cross."""
        def fix(v: tuple[float, float, float]) -> tuple[float, float, float]:
            lo, pt, hi = (x if math.isfinite(x) and x >= 0 else math.nan for x in v)
            if math.isnan(pt):
                pt = hi if not math.isnan(hi) else lo
            if math.isnan(pt):
                return math.nan, math.nan, math.nan
            lo = pt if math.isnan(lo) else min(lo, pt)
            hi = pt if math.isnan(hi) else max(hi, pt)
            return lo, pt, hi

        return Demand(fix(self.cpu), fix(self.mem), self.confidence)


def _size_order(arrays: Any, allowed: Any) -> list[int]:
    """Allowed offerings from smallest to largest: cores, then memory, then price."""
    idx = [i for i in range(len(arrays)) if bool(allowed[i]) and math.isfinite(float(arrays.price[i]))]
    return sorted(idx, key=lambda i: (float(arrays.vcpu[i]), float(arrays.memory_gib[i]), float(arrays.price[i]),
                                      str(arrays.names[i])))


def _fit(arrays: Any, order: list[int], cpu: float, mem: float, cap: float) -> tuple[int, bool]:
    """The smallest allowed offering whose ``cap`` share holds (cpu, mem); the largest (and False) when none
    does. The allowed set only shrinks as demand grows, so bigger demand never gets a smaller shape."""
    m = 0.0 if math.isnan(mem) else mem
    for i in order:
        if float(arrays.vcpu[i]) * cap >= cpu and float(arrays.memory_gib[i]) * cap >= m:
            return i, True
    return order[-1], False


def _f(x: float, n: int = 4) -> float | None:
    return round(x, n) if math.isfinite(x) else None


def recommend(arrays: Any, allowed: Any, cap: float, demand: Demand, current: str | None,
              plan_note: str | None = None, source: str = "the forecast") -> dict[str, Any]:
    """The recommended shapes for one instance: ``lower_bound`` (fits the interval's low), ``target`` (fits
    the median) and ``upper_bound`` (fits the interval's high), each the smallest allowed shape of
    ``arrays`` whose ``cap`` share (the SLO's max utilisation) holds that CPU and memory, with its cores
    and memory; ``why`` says so in one line. Without a usable forecast the bounds are ``None``."""
    d = demand.ordered()
    order = _size_order(arrays, allowed)
    out: dict[str, Any] = {b: None for b in BOUNDS}
    out.update({"current": current, "utilisation_cap": cap, "confidence": _f(demand.confidence),
                "demand": {"cpu_cores": dict(zip(("low", "point", "high"), map(_f, d.cpu), strict=True)),
                           "memory_gib": dict(zip(("low", "point", "high"), map(_f, d.mem), strict=True))}})
    if not order:
        out["why"] = "no allowed shape has a price in this region (check `families` and `sculpt catalog`)"
        return out
    if math.isnan(d.cpu[1]):
        out["why"] = f"no forecast yet from {source}: `sculpt watch` learns the fleet's demand first"
        return out
    fits: list[bool] = []
    for bound, k in zip(BOUNDS, range(3), strict=True):
        i, ok = _fit(arrays, order, d.cpu[k], d.mem[k], cap)
        fits.append(ok)
        out[bound] = {"shape": str(arrays.names[i]), "cpu_cores": float(arrays.vcpu[i]),
                      "memory_gib": float(arrays.memory_gib[i]), "usd_per_hour": _f(float(arrays.price[i]), 6)}
    mem = "memory unread" if math.isnan(d.mem[1]) else f"{d.mem[1]:.2f} GiB"
    why = (f"target {out['target']['shape']} holds the median {d.cpu[1]:.2f} cores / {mem} at <= {cap:.0%} use; "
           f"the interval {d.cpu[0]:.2f}-{d.cpu[2]:.2f} cores gives {out['lower_bound']['shape']} .. "
           f"{out['upper_bound']['shape']} ({source}")
    why += f", confidence {demand.confidence:.0%})" if math.isfinite(demand.confidence) else ")"
    if not all(fits):
        why += "; no allowed shape holds the " + ("median" if not fits[1] else "high") + ", so the largest is named"
    if current is not None and current != out["target"]["shape"]:
        why += f"; runs {current} now" + (f" ({plan_note})" if plan_note else "")
    out["why"] = why
    return out


def allowed_of(spec: Any, arrays: Any) -> Any:
    from sculpt.decide.decision import family_mask

    return family_mask(arrays, spec.families)


def service_recommendations(svc: Any) -> dict[str, dict[str, Any]]:
    """Slot id -> recommendation for the instances of a running ``SculptorService``'s last tick: the model's
    interval (low) and the forecast floored by the latest readings (point, high), as the decision sees it."""
    import numpy as np

    last = svc.last
    if last is None or not last.instances:
        return {}
    with svc.lock:
        slots = [i.slot for i in last.instances if i.slot in svc.port.row_of]
        if not slots:
            return {}
        rows = np.array([svc.port.row_of[s] for s in slots], dtype=np.int64)
        fc, floored = svc._forecast(rows)
        arrays = svc.port.arrays
        allowed = allowed_of(svc.spec, arrays)
        cap = float(svc.cost.utilisation_cap)
    by_slot = {i.slot: i for i in last.instances}
    out = {}
    for k, slot in enumerate(slots):
        demand = Demand(cpu=(float(fc.cpu_lo[k]), float(floored.cpu_p50[k]), float(floored.cpu_p95[k])),
                        mem=(float(fc.mem_lo[k]), float(floored.mem_p50[k]), float(floored.mem_p95[k])),
                        confidence=float(floored.confidence[k]))
        inst = by_slot[slot]
        note = f"plan: {inst.decision}, {inst.reason}" if inst.decision else None
        out[slot] = recommend(arrays, allowed, cap, demand, inst.shape, note, source=f"model {svc.guard.name}")
    return out


def checkpoint_recommendations(w: Any, instances: list[dict[str, Any]],
                               now: float | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Slot id -> recommendation for a stack's running ``instances`` (``sculpt status``), from the model the
    stack's watcher last checkpointed in the ledger (``sculpt watch`` saves it every 30 ticks and at exit);
    no checkpoint, no recommendation (and a note saying how to get one)."""
    import time

    from sculpt.app.sculptor import checkpoint_key, cost_model_for, stream_names
    from sculpt.decide.decision import upper
    from sculpt.forecast import persist

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
    cpu_hi, mem_hi = upper(fc.cpu_p95, fc.cpu_hi), upper(fc.mem_p95, fc.mem_hi)  # as the decision trusts them
    by_region: dict[str, Any] = {}
    age = max(0.0, (time.time() if now is None else now) - when)
    source = f"model {model} checkpointed {_age(age)} ago"
    out = {}
    shapes = {str(i["id"]): (i.get("shape"), i.get("region") or spec.region) for i in instances}
    for k, sid in enumerate(ids):
        shape, region = shapes[sid]
        if region not in by_region:
            arrays = w.catalog.arrays(region)
            by_region[region] = (arrays, allowed_of(spec, arrays))
        arrays, allowed = by_region[region]
        demand = Demand(cpu=(float(fc.cpu_lo[k]), float(fc.cpu_p50[k]), float(cpu_hi[k])),
                        mem=(float(fc.mem_lo[k]), float(fc.mem_p50[k]), float(mem_hi[k])),
                        confidence=float(fc.confidence[k]))
        out[sid] = recommend(arrays, allowed, cm.utilisation_cap, demand, shape, source=source)
    return out, []


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
