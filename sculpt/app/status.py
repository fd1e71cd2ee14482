"""What runs now, for ``sculpt status`` and ``sculpt up``, whatever the engine.

Why it exists: the local engine asks its agent (processes, limits, the load balancer's address); a Pulumi
stack has no agent, so its view is assembled from three places — the ledger's current fleet (shapes,
colours, weights), the stack outputs (the load balancer's URL, each slot's cloud instance id and private
address; on GCP the managed instance group's instance names instead) and the cloud's own health checks through the morph platform (the ALB's target health on AWS). Both
produce the same keys, so the verbs print one table and one ``--json`` shape.
"""

from __future__ import annotations

import logging
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
