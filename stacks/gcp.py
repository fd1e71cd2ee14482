"""The GCP program: a ``Fleet`` as one managed instance group per colour behind a global HTTP load balancer.

Each colour gets instance templates (one per shape), a regional managed instance group sized to its slots
and a backend service; a URL map splits traffic between the colours' backend services with weighted
backends (0-1000), so a blue/green morph shifts traffic by updating the stack. Templates are immutable:
a shape change creates a new template and the group rolls to it. The stack version goes in the URL map's
description, not in instance labels, so a new version does not recreate instances.

Outputs: ``url``, ``weights`` and, per colour (both colours always present, ``None`` for a colour without
slots), ``instance_groups`` (the group's instance group link), ``managed_groups`` (``{name, region,
project}`` of the regional MIG, as the provider created it: the morph platform lists its instances and their
health through the Compute API, see ``sculpt.migrate.gcp``) and ``backend_services`` (self links).
"""

from __future__ import annotations

from typing import Any

import pulumi_gcp as gcp

from sculpt.domain.fleet import Fleet
from stacks.common import (
    COLOURS,
    Make,
    colour_weights,
    create,
    gcp_labels,
    lb_port,
    scaled,
    shapes_of,
    slots_of,
    startup_script,
    tags,
)

URL_MAP_MAX_WEIGHT = 1000
DEFAULT_IMAGE = "debian-cloud/debian-12"
HEALTH_CHECK_RANGES = ["130.211.0.0/22", "35.191.0.0/16"]


def build(fleet: Fleet, version: int = 0, *, make: Make = create, network: str = "default") -> dict[str, Any]:
    """Declare the fleet's GCP resources; return the stack outputs."""
    spec, region, name = fleet.spec, fleet.spec.region, fleet.name
    port = spec.app.port
    make(gcp.compute.Firewall, f"{name}-health", network=network, source_ranges=HEALTH_CHECK_RANGES,
         allows=[{"protocol": "tcp", "ports": [str(port)]}], target_tags=[f"sculpt-{name}"])
    make(gcp.compute.Firewall, f"{name}-sync", network=network, source_tags=[f"sculpt-{name}"],
         allows=[{"protocol": "tcp", "ports": [str(port)]}], target_tags=[f"sculpt-{name}"])
    health = make(gcp.compute.HealthCheck, f"{name}-health",
                  http_health_check={"port": port, "request_path": spec.app.health_path},
                  check_interval_sec=10, healthy_threshold=2)

    weights = scaled(colour_weights(fleet), URL_MAP_MAX_WEIGHT)
    backends: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    for colour in COLOURS:
        shapes = shapes_of(fleet, colour)
        if not shapes:
            continue
        labels = gcp_labels(tags(fleet, colour=colour))
        versions = []
        for shape in shapes:
            template = make(
                gcp.compute.InstanceTemplate, f"{name}-{colour}-{shape}", machine_type=shape, region=region,
                disks=[{"source_image": spec.app.image or DEFAULT_IMAGE, "boot": True, "auto_delete": True}],
                network_interfaces=[{"network": network,
                                     "access_configs": [{}] if spec.policy.allow_public_ip else []}],
                metadata_startup_script=startup_script(fleet), labels=labels, tags=[f"sculpt-{name}"])
            size = len([s for s in slots_of(fleet, colour) if s.shape == shape])
            versions.append({"name": shape, "instance_template": template.self_link_unique,
                             **({"target_size": {"fixed": size}} if len(shapes) > 1 else {})})
        groups[colour] = make(
            gcp.compute.RegionInstanceGroupManager, f"{name}-{colour}", region=region,
            base_instance_name=f"{name}-{colour}", versions=versions, target_size=len(slots_of(fleet, colour)),
            named_ports=[{"name": "http", "port": port}],
            auto_healing_policies={"health_check": health.id, "initial_delay_sec": 120})
        backends[colour] = make(
            gcp.compute.BackendService, f"{name}-{colour}", load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTP", port_name="http", health_checks=health.id,
            connection_draining_timeout_sec=int(spec.lb.drain_s),
            backends=[{"group": groups[colour].instance_group, "balancing_mode": "UTILIZATION",
                       "capacity_scaler": 1.0}])
    url_map = make(
        gcp.compute.URLMap, f"{name}-lb", description=f"sculpt {name} version {version}",
        default_route_action={"weighted_backend_services": [
            {"backend_service": backends[c].id, "weight": weights[c]} for c in backends]})
    proxy = make(gcp.compute.TargetHttpProxy, f"{name}-lb", url_map=url_map.id)
    rule = make(gcp.compute.GlobalForwardingRule, f"{name}-lb", target=proxy.id, port_range=str(lb_port(fleet)),
                load_balancing_scheme="EXTERNAL_MANAGED", labels=gcp_labels(tags(fleet)))
    return {
        "url": rule.ip_address.apply(lambda ip: f"http://{ip}:{lb_port(fleet)}"),
        "weights": {c: weights.get(c, 0) for c in COLOURS},
        "instance_groups": {c: groups[c].instance_group if c in groups else None for c in COLOURS},
        "managed_groups": {c: {"name": groups[c].name, "region": groups[c].region, "project": groups[c].project}
                           if c in groups else None for c in COLOURS},
        "backend_services": {c: backends[c].self_link if c in backends else None for c in COLOURS},
    }
