"""The CrossGuard policies, called directly with the validation args Pulumi would pass.

(``PolicyPack`` itself is never constructed here: it starts a gRPC server and blocks.)
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pulumi.conftest import make_fleet

pytest.importorskip("pulumi_policy")

from pulumi_policy import (  # noqa: E402
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies import pack  # noqa: E402

OPTS = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                             custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])


def _rargs(typ: str, name: str, props: dict[str, Any]) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource_type=typ, props=props, urn=f"urn:pulumi:test::sculpt::{typ}::{name}",
                                  name=name, opts=OPTS, provider=None)


def _resource(typ: str, name: str, props: dict[str, Any]) -> PolicyResource:
    return PolicyResource(resource_type=typ, props=props, urn=f"urn:pulumi:test::sculpt::{typ}::{name}", name=name,
                          opts=OPTS, provider=None, parent=None, dependencies=[], property_dependencies={})


def _violations(fn: Any, spec: Any, args: Any, **kw: Any) -> list[str]:
    found: list[str] = []
    fn(spec, args, lambda message, urn=None: found.append(message), **kw)
    return found


def _instance(name: str, shape: str = "m6i.large", colour: str = "blue", **props: Any) -> PolicyResource:
    return _resource(pack.AWS_INSTANCE, name, {"instanceType": shape, "region": "us-east-1",
                                                "tags": {"sculpt:colour": colour}, **props})


def _target_group(colour: str, weight: int) -> PolicyResource:
    return _resource(pack.AWS_TARGET_GROUP, f"web-{colour}",
                     {"tags": {"sculpt:colour": colour, "sculpt:weight": str(weight)}})


def test_family_outside_the_allowed_list_is_reported() -> None:
    spec = make_fleet("aws", families=["m6i", "c6i"]).spec
    assert _violations(pack.validate_families, spec, _rargs(pack.AWS_INSTANCE, "web-0", {"instanceType": "c6i.large"})) == []
    found = _violations(pack.validate_families, spec, _rargs(pack.AWS_INSTANCE, "web-0", {"instanceType": "r7i.large"}))
    assert found == ["r7i.large not in allowed families ['c6i', 'm6i']"]


def test_gcp_machine_types_map_to_their_family() -> None:
    spec = make_fleet("gcp", families=["n2-standard"]).spec
    ok = _rargs(pack.GCP_TEMPLATE, "t", {"machineType": "n2-standard-4"})
    bad = _rargs(pack.GCP_TEMPLATE, "t", {"machineType": "n2-highcpu-4"})
    assert _violations(pack.validate_families, spec, ok) == []
    assert len(_violations(pack.validate_families, spec, bad)) == 1


def test_public_ip_reported_unless_allowed() -> None:
    public = _rargs(pack.AWS_INSTANCE, "web-0", {"instanceType": "m6i.large", "associatePublicIpAddress": True})
    assert _violations(pack.validate_public_ip, make_fleet("aws").spec, public) == ["instances would get public IPs"]
    allowed = make_fleet("aws", policy={"allow_public_ip": True}).spec
    assert _violations(pack.validate_public_ip, allowed, public) == []
    gcp_public = _rargs(pack.GCP_TEMPLATE, "t", {"machineType": "n2-standard-2",
                                                 "networkInterfaces": [{"accessConfigs": [{}]}]})
    assert len(_violations(pack.validate_public_ip, make_fleet("gcp").spec, gcp_public)) == 1


def test_required_tags_read_aws_tags_and_gcp_labels() -> None:
    spec = make_fleet("aws", policy={"required_tags": {"team": "core", "sculpt:fleet": "*"}}).spec
    tagged = _rargs(pack.AWS_INSTANCE, "web-0", {"instanceType": "m6i.large",
                                                 "tags": {"team": "core", "sculpt:fleet": "web"}})
    untagged = _rargs(pack.AWS_INSTANCE, "web-0", {"instanceType": "m6i.large", "tags": {"team": "core"}})
    assert _violations(pack.validate_required_tags, spec, tagged) == []
    assert _violations(pack.validate_required_tags, spec, untagged) == ["missing tag(s): sculpt:fleet"]
    labelled = _rargs(pack.GCP_TEMPLATE, "t", {"machineType": "n2-standard-2",
                                               "labels": {"team": "core", "sculpt-fleet": "web"}})
    assert _violations(pack.validate_required_tags, spec, labelled) == []


def test_non_instance_resources_are_left_alone() -> None:
    spec = make_fleet("aws", families=["m6i"]).spec
    assert _violations(pack.validate_families, spec, _rargs("aws:lb/listener:Listener", "l", {})) == []


def test_budget_sums_catalog_prices_of_all_instances() -> None:
    spec = make_fleet("aws", budget_usd_per_hour=0.25, replicas={"min": 1, "max": 3, "desired": 2}).spec
    two = StackValidationArgs(resources=[_instance("web-0"), _instance("web-1")])
    three = StackValidationArgs(resources=[_instance("web-0"), _instance("web-1"), _instance("web-2")])
    price = {("m6i.large", "us-east-1"): 0.1}
    assert _violations(pack.validate_budget, spec, two, price=lambda s, r: price.get((s, r))) == []
    assert _violations(pack.validate_budget, spec, three, price=lambda s, r: price.get((s, r))) == [
        "fleet $0.3000/h exceeds cap $0.2500/h"]


def test_budget_uses_the_built_in_catalog_by_default() -> None:
    spec = make_fleet("aws", budget_usd_per_hour=0.01).spec
    found = _violations(pack.validate_budget, spec, StackValidationArgs(resources=[_instance("web-0")]))
    assert len(found) == 1 and "exceeds cap $0.0100/h" in found[0]


def test_replica_bounds_count_only_serving_colours() -> None:
    spec = make_fleet("aws", replicas={"min": 1, "max": 2, "desired": 2}).spec
    # mid-migration: two blue serving, two green at weight 0 -> 2 serving, within bounds
    res = [_instance("web-0"), _instance("web-1"), _instance("web-g0", colour="green"),
           _instance("web-g1", colour="green"), _target_group("blue", 100), _target_group("green", 0)]
    assert _violations(pack.validate_replicas, spec, StackValidationArgs(resources=res)) == []
    res[-1] = _target_group("green", 50)
    assert _violations(pack.validate_replicas, spec, StackValidationArgs(resources=res)) == [
        "4 serving replica(s), bounds 1..2"]


def test_regions_outside_the_spec_are_reported() -> None:
    spec = make_fleet("aws", regions=["us-west-2"]).spec
    res = [_instance("web-0"), _resource(pack.AWS_INSTANCE, "web-g0", {"instanceType": "m6i.large",
                                                                        "region": "eu-west-1", "tags": {}})]
    assert _violations(pack.validate_regions, spec, StackValidationArgs(resources=res)) == [
        "region(s) eu-west-1 not in ['us-east-1', 'us-west-2']"]


def test_gcp_groups_count_target_size_with_url_map_weights() -> None:
    spec = make_fleet("gcp", replicas={"min": 1, "max": 3, "desired": 3}).spec
    res = [_resource(pack.GCP_GROUP, "web-blue", {"targetSize": 3, "region": "us-central1"}),
           _resource(pack.GCP_TEMPLATE, "web-blue-n2-standard-2", {"machineType": "n2-standard-2"}),
           _resource(pack.GCP_GROUP, "web-green", {"targetSize": 2, "region": "us-central1"}),
           _resource(pack.GCP_URL_MAP, "web-lb", {"defaultRouteAction": {"weightedBackendServices": [
               {"weight": 100}, {"weight": 0}]}})]
    fleet = pack.fleet_of_resources(spec, res)
    assert [(s.colour, s.weight, s.shape) for s in fleet.slots][0] == ("blue", 100, "n2-standard-2")
    assert len(fleet.slots) == 5
    assert _violations(pack.validate_replicas, spec, StackValidationArgs(resources=res)) == []


def test_policies_are_mandatory_and_named_like_the_rules() -> None:
    from sculpt import rules

    policies = pack.make_policies(make_fleet("aws").spec)
    names = {p.name for p in policies}
    rule_names = {r(rules.RuleContext(spec=make_fleet("aws").spec, fleet=make_fleet("aws"), hourly_cost=0)).rule
                  for r in rules.RULES}
    assert names <= rule_names
    assert {p.enforcement_level.value for p in policies} == {"mandatory"}


def test_policy_objects_validate_what_the_stack_program_renders(mocks: Any) -> None:
    """End to end without the CLI: render the AWS program under mocks, feed its resources to the policies."""
    import pulumi

    import stacks

    fleet = make_fleet("aws", families=["c6i"], policy={"required_tags": {"team": "core"}})

    @pulumi.runtime.test
    def program() -> None:
        stacks.build(fleet, 1)

    program()
    resources = [_resource(r.typ, r.name, r.inputs) for r in mocks.resources]
    by_name = {p.name: p for p in pack.make_policies(fleet.spec)}
    found: list[str] = []
    for r in resources:
        args = _rargs(r.resource_type, r.name, r.props)
        for name in ("allowed-families", "required-tags", "no-public-ip"):
            by_name[name].validate(args, lambda m, urn=None, name=name: found.append(f"{name}: {m}"))
    by_name["replica-bounds"].validate(StackValidationArgs(resources=resources),
                                       lambda m, urn=None: found.append(f"replica-bounds: {m}"))
    # the program renders m6i (not allowed here) twice: instance and launch template; tags and IPs are fine
    assert found == ["allowed-families: m6i.large not in allowed families ['c6i']"] * 2
