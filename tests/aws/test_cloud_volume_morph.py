"""A blue/green morph with ``state_sync: volume`` on ``engine: pulumi`` (AWS): the EBS volume follows the traffic.

Real parts: the orchestrator, the Syncer, ``CloudPlatform`` (with ``Ec2InstanceState`` and
``AlbTargetHealth`` over HTTP), the PulumiEngine and the SDK's Automation API code, the ledger, and moto's
EC2/ELBv2 (instances, the volume and its attachments, target health). Doubles: the ``pulumi`` CLI process
(tests/pulumi/cli_double.py), whose updates tests/aws/moto_stack.py plays into moto as the AWS program
declares them (stop the old holder, detach, attach, start the holder), and ``AppNeedsItsVolume``, a double
of what the ALB's health check would see: moto calls every running registered target healthy, but on a
real instance the app of an instance without the volume never starts (stacks/common.py's units).
**Nothing here ran the real Pulumi CLI, real EBS or a real ALB**: that ``stop_instance_before_detaching``
stops cleanly, how long the window without service lasts, and that a Nitro instance finds the volume under
/dev/disk/by-id are AWS's behaviour, not tested here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi", reason="the aws extra is not installed")

from sculpt.migrate import MorphRequest, Orchestrator, Timeouts, parse_faults  # noqa: E402
from sculpt.migrate.cloud import AlbTargetHealth, CloudPlatform, Ec2InstanceState  # noqa: E402
from tests.aws.test_cloud_morph import Rig, SimulatedCrash, _crash  # noqa: E402

VOLUME = {"app": {"state_sync": {"strategy": "volume", "volume": "web-data"}}, "lb": {"drain_s": 30}}
TIMEOUTS = Timeouts(healthy_s=60, step_s=60, drain_s=120, poll_s=5)
BEFORE = [("web-0", "m6i.large", "blue", 100)]
GREEN_AT_ZERO = [("web-0", "m6i.large", "blue", 100), ("web-1", "c6i.large", "green", 0)]
SHIFTED = [("web-0", "m6i.large", "blue", 0), ("web-1", "c6i.large", "green", 100)]
AFTER = [("web-1", "c6i.large", "green", 100)]


class AppNeedsItsVolume:
    """Double of the ALB's view of the app: moto's target health, except that an instance the data volume is
    not attached to (per moto's DescribeVolumes) is ``unhealthy`` (its app waits for the volume), and the
    slots in ``dead`` never answer. Records every answer as (slot, state, number of `pulumi up`s so far)."""

    def __init__(self, rig: Rig, moto_url: str) -> None:
        self.rig = rig
        self.alb = AlbTargetHealth("us-east-1", endpoint_url=moto_url)
        self.dead: set[str] = set()
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, target_group_arn: str, instance_id: str, port: int) -> str:
        state = self.alb(target_group_arn, instance_id, port)
        slot = next((s for s, i in self.rig.moto.ids.items() if i == instance_id), "?")
        if state == "healthy" and (slot in self.dead or attached_to(self.rig) != instance_id):
            state = "unhealthy"
        self.seen.append((slot, state, len(self.rig.cli.ups)))
        return state


def attached_to(rig: Rig) -> str | None:
    """The EC2 instance moto says the data volume is attached to."""
    if rig.moto.volume_id is None:
        return None
    (vol,) = rig.moto.ec2.describe_volumes(VolumeIds=[rig.moto.volume_id])["Volumes"]
    rows = [a["InstanceId"] for a in vol.get("Attachments", []) if a.get("State") in ("attached", "attaching")]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def volume_rig(tmp_path: Path, moto_url: str) -> tuple[Rig, AppNeedsItsVolume]:
    rig = Rig(tmp_path, moto_url, **VOLUME)
    health = AppNeedsItsVolume(rig, moto_url)
    rig.platform = CloudPlatform(rig.engine, clock=rig.clock, health=health, timeouts=TIMEOUTS,
                                 ec2_state=Ec2InstanceState("us-east-1", endpoint_url=moto_url))
    return rig, health


def test_process_double_volume_morph_moves_the_ebs_volume_to_green_in_the_shift(tmp_path: Path,
                                                                               moto_url: str) -> None:
    rig, health = volume_rig(tmp_path, moto_url)
    blue_ec2 = rig.moto.ids["web-0"]
    assert attached_to(rig) == blue_ec2  # `sculpt up` attached it to the only instance
    rep = rig.morph()
    assert (rep.result, rep.strategy) == ("done", "blue-green"), rep.reason
    assert rig.applied() == [BEFORE, GREEN_AT_ZERO, SHIFTED, AFTER]
    green_ec2 = rig.moto.ids["web-1"]
    assert attached_to(rig) == green_ec2
    # the old holder was stopped (a clean shutdown) before the detach, then the volume went to green
    assert [e for e in rig.moto.events if e[0] != "attach" or e[1] != "web-0"] == [
        ("stop", "web-0", "stopped"), ("detach", "web-0", "stopped"), ("attach", "web-1", "running")]
    # green passed WAIT_HEALTHY as a running standby: the ALB never saw it healthy before the shift (3rd up)
    assert not [s for s in health.seen if s[0] == "web-1" and s[1] == "healthy" and s[2] < 3]
    assert ("web-1", "healthy", 3) in health.seen  # ...and the shift waited until it served
    assert rep.versions == [2, 3, 4]


def test_process_double_volume_morph_copies_nothing_and_needs_no_private_address(tmp_path: Path,
                                                                                moto_url: str) -> None:
    rig, _ = volume_rig(tmp_path, moto_url)
    assert not rig.platform.private_reachable  # a checkpoint, restore or read-only call would raise
    assert rig.platform.data_dir("web-0") is None  # and there is no data directory to copy
    rep = rig.morph()
    assert rep.result == "done", rep.reason
    assert [s.state.value for s in rep.steps] == [
        "PROVISION_GREEN", "WAIT_HEALTHY", "SYNC_STATE", "PAUSE_FINAL_DELTA", "SHIFT", "RESUME", "DRAIN_BLUE",
        "RETIRE_BLUE"]


def test_process_double_volume_morph_warns_that_requests_fail_during_the_move(
        tmp_path: Path, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:
    rig, _ = volume_rig(tmp_path, moto_url)
    with caplog.at_level("WARNING"):
        rig.morph()
    text = caplog.text
    assert "moves the data volume from web-0 to web-1" in text and "requests fail" in text


def test_process_double_green_that_never_serves_after_the_shift_rolls_back_with_the_volume_on_blue(
        tmp_path: Path, moto_url: str) -> None:
    rig, health = volume_rig(tmp_path, moto_url)
    health.dead.add("web-1")  # green's app never answers, even with the volume
    blue_ec2 = rig.moto.ids["web-0"]
    rep = rig.morph()
    assert rep.result == "rolled_back"
    assert "web-1 did not become healthy with the data volume within 60s" in (rep.reason or "")
    assert rig.applied() == [BEFORE, GREEN_AT_ZERO, SHIFTED, BEFORE]  # the base version re-applied
    assert attached_to(rig) == blue_ec2
    assert rig.moto.state("web-0") == "running"
    assert "web-1" not in rig.moto.ids  # green's instance terminated by the re-applied version
    moves = [e[:2] for e in rig.moto.events]
    assert moves[moves.index(("attach", "web-1")):] == [
        ("attach", "web-1"), ("stop", "web-1"), ("detach", "web-1"), ("attach", "web-0"), ("start", "web-0")]
    assert rig.platform.instances()["web-0"].healthy  # blue serves again


def test_process_double_a_failed_shift_update_leaves_the_volume_on_blue(tmp_path: Path, moto_url: str) -> None:
    rig, _ = volume_rig(tmp_path, moto_url)
    rig.cli.fail_up_at = {3}  # the shift's `pulumi up` fails
    rep = rig.morph()
    assert rep.result == "rolled_back"
    assert rig.applied()[-1] == BEFORE
    assert attached_to(rig) == rig.moto.ids["web-0"]
    assert rig.moto.state("web-0") == "running"


def _crash_then_recover(rig: Rig, where: str) -> Any:
    orch = Orchestrator(rig.platform, rig.ledger, rig.clock, faults=parse_faults(f"crash-at:{where}"),
                        crash=_crash, timeouts=TIMEOUTS)
    with pytest.raises(SimulatedCrash):
        orch.morph(MorphRequest(shape="c6i.large"))
    (migration,) = rig.ledger.unfinished_migrations("web")
    fresh = CloudPlatform(rig.engine, clock=rig.clock, health=rig.platform._health, timeouts=TIMEOUTS,
                          ec2_state=rig.platform._ec2_state)
    return Orchestrator(fresh, rig.ledger, rig.clock, timeouts=TIMEOUTS).recover(migration)


def test_process_double_a_crash_right_after_the_volume_moved_rolls_forward_with_the_volume_on_green(
        tmp_path: Path, moto_url: str) -> None:
    """The shift moved the volume (and green may have written to it): recovery keeps it there."""
    rig, _ = volume_rig(tmp_path, moto_url)
    rep = _crash_then_recover(rig, "SHIFT")
    assert rep.result == "done", rep.reason
    assert rig.applied()[-1] == AFTER
    assert attached_to(rig) == rig.moto.ids["web-1"]


def test_process_double_a_crash_after_resume_rolls_forward_with_the_volume_on_green(
        tmp_path: Path, moto_url: str) -> None:
    rig, _ = volume_rig(tmp_path, moto_url)
    rep = _crash_then_recover(rig, "RESUME")
    assert rep.result == "done", rep.reason
    assert rig.applied()[-1] == AFTER
    assert attached_to(rig) == rig.moto.ids["web-1"]
