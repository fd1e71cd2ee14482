"""The AWS program under Pulumi mocks (``preview=False`` so apply callbacks run and assertions are real)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pulumi.conftest import make_fleet

pulumi = pytest.importorskip("pulumi")
pytest.importorskip("pulumi_aws")

import stacks  # noqa: E402
from tests.pulumi.mocks import CloudMocks, OptionsRecorder  # noqa: E402

BLUE_GREEN = [("web-0", "m6i.large", "blue", 100), ("web-1", "m6i.large", "blue", 100),
              ("web-g0", "c6i.large", "green", 0), ("web-g1", "c6i.large", "green", 0)]


def _run(fleet: Any, version: int = 7, make: Any = None) -> dict[str, Any]:
    """Run ``stacks.build`` under the installed mocks and resolve its outputs."""
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        out = stacks.build(fleet, version, **({"make": make} if make else {}))
        return pulumi.Output.all(**out).apply(resolved.update)

    program()
    return resolved


def test_one_colour_fleet_has_instances_target_groups_and_full_weight(mocks: CloudMocks) -> None:
    out = _run(make_fleet("aws", replicas={"min": 1, "max": 3, "desired": 2}))
    instances = mocks.of_type("aws:ec2/instance:Instance")
    assert sorted(i.name for i in instances) == ["web-0", "web-1"]
    assert {i.inputs["instanceType"] for i in instances} == {"m6i.large"}
    assert len(mocks.of_type("aws:lb/targetGroup:TargetGroup")) == 2  # blue and green, stable ARNs
    assert len(mocks.of_type("aws:lb/targetGroupAttachment:TargetGroupAttachment")) == 2
    assert out["weights"] == {"blue": 200, "green": 0}
    assert out["url"] == "http://web-alb.elb.example:80"
    assert set(out["instances"]) == {"web-0", "web-1"}
    assert out["instances"]["web-0"]["private_ip"].startswith("10.0.0.")


def test_listener_forward_action_carries_colour_weights(mocks: CloudMocks) -> None:
    shifted = [(i, s, c, 0 if c == "blue" else 100) for i, s, c, _ in BLUE_GREEN]
    _run(make_fleet("aws", slots=shifted))
    (listener,) = mocks.of_type("aws:lb/listener:Listener")
    groups = listener.inputs["defaultActions"][0]["forward"]["targetGroups"]
    by_arn = {g["arn"]: g["weight"] for g in groups}
    assert by_arn == {"arn:aws:mock:web-blue": 0, "arn:aws:mock:web-green": 200}


def test_weights_above_the_alb_maximum_are_scaled_keeping_the_ratio(mocks: CloudMocks) -> None:
    slots = [(f"web-{i}", "m6i.large", "blue", 1000) for i in range(3)] + [("web-g", "m6i.large", "green", 1)]
    out = _run(make_fleet("aws", slots=slots, replicas={"min": 1, "max": 4, "desired": 4}))
    assert out["weights"] == {"blue": 999, "green": 1}


def test_every_instance_carries_fleet_colour_and_version_tags(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", slots=BLUE_GREEN), version=12)
    for inst in mocks.of_type("aws:ec2/instance:Instance"):
        tags = inst.inputs["tags"]
        assert tags["sculpt:fleet"] == "web"
        assert tags["sculpt:version"] == "12"
        assert tags["sculpt:colour"] == ("green" if inst.name.startswith("web-g") else "blue")
        assert tags["team"] == "core"
    for tg in mocks.of_type("aws:lb/targetGroup:TargetGroup"):
        assert tg.inputs["tags"]["sculpt:colour"] in tg.name


def test_each_colour_gets_its_own_launch_template_per_shape(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", slots=BLUE_GREEN))
    templates = {t.name: t.inputs["instanceType"] for t in mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    assert templates == {"web-blue-m6i.large": "m6i.large", "web-green-c6i.large": "c6i.large"}


def test_instances_are_replaced_not_restarted_when_the_type_changes(mocks: CloudMocks) -> None:
    rec = OptionsRecorder()
    _run(make_fleet("aws"), make=rec)
    assert rec.opts["web-0"].replace_on_changes == ["instanceType"]
    assert rec.opts["web-0"].delete_before_replace is False


def test_no_public_ip_unless_policy_allows(mocks: CloudMocks) -> None:
    _run(make_fleet("aws"))
    assert mocks.named("web-0").inputs["associatePublicIpAddress"] is False


def test_public_ip_when_policy_allows(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", policy={"allow_public_ip": True}))
    assert mocks.named("web-0").inputs["associatePublicIpAddress"] is True


def test_no_data_volume_without_volume_sync(mocks: CloudMocks) -> None:
    out = _run(make_fleet("aws"))
    assert mocks.of_type("aws:ebs/volume:Volume") == []
    assert "volume" not in out


VOLUME = {"app": {"state_sync": {"strategy": "volume", "volume": "web-data"}}}


def test_volume_stays_on_blue_while_green_has_no_traffic(mocks: CloudMocks) -> None:
    rec = OptionsRecorder()
    out = _run(make_fleet("aws", slots=BLUE_GREEN, **VOLUME), make=rec)
    (attachment,) = mocks.of_type("aws:ec2/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["instanceId"] == "web-0-id"
    assert out["volume"]["attached_to"] == "web-0"
    (volume,) = mocks.of_type("aws:ebs/volume:Volume")
    assert volume.inputs["availabilityZone"] == "us-east-1a"
    assert volume.inputs["tags"]["Name"] == "web-data"
    # one AZ for every instance, so the volume can follow traffic
    assert {i.inputs["subnetId"] for i in mocks.of_type("aws:ec2/instance:Instance")} == {"subnet-a"}
    assert rec.opts["web-data-attachment"].delete_before_replace is True
    assert rec.opts["web-data"].retain_on_delete is True


def test_volume_moves_to_green_when_the_fleet_shifts_traffic(mocks: CloudMocks) -> None:
    shifted = [(i, s, c, 0 if c == "blue" else 100) for i, s, c, _ in BLUE_GREEN]
    out = _run(make_fleet("aws", slots=shifted, **VOLUME))
    (attachment,) = mocks.of_type("aws:ec2/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["instanceId"] == "web-g0-id"
    assert out["volume"] == {"id": "web-data-id", "attached_to": "web-g0", "colour": "green"}


def test_instances_spread_over_subnets_without_volume(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", replicas={"min": 1, "max": 3, "desired": 2}))
    assert {i.inputs["subnetId"] for i in mocks.of_type("aws:ec2/instance:Instance")} == {"subnet-a", "subnet-b"}


def test_image_comes_from_spec_or_an_arch_matching_lookup(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", app={"image": "ami-user"}))
    assert mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0].inputs["imageId"] == "ami-user"
    assert "aws:ec2/getAmi:getAmi" not in mocks.calls


def test_fleet_round_trips_through_stack_config(mocks: CloudMocks) -> None:
    fleet = make_fleet("aws", slots=BLUE_GREEN)
    pulumi.runtime.set_all_config({"sculpt:fleet": fleet.model_dump_json(), "sculpt:version": "3"})
    try:
        @pulumi.runtime.test
        def program() -> None:
            stacks.program()

        program()
    finally:
        pulumi.runtime.set_all_config({})
    assert sorted(i.name for i in mocks.of_type("aws:ec2/instance:Instance")) == ["web-0", "web-1", "web-g0", "web-g1"]
    assert mocks.named("web-0").inputs["tags"]["sculpt:version"] == "3"


def test_cross_region_slots_are_refused_with_the_fix() -> None:
    from sculpt.domain.errors import ConfigError
    from sculpt.domain.fleet import Slot

    fleet = make_fleet("aws")
    fleet = fleet.with_slots([*fleet.slots, Slot(id="web-g0", shape="m6i.large", region="eu-west-1", colour="green")])
    with pytest.raises(ConfigError, match="cross-region.*To fix"):
        stacks.build(fleet)


def test_outputs_name_every_slots_ec2_instance_id_private_ip_and_colour(mocks: CloudMocks) -> None:
    """What CloudWatch (by InstanceId) and the cloud morph platform (target health) are keyed by."""
    out = _run(make_fleet("aws", slots=BLUE_GREEN))
    assert set(out["instances"]) == {"web-0", "web-1", "web-g0", "web-g1"}
    for inst in mocks.of_type("aws:ec2/instance:Instance"):
        row = out["instances"][inst.name]
        assert row["id"] == f"{inst.name}-id"  # the id the cloud gave the instance (the mock's)
        assert row["private_ip"].startswith("10.0.0.")
        assert row["colour"] == ("green" if inst.name.startswith("web-g") else "blue")
    assert out["target_groups"] == {"blue": "arn:aws:mock:web-blue", "green": "arn:aws:mock:web-green"}
    from sculpt.metrics.aws_ids import ec2_targets

    assert ec2_targets(out)["web-g1"].instance_id == "web-g1-id"
