"""The AWS program under Pulumi mocks (``preview=False`` so apply callbacks run and assertions are real)."""

from __future__ import annotations

from pathlib import Path
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
ONE_BLUE_GREEN = [("web-0", "m6i.large", "blue", 100), ("web-g0", "c6i.large", "green", 0)]  # a volume has one writer


def test_volume_stays_on_blue_while_green_has_no_traffic(mocks: CloudMocks) -> None:
    rec = OptionsRecorder()
    out = _run(make_fleet("aws", slots=ONE_BLUE_GREEN, **VOLUME), make=rec)
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
    shifted = [(i, s, c, 0 if c == "blue" else 100) for i, s, c, _ in ONE_BLUE_GREEN]
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


# -- state_sync: volume across a morph ------------------------------------------------------------------------
BEFORE = [("web-0", "m6i.large", "blue", 100)]
GREEN_AT_ZERO = [("web-0", "m6i.large", "blue", 100), ("web-1", "c6i.large", "green", 0)]
SHIFTED = [("web-0", "m6i.large", "blue", 0), ("web-1", "c6i.large", "green", 100)]


def _user_data(mocks: CloudMocks) -> dict[str, str]:
    import base64

    return {t.name: base64.b64decode(t.inputs["userData"]).decode()
            for t in mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate")}


def _names(resources: Any) -> list[str]:
    return [r._name for r in resources or []]


def test_the_attachment_moves_after_the_listener_and_stops_the_old_holder_before_detaching(mocks: CloudMocks) -> None:
    rec = OptionsRecorder()
    _run(make_fleet("aws", slots=SHIFTED, **VOLUME), make=rec)
    (attachment,) = mocks.of_type("aws:ec2/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["stopInstanceBeforeDetaching"] is True  # a clean shutdown unmounts /data
    assert not attachment.inputs.get("forceDetach") and not attachment.inputs.get("skipDestroy")
    assert attachment.inputs["deviceName"] == "/dev/sdf"
    opts = rec.opts["web-data-attachment"]
    assert opts.delete_before_replace is True  # one attachment at a time
    assert _names(opts.depends_on) == ["web-http"]  # the weights shift first, then the volume moves


@pytest.mark.parametrize(("slots", "holder"), [(BEFORE, "web-0"), (GREEN_AT_ZERO, "web-0"), (SHIFTED, "web-1")],
                         ids=["before", "green-at-zero", "shifted"])
def test_the_holder_gets_the_volume_and_is_kept_running_in_each_morph_fleet(mocks: CloudMocks, slots: Any,
                                                                            holder: str) -> None:
    rec = OptionsRecorder()
    out = _run(make_fleet("aws", slots=slots, **VOLUME), make=rec)
    (attachment,) = mocks.of_type("aws:ec2/volumeAttachment:VolumeAttachment")
    assert attachment.inputs["instanceId"] == f"{holder}-id"
    (running,) = mocks.of_type("aws:ec2transitgateway/instanceState:InstanceState")
    assert (running.name, running.inputs["instanceId"], running.inputs["state"]) == (
        f"{holder}-running", f"{holder}-id", "running")
    assert _names(rec.opts[f"{holder}-running"].depends_on) == ["web-data-attachment"]  # starts once attached
    assert out["volume"]["attached_to"] == holder
    assert len(mocks.of_type("aws:ebs/volume:Volume")) == 1


def test_no_instance_state_without_volume_sync(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", slots=GREEN_AT_ZERO))
    assert mocks.of_type("aws:ec2transitgateway/instanceState:InstanceState") == []
    for script in _user_data(mocks).values():
        assert "sculpt-data" not in script and "systemctl enable --now sculpt-app.service" in script


def test_every_instance_waits_for_the_volume_before_the_app_starts(mocks: CloudMocks) -> None:
    _run(make_fleet("aws", slots=GREEN_AT_ZERO, **VOLUME))
    scripts = _user_data(mocks)
    assert set(scripts) == {"web-blue-m6i.large", "web-green-c6i.large"}
    for script in scripts.values():
        # the volume's id (the mock's is web-data-id) names its NVMe device on Nitro instances
        assert "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_webdataid /dev/sdf /dev/xvdf" in script
        app_unit = script.split("sculpt-app.service <<'UNIT'\n")[1].split("UNIT\n")[0]
        assert "Requires=sculpt-data.service\nAfter=sculpt-data.service\n" in app_unit
        assert "TimeoutStartSec=infinity" in script and "seq " not in script  # no time bound
        assert "ExecStop=/bin/umount /data" in script
        # the boot script itself does not wait: the app starts when its unit's requirement is met
        assert script.endswith("systemctl enable sculpt-app.service\nsystemctl start --no-block sculpt-app.service\n")


def _mount_script_in(tmp: Path, script: str) -> Path:
    """The user data's volume script, with /dev and /data moved into ``tmp`` (``-b``: ``-e``: no block
    devices in a test), and stubs for blkid/mkfs/mount/mountpoint/sleep that log to ``tmp/log``."""
    body = script.split("<<'SCRIPT'\n")[1].split("SCRIPT\n")[0]
    body = body.replace("/dev/", f"{tmp}/dev/").replace("/data", f"{tmp}/data").replace("[ -b ", "[ -e ")
    (tmp / "dev" / "disk" / "by-id").mkdir(parents=True)
    stubs = {
        "blkid": f'echo "blkid $*" >> {tmp}/log; exit $(cat {tmp}/blkid_rc)',
        "mkfs": f'echo "mkfs $*" >> {tmp}/log',
        "mount": f'echo "mount $*" >> {tmp}/log; touch {tmp}/mounted',
        "mountpoint": f"[ -e {tmp}/mounted ]",
        # the volume is attached after 200 two-second sleeps (the old script gave up after 60)
        "sleep": (f"n=$(( $(cat {tmp}/sleeps 2>/dev/null || echo 0) + 1 )); echo $n > {tmp}/sleeps; "
                  f"if [ $n -ge 200 ]; then touch {tmp}/dev/$(cat {tmp}/appears_as); "
                  f"[ -e {tmp}/by_id ] && ln -sf {tmp}/dev/nvme1n1 "
                  f"{tmp}/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_webdataid; fi; true"),
    }
    (tmp / "bin").mkdir()
    for name, text in stubs.items():
        (tmp / "bin" / name).write_text(f"#!/bin/bash\n{text}\n")
        (tmp / "bin" / name).chmod(0o755)
    path = tmp / "sculpt-data-mount"
    path.write_text(body)
    return path


def _mount(tmp: Path, script: str, *, has_fs: bool, appears_as: str = "nvme1n1") -> list[str]:
    import os
    import subprocess

    path = _mount_script_in(tmp, script)
    (tmp / "blkid_rc").write_text("0" if has_fs else "2")  # blkid -p: 2 means no filesystem signature
    (tmp / "appears_as").write_text(appears_as)
    if appears_as == "nvme1n1":
        (tmp / "by_id").touch()
    env = {**os.environ, "PATH": f"{tmp}/bin:{os.environ['PATH']}"}
    subprocess.run(["bash", str(path)], env=env, check=True, timeout=60)
    assert (tmp / "sleeps").read_text().strip() == "200"  # it kept waiting
    return (tmp / "log").read_text().splitlines()


@pytest.fixture
def volume_script(mocks: CloudMocks) -> str:
    _run(make_fleet("aws", **VOLUME))
    return next(iter(_user_data(mocks).values()))


def test_the_volume_script_mounts_an_existing_filesystem_without_formatting_it(tmp_path: Path,
                                                                                volume_script: str) -> None:
    log = _mount(tmp_path, volume_script, has_fs=True)
    assert log == [f"blkid -p {tmp_path}/dev/nvme1n1", f"mount -o noatime {tmp_path}/dev/nvme1n1 {tmp_path}/data"]


def test_the_volume_script_formats_only_a_volume_without_a_filesystem(tmp_path: Path, volume_script: str) -> None:
    log = _mount(tmp_path, volume_script, has_fs=False)
    assert log == [f"blkid -p {tmp_path}/dev/nvme1n1", f"mkfs -t ext4 -q {tmp_path}/dev/nvme1n1",
                   f"mount -o noatime {tmp_path}/dev/nvme1n1 {tmp_path}/data"]


def test_the_volume_script_falls_back_to_the_xen_device_name(tmp_path: Path, volume_script: str) -> None:
    log = _mount(tmp_path, volume_script, has_fs=True, appears_as="xvdf")
    assert log[-1] == f"mount -o noatime {tmp_path}/dev/xvdf {tmp_path}/data"
