"""A blue/green morph on ``engine: pulumi``: every step is a ``pulumi up``, health is the ALB's target health.

Real parts: the orchestrator, ``CloudPlatform``, the PulumiEngine and the SDK's Automation API code, the
ledger, and moto's EC2/ELBv2 over HTTP (``DescribeTargetHealth``). Doubles: the ``pulumi`` CLI process
(tests/pulumi/cli_double.py), whose updates tests/aws/moto_stack.py plays into moto. **Nothing here ran
the real Pulumi CLI or a real ALB**: that a weight-0 target group is health-checked, and that the listener
update shifts traffic, is Pulumi's and AWS's behaviour, not tested here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi", reason="the aws extra is not installed")

from sculpt.domain.clock import FakeClock  # noqa: E402
from sculpt.domain.errors import ConfigError  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from sculpt.migrate import MorphRequest, Orchestrator, Timeouts  # noqa: E402
from sculpt.migrate.cloud import AlbTargetHealth, CloudPlatform, cloud_blocker  # noqa: E402
from tests.aws.moto_stack import MotoStack  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402
from tests.pulumi.conftest import make_fleet  # noqa: E402

STATELESS = {"app": {"state_sync": {"strategy": "none"}}, "lb": {"drain_s": 30}}


class Rig:
    def __init__(self, tmp_path: Path, moto_url: str, **spec: Any) -> None:
        self.moto = MotoStack(moto_url)
        self.cli = PulumiProcessDouble(render=self.moto.render)
        self.fleet = make_fleet("aws", **{**STATELESS, **spec})
        self.ledger = Ledger(tmp_path / "ledger.db")
        self.engine = PulumiEngine(self.fleet.spec, tmp_path, self.ledger, command=self.cli)
        self.engine.up(self.fleet, "first")
        self.clock = FakeClock(1_000.0)
        self.platform = CloudPlatform(self.engine, clock=self.clock,
                                      health=AlbTargetHealth("us-east-1", endpoint_url=moto_url))

    def morph(self, shape: str = "c6i.large", strategy: str = "auto") -> Any:
        orch = Orchestrator(self.platform, self.ledger, self.clock,
                            timeouts=Timeouts(healthy_s=60, step_s=60, drain_s=120, poll_s=5))
        return orch.morph(MorphRequest(shape=shape, strategy=strategy))  # type: ignore[arg-type]

    def applied(self) -> list[list[tuple[str, str, str, int]]]:
        """The fleet each `pulumi up` applied, as (slot, shape, colour, weight)."""
        return [[(s["id"], s["shape"], s["colour"], s["weight"]) for s in json.loads(c["sculpt:fleet"])["slots"]]
                for c in self.cli.ups]

    def up_args(self) -> list[list[str]]:
        return [c for c in self.cli.calls if c[0] == "up"]


def test_process_double_morph_is_add_green_at_zero_then_shift_then_retire_blue(tmp_path: Path,
                                                                              moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    blue_id = rig.moto.ids["web-0"]
    rep = rig.morph()
    assert (rep.result, rep.strategy) == ("done", "blue-green"), rep.reason
    assert rig.applied() == [
        [("web-0", "m6i.large", "blue", 100)],                                           # sculpt up
        [("web-0", "m6i.large", "blue", 100), ("web-1", "c6i.large", "green", 0)],       # green at weight 0
        [("web-0", "m6i.large", "blue", 0), ("web-1", "c6i.large", "green", 100)],       # the shift
        [("web-1", "c6i.large", "green", 100)],                                          # blue retired
    ]
    assert [c["sculpt:version"] for c in rig.cli.ups] == ["1", "2", "3", "4"]
    assert rep.versions == [2, 3, 4]
    assert [json.loads(c["sculpt:fleet"])["spec"]["shape"] for c in rig.cli.ups][-1] == "c6i.large"
    # green was healthy in moto's target group before the shift; blue's instance is gone afterwards
    assert rig.platform.instances()["web-1"].healthy
    state = rig.moto.ec2.describe_instances(InstanceIds=[blue_id])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("shutting-down", "terminated")
    assert rig.engine.current().slots[0].id == "web-1"


def test_process_double_blue_drains_for_the_albs_drain_time_before_it_is_retired(tmp_path: Path,
                                                                                moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    rep = rig.morph()
    drain = next(s for s in rep.steps if s.state.value == "DRAIN_BLUE")
    assert drain.ended is not None and drain.ended - drain.started >= 30.0  # lb.drain_s on the fake clock


def test_process_double_a_failed_shift_rolls_back_to_blue(tmp_path: Path, moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    rig.cli.fail_up_at = {3}  # the third `up`: the weight shift
    rep = rig.morph()
    assert rep.result == "rolled_back"
    assert "InsufficientInstanceCapacity" in (rep.reason or "")
    applied = rig.applied()
    assert applied[2] == [("web-0", "m6i.large", "blue", 0), ("web-1", "c6i.large", "green", 100)]  # failed
    assert applied[3] == [("web-0", "m6i.large", "blue", 100)]  # the version the replica started from
    assert "--refresh" in rig.up_args()[3]
    assert "--expect-no-changes" in [c for c in rig.cli.calls if c[0] == "preview"][-1]
    assert rig.ledger.version("web", 3).result == "failed"
    assert [s.id for s in rig.engine.current().slots] == ["web-0"]
    assert "web-1" not in rig.moto.ids  # green's instance terminated by the re-applied version


def test_process_double_green_that_never_gets_healthy_is_removed(tmp_path: Path, moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    rig.moto.broken.add("web-1")  # stops after launch: moto's target health says 'unused', never 'healthy'
    rep = rig.morph()
    assert rep.result == "rolled_back"
    assert "web-1 did not become healthy" in (rep.reason or "")
    assert rig.applied()[-1] == [("web-0", "m6i.large", "blue", 100)]
    assert len(rig.cli.ups) == 3  # up, add green, roll back: no shift ever happened


def test_in_place_is_refused_a_cloud_resize_is_stop_modify_start(tmp_path: Path, moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    with pytest.raises(ConfigError, match="stop/modify/start"):
        rig.morph(strategy="in-place")
    assert len(rig.cli.ups) == 1


def test_cloud_blocker_refuses_unsafe_or_unbuilt_combinations() -> None:
    assert cloud_blocker(make_fleet("aws", **STATELESS).spec) is None
    assert "private addresses" in (cloud_blocker(make_fleet("aws").spec) or "")  # default sync: http
    assert cloud_blocker(make_fleet("aws").spec, private_reachable=True) is None
    volume = {"app": {"state_sync": {"strategy": "volume"}}}
    assert cloud_blocker(make_fleet("aws", **volume).spec) is None  # no private reachability needed
    assert "one instance at a time" in (cloud_blocker(make_fleet(
        "aws", replicas={"min": 1, "max": 3, "desired": 2}, **volume).spec) or "")
    assert "consistent hash" in (cloud_blocker(make_fleet("aws", lb={"routing": "hash"}, **volume).spec) or "")
    assert "not built" in (cloud_blocker(make_fleet("aws", app={"state_sync": {
        "strategy": "command", "checkpoint_command": "true", "restore_command": "true"}}).spec) or "")
    assert "consistent hash" in (cloud_blocker(make_fleet("aws", lb={"routing": "hash"}, **{
        "app": {"state_sync": {"strategy": "none"}}}).spec) or "")
    assert "built for AWS" in (cloud_blocker(make_fleet("gcp", **volume).spec) or "")  # an EBS volume


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL of the controller inside one process: nothing after it runs."""


def _crash() -> None:
    raise SimulatedCrash


def crash_at(rig: Rig, where: str) -> Any:
    """Run a morph whose controller dies on entering ``where``; returns the migration it left unfinished."""
    from sculpt.migrate import parse_faults

    orch = Orchestrator(rig.platform, rig.ledger, rig.clock, faults=parse_faults(f"crash-at:{where}"),
                        crash=_crash, timeouts=Timeouts(healthy_s=60, step_s=60, drain_s=120, poll_s=5))
    with pytest.raises(SimulatedCrash):
        orch.morph(MorphRequest(shape="c6i.large"))
    (migration,) = rig.ledger.unfinished_migrations("web")
    return migration


def _crash_then_recover(rig: Rig, where: str) -> Any:
    migration = crash_at(rig, where)
    # a new controller: a fresh platform (no memory of when blue's weight went to 0), the same stack
    fresh = CloudPlatform(rig.engine, clock=rig.clock, health=rig.platform._health)
    again = Orchestrator(fresh, rig.ledger, rig.clock, timeouts=Timeouts(healthy_s=60, step_s=60, drain_s=120,
                                                                          poll_s=5))
    return again.recover(migration)


def test_process_double_a_controller_crash_after_the_shift_rolls_forward_and_still_drains(
        tmp_path: Path, moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    rep = _crash_then_recover(rig, "RESUME")
    assert rep.result == "done"
    assert rig.applied()[-1] == [("web-1", "c6i.large", "green", 100)]
    drain = [s for s in rep.steps if s.state.value == "DRAIN_BLUE"][-1]
    assert drain.ended is not None and drain.ended - drain.started >= 30.0  # lb.drain_s, from first sight


def test_process_double_a_controller_crash_before_the_shift_rolls_back(tmp_path: Path, moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    rep = _crash_then_recover(rig, "WAIT_HEALTHY")
    assert rep.result == "rolled_back"
    assert rig.applied()[-1] == [("web-0", "m6i.large", "blue", 100)]
    assert "web-1" not in rig.moto.ids


def test_process_double_a_controller_crash_at_the_shift_rolls_forward(tmp_path: Path, moto_url: str) -> None:
    """Once SHIFT is journaled green may have taken writes (an ALB holds nothing): green is authoritative."""
    rig = Rig(tmp_path, moto_url)
    rep = _crash_then_recover(rig, "SHIFT")
    assert rep.result == "done", rep.reason
    assert rig.applied()[-1] == [("web-1", "c6i.large", "green", 100)]


def test_process_double_a_region_move_is_refused_by_the_engine_and_rolled_back(tmp_path: Path,
                                                                              moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    orch = Orchestrator(rig.platform, rig.ledger, rig.clock, timeouts=Timeouts(healthy_s=60, step_s=60, poll_s=5))
    rep = orch.morph(MorphRequest(shape="m6i.large", region="eu-west-1"))
    assert rep.result == "rolled_back"
    assert "cross-region blue/green on aws is not built yet" in (rep.reason or "")
    assert all(len(slots) == 1 for slots in rig.applied())  # green in eu-west-1 never reached `pulumi up`
    assert [s.id for s in rig.engine.current().slots] == ["web-0"]
