"""sculpt's CrossGuard policies: the pure rules of ``sculpt.rules``, applied to the resources a stack declares.

Why it exists: ``decide`` and ``sculpt policy check`` judge a *plan* with ``sculpt.rules``; this pack
judges what Pulumi is *about to create* with the same functions, so a hand-edited stack or a bug in
``stacks/`` cannot slip past the policy. Each validation reads the resources into a small ``Fleet``
(one slot per instance, colour and weight from sculpt's tags) and a ``RuleContext``, calls the rule and
reports its message when it fails.

``make_policies(spec)`` builds the policies; only ``policies/__main__.py`` wraps them in a ``PolicyPack``
(constructing one starts a gRPC server and blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from sculpt import rules
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.plan import RuleResult
from sculpt.domain.spec import FleetSpec

AWS_INSTANCE = "aws:ec2/instance:Instance"
AWS_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
AWS_TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
GCP_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GCP_GROUP = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
GCP_URL_MAP = "gcp:compute/uRLMap:URLMap"
SHAPED = (AWS_INSTANCE, AWS_TEMPLATE, GCP_TEMPLATE)
COLOURS = ("blue", "green")


# -- reading resources ------------------------------------------------------------------------------------
def shape_of(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """The instance type a resource launches (``None`` for resources that launch none)."""
    if resource_type in (AWS_INSTANCE, AWS_TEMPLATE):
        return props.get("instanceType")
    if resource_type == GCP_TEMPLATE:
        return props.get("machineType")
    return None


def family_of(shape: str) -> str:
    """``m6i.large`` -> ``m6i``; ``n2-standard-4`` -> ``n2-standard`` (the catalogs' family names)."""
    if "." in shape:
        return shape.split(".")[0]
    return "-".join(shape.split("-")[:2])


def tags_of(props: Mapping[str, Any]) -> dict[str, str]:
    """AWS tags or GCP labels (``sculpt-fleet`` and ``sculpt:fleet`` both count)."""
    raw = props.get("tags") if isinstance(props.get("tags"), Mapping) else props.get("labels")
    return dict(raw or {})


def has_public_ip(resource_type: str, props: Mapping[str, Any]) -> bool:
    if resource_type == AWS_INSTANCE:
        return bool(props.get("associatePublicIpAddress"))
    if resource_type == AWS_TEMPLATE:
        return any(str(n.get("associatePublicIpAddress", "")).lower() == "true"
                   for n in props.get("networkInterfaces") or [])
    if resource_type == GCP_TEMPLATE:
        return any(n.get("accessConfigs") for n in props.get("networkInterfaces") or [])
    return False


def _labels_match(required: Mapping[str, str], present: Mapping[str, str]) -> dict[str, str]:
    """Required tags as the resource spells them (GCP labels lowercase and replace ':' by '-')."""
    out = dict(present)
    for k in required:
        alt = k.lower().replace(":", "-")
        if k not in out and alt in out:
            out[k] = out[alt]
    return out


def fleet_of_resources(spec: FleetSpec, resources: Iterable[Any]) -> Fleet:
    """A ``Fleet`` with one slot per instance the resources will run, colour and weight from sculpt's tags."""
    resources = list(resources)
    weights: dict[str, int] = {}
    for r in resources:
        if r.resource_type == AWS_TARGET_GROUP:
            t = tags_of(r.props)
            if "sculpt:colour" in t:
                weights[t["sculpt:colour"]] = int(t.get("sculpt:weight", "0") or 0)
    gcp_colours = [c for c in COLOURS if any(r.resource_type == GCP_GROUP and r.name.endswith(f"-{c}")
                                             for r in resources)]
    for r in resources:
        if r.resource_type == GCP_URL_MAP:
            backends = ((r.props.get("defaultRouteAction") or {}).get("weightedBackendServices") or [])
            weights.update({c: int(b.get("weight", 0)) for c, b in zip(gcp_colours, backends, strict=False)})
    slots: list[Slot] = []
    for r in resources:
        if r.resource_type == AWS_INSTANCE:
            colour = tags_of(r.props).get("sculpt:colour", "blue")
            slots.append(Slot(id=r.name, shape=shape_of(r.resource_type, r.props) or "?",
                              region=r.props.get("region") or spec.region,
                              colour=colour if colour in COLOURS else "blue",  # type: ignore[arg-type]
                              weight=min(weights.get(colour, 100), 1000)))
        elif r.resource_type == GCP_GROUP:
            colour = next((c for c in COLOURS if r.name.endswith(f"-{c}")), "blue")
            shape = next((shape_of(t.resource_type, t.props) for t in resources
                          if t.resource_type == GCP_TEMPLATE and t.name.startswith(f"{r.name}-")), "?")
            for i in range(int(r.props.get("targetSize") or 0)):
                slots.append(Slot(id=f"{r.name}-{i}", shape=shape or "?", region=r.props.get("region") or spec.region,
                                  colour=colour, weight=min(weights.get(colour, 100), 1000)))  # type: ignore[arg-type]
    return Fleet(spec=spec, slots=tuple(slots))


def hourly_cost(fleet: Fleet, price: Callable[[str, str], float | None]) -> float:
    """$/h of the slots whose price is known (unknown shapes are the allowed-families rule's business)."""
    return sum(p for s in fleet.slots if (p := price(s.shape, s.region)) is not None)


def catalog_price(provider: str) -> Callable[[str, str], float | None]:
    from sculpt.catalog import load_catalog
    from sculpt.domain.errors import NotFoundError

    cat = load_catalog(provider)

    def price(shape: str, region: str) -> float | None:
        try:
            return cat.price(shape, region)
        except NotFoundError:
            return None

    return price


# -- validations (plain functions: tests call them with args they build) ---------------------------------
def _report(result: RuleResult, report_violation: ReportViolation, urn: str | None = None) -> None:
    if not result.passed:
        report_violation(result.message, urn)


def _resource_context(spec: FleetSpec, args: ResourceValidationArgs) -> rules.RuleContext | None:
    shape = shape_of(args.resource_type, args.props)
    if shape is None:
        return None
    fleet = Fleet(spec=spec, slots=(Slot(id=args.name, shape=shape, region=spec.region),))
    present = _labels_match(spec.policy.required_tags, tags_of(args.props))
    return rules.RuleContext(spec=spec, fleet=fleet, hourly_cost=0.0, families={shape: family_of(shape)},
                             tags=present, public_ip=has_public_ip(args.resource_type, args.props))


def validate_families(spec: FleetSpec, args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    ctx = _resource_context(spec, args)
    if ctx is not None:
        _report(rules.allowed_families(ctx), report_violation)


def validate_required_tags(spec: FleetSpec, args: ResourceValidationArgs,
                           report_violation: ReportViolation) -> None:
    ctx = _resource_context(spec, args)
    if ctx is not None and args.resource_type != AWS_TEMPLATE:  # templates pass tags on to instances
        _report(rules.required_tags(ctx), report_violation)


def validate_public_ip(spec: FleetSpec, args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    ctx = _resource_context(spec, args)
    if ctx is not None:
        _report(rules.no_public_ip(ctx), report_violation)


def validate_regions(spec: FleetSpec, args: StackValidationArgs, report_violation: ReportViolation) -> None:
    fleet = fleet_of_resources(spec, args.resources)
    _report(rules.allowed_regions(rules.RuleContext(spec=spec, fleet=fleet, hourly_cost=0.0)), report_violation)


def validate_budget(spec: FleetSpec, args: StackValidationArgs, report_violation: ReportViolation,
                    price: Callable[[str, str], float | None] | None = None) -> None:
    fleet = fleet_of_resources(spec, args.resources)
    cost = hourly_cost(fleet, price or catalog_price(spec.provider))
    _report(rules.budget(rules.RuleContext(spec=spec, fleet=fleet, hourly_cost=cost)), report_violation)


def validate_replicas(spec: FleetSpec, args: StackValidationArgs, report_violation: ReportViolation) -> None:
    fleet = fleet_of_resources(spec, args.resources)
    if fleet.slots:  # an empty stack is `sculpt down`, not a replica count
        _report(rules.replica_bounds(rules.RuleContext(spec=spec, fleet=fleet, hourly_cost=0.0)), report_violation)


def make_policies(spec: FleetSpec) -> list[Any]:
    """The pack's policies for ``spec``; all mandatory, as they are in ``decide``."""
    mandatory = EnforcementLevel.MANDATORY

    def res(name: str, description: str, fn: Callable[..., None]) -> ResourceValidationPolicy:
        return ResourceValidationPolicy(name=name, description=description, enforcement_level=mandatory,
                                        validate=lambda args, report: fn(spec, args, report))

    def stk(name: str, description: str, fn: Callable[..., None]) -> StackValidationPolicy:
        return StackValidationPolicy(name=name, description=description, enforcement_level=mandatory,
                                     validate=lambda args, report: fn(spec, args, report))

    return [
        res("allowed-families", "Instance types come from the families sculpt.yaml allows.", validate_families),
        res("required-tags", "Instances carry the tags policy.required_tags asks for.", validate_required_tags),
        res("no-public-ip", "No public IPs on instances unless policy.allow_public_ip.", validate_public_ip),
        stk("allowed-regions", "Instances run only in the regions sculpt.yaml allows.", validate_regions),
        stk("budget", "The fleet's $/h stays under budget_usd_per_hour.", validate_budget),
        stk("replica-bounds", "Serving replicas stay within replicas.min..max.", validate_replicas),
    ]
