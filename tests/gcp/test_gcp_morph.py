"""A blue/green morph on GCP (``engine: pulumi``): every step is a ``pulumi up``, health is the MIG's.

Real parts: the orchestrator, ``GcpPlatform`` (on ``CloudPlatform``), the Compute API client over HTTP, the
PulumiEngine and the SDK's Automation API code, the ledger. Doubles: the ``pulumi`` CLI process
(tests/pulumi/cli_double.py), whose updates tests/gcp/fake_compute.py plays into a double of the Compute
API on 127.0.0.1. **Nothing here ran the real Pulumi CLI or GCP**: that a weight-0 backend's instances are
health-checked, that the URL map update shifts traffic without dropping requests, and how MIGs really name,
create and delete instances are Pulumi's and Google's behaviour, not tested here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi", reason="the gcp extra is not installed")

from sculpt.domain.clock import FakeClock  # noqa: E402
from sculpt.domain.errors import ConfigError  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from sculpt.migrate import MorphRequest, Orchestrator, Timeouts  # noqa: E402
from sculpt.migrate.cloud import cloud_blocker  # noqa: E402
from sculpt.migrate.gcp import GcpPlatform  # noqa: E402
from tests.gcp.fake_compute import FakeCompute, FakeGcpStack  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402
from tests.pulumi.conftest import make_fleet  # noqa: E402

STATELESS = {"app": {"state_sync": {"strategy": "none"}}, "lb": {"drain_s": 30}, "gcp_project": "sculpt-test"}
TIMEOUTS = Timeouts(healthy_s=60, step_s=60, drain_s=120, poll_s=5)


class Rig:
    def __init__(self, tmp_path: Path, compute: FakeCompute, *, reachable: bool = False,
                 ips: dict[str, str] | None = None, **spec: Any) -> None:
        self.compute = compute
        self.stack = FakeGcpStack(compute)
        self.stack.ip_of = dict(ips or {})
        self.cli = PulumiProcessDouble(render=self.stack.render)
        self.fleet = make_fleet("gcp", **{**STATELESS, **spec})
        self.ledger = Ledger(tmp_path / "ledger.db")
        self.engine = PulumiEngine(self.fleet.spec, tmp_path, self.ledger, command=self.cli)
        self.engine.up(self.fleet, "first")
        self.clock = FakeClock(1_000.0)
        self.platform = GcpPlatform(self.engine, clock=self.clock, private_reachable=reachable)

    def morph(self, shape: str = "n2-highcpu-4", **kw: Any) -> Any:
        orch = Orchestrator(self.platform, self.ledger, self.clock, timeouts=TIMEOUTS, **kw)
        return orch.morph(MorphRequest(shape=shape))

    def applied(self) -> list[list[tuple[str, str, str, int]]]:
        """The fleet each `pulumi up` applied, as (slot, shape, colour, weight)."""
        return [[(s["id"], s["shape"], s["colour"], s["weight"]) for s in json.loads(c["sculpt:fleet"])["slots"]]
                for c in self.cli.ups]

    def live_vms(self) -> dict[str, str]:
        """Instance name -> group name, of instances the fake MIGs still keep and are not deleting."""
        return {vm.name: key[2] for key, vms in self.compute.groups.items() for vm in vms.values() if not vm.deleting}


def _step(rep: Any, state: str) -> Any:
    return [s for s in rep.steps if s.state.value == state][-1]


def test_process_double_morph_is_add_green_at_zero_then_shift_then_retire_blue(tmp_path: Path,
                                                                              compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    blue_vm = rig.stack.vm("web-0").name
    rep = rig.morph()
    assert (rep.result, rep.strategy) == ("done", "blue-green"), rep.reason
    assert rig.applied() == [
        [("web-0", "n2-standard-2", "blue", 100)],                                            # sculpt up
        [("web-0", "n2-standard-2", "blue", 100), ("web-1", "n2-highcpu-4", "green", 0)],     # green at weight 0
        [("web-0", "n2-standard-2", "blue", 0), ("web-1", "n2-highcpu-4", "green", 100)],     # the shift
        [("web-1", "n2-highcpu-4", "green", 100)],                                            # blue retired
    ]
    assert rep.versions == [2, 3, 4]
    assert {c["gcp:project"] for c in rig.cli.ups} == {"sculpt-test"}  # the spec's project, to the provider
    # green was polled while its instance booted (CREATING) and counted healthy only once RUNNING + HEALTHY
    wait = _step(rep, "WAIT_HEALTHY")
    assert wait.ended - wait.started >= TIMEOUTS.poll_s
    green_group = rig.stack.group_names["green"]
    assert green_group in compute.listings()
    assert all(path.startswith("/compute/v1/projects/sculpt-test/") for _, path, _, _ in compute.requests)
    assert {auth for *_, auth in compute.requests} == {"Bearer fake-token"}
    # blue drained for lb.drain_s, then its instance was deleted; green's instance serves
    drain = _step(rep, "DRAIN_BLUE")
    assert drain.ended - drain.started >= 30.0
    assert blue_vm not in rig.live_vms()
    assert rig.live_vms() == {rig.stack.vm("web-1").name: green_group}
    inst = rig.platform.instances()["web-1"]
    assert inst.healthy and inst.address is None  # no address looked up: the controller may not reach it
    assert not any(m == "GET" for m, *_ in compute.requests)


def test_process_double_green_that_never_gets_healthy_is_removed(tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    rig.stack.broken.add("web-1")  # RUNNING, but its autohealing health check says UNHEALTHY
    rep = rig.morph()
    assert rep.result == "rolled_back"
    assert "web-1 did not become healthy" in (rep.reason or "")
    assert rig.applied()[-1] == [("web-0", "n2-standard-2", "blue", 100)]
    assert len(rig.cli.ups) == 3  # up, add green, roll back: no shift ever happened
    assert "--refresh" in [c for c in rig.cli.calls if c[0] == "up"][-1]
    assert set(rig.live_vms()) == {rig.stack.vm("web-0").name}  # green's instance deleted


def test_process_double_a_failed_shift_rolls_back_to_blue(tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    rig.cli.fail_up_at = {3}  # the third `up`: the weight shift
    rep = rig.morph()
    assert rep.result == "rolled_back"
    applied = rig.applied()
    assert applied[2] == [("web-0", "n2-standard-2", "blue", 0), ("web-1", "n2-highcpu-4", "green", 100)]  # failed
    assert applied[3] == [("web-0", "n2-standard-2", "blue", 100)]  # the version the replica started from
    assert "--expect-no-changes" in [c for c in rig.cli.calls if c[0] == "preview"][-1]
    assert rig.ledger.version("web", 3).result == "failed"
    assert [s.id for s in rig.engine.current().slots] == ["web-0"]
    assert set(rig.live_vms()) == {rig.stack.vm("web-0").name}


def test_process_double_a_compute_api_that_refuses_rolls_back_without_asking_it_again(
        tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    compute.forbidden = True  # the caller lacks compute.instanceGroupManagers.get
    rep = rig.morph()
    assert rep.result == "rolled_back"
    reason = rep.reason or ""
    assert "HTTP 403" in reason and "compute.instanceGroupManagers.get" in reason and "\n" not in reason
    assert len(compute.requests) == 1  # WAIT_HEALTHY's listing; a 403 is not retried, and green took no
    #                                    traffic, so the rollback re-applies blue without reading instances
    assert rig.applied()[-1] == [("web-0", "n2-standard-2", "blue", 100)]
    assert rig.ledger.unfinished_migrations("web") == []


def test_process_double_two_replicas_roll_one_at_a_time_and_the_newest_slot_waits_for_its_instance(
        tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute, replicas={"min": 1, "max": 3, "desired": 2})
    # the green group, web-2's instance, web-3's instance: web-3's sorts *before* web-2's by name
    rig.stack.suffixes = iter(["grp", "zzzz", "aaaa"])
    rep = rig.morph()
    assert rep.result == "done", rep.reason
    assert rig.applied()[-1] == [("web-2", "n2-highcpu-4", "green", 100), ("web-3", "n2-highcpu-4", "green", 100)]
    assert [w for w in rig.applied()[1:] if len(w) == 3] == [  # one replica at a time: add green, shift
        [("web-0", "n2-standard-2", "blue", 100), ("web-1", "n2-standard-2", "blue", 100),
         ("web-2", "n2-highcpu-4", "green", 0)],
        [("web-0", "n2-standard-2", "blue", 0), ("web-1", "n2-standard-2", "blue", 100),
         ("web-2", "n2-highcpu-4", "green", 100)],
        [("web-1", "n2-standard-2", "blue", 100), ("web-2", "n2-highcpu-4", "green", 100),
         ("web-3", "n2-highcpu-4", "green", 0)],
        [("web-1", "n2-standard-2", "blue", 0), ("web-2", "n2-highcpu-4", "green", 100),
         ("web-3", "n2-highcpu-4", "green", 100)],
    ]
    second_wait = [s for s in rep.steps if s.state.value == "WAIT_HEALTHY"][1]
    assert second_wait.ended - second_wait.started >= TIMEOUTS.poll_s  # web-3 waited for the booting instance


def test_process_double_the_newest_slot_is_not_healthy_because_an_older_instance_is(
        tmp_path: Path, compute: FakeCompute) -> None:
    """Matching by name alone would give web-3 the healthy 'zzzz' instance and shift traffic to a broken one."""
    rig = Rig(tmp_path, compute, replicas={"min": 1, "max": 3, "desired": 2})
    rig.stack.suffixes = iter(["grp", "zzzz", "aaaa"])
    rig.stack.broken.add("web-3")
    rep = rig.morph()
    assert rep.result == "rolled_back"
    assert "web-3 did not become healthy" in (rep.reason or "")
    assert [s.id for s in rig.engine.current().slots] == ["web-1", "web-2"]  # replica 0 stays moved


def test_in_place_is_refused_on_gcp(tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    orch = Orchestrator(rig.platform, rig.ledger, rig.clock, timeouts=TIMEOUTS)
    with pytest.raises(ConfigError, match="stop/modify/start"):
        orch.morph(MorphRequest(shape="n2-highcpu-4", strategy="in-place"))
    assert len(rig.cli.ups) == 1


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL of the controller inside one process: nothing after it runs."""


def _crash() -> None:
    raise SimulatedCrash


def _crash_then_recover(rig: Rig, where: str) -> Any:
    from sculpt.migrate import parse_faults

    with pytest.raises(SimulatedCrash):
        rig.morph(faults=parse_faults(f"crash-at:{where}"), crash=_crash)
    (migration,) = rig.ledger.unfinished_migrations("web")
    fresh = GcpPlatform(rig.engine, clock=rig.clock)  # a new controller: no memory of when blue hit weight 0
    return Orchestrator(fresh, rig.ledger, rig.clock, timeouts=TIMEOUTS).recover(migration)


def test_process_double_a_controller_crash_after_the_shift_rolls_forward_and_still_drains(
        tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    rep = _crash_then_recover(rig, "RESUME")
    assert rep.result == "done"
    assert rig.applied()[-1] == [("web-1", "n2-highcpu-4", "green", 100)]
    drain = _step(rep, "DRAIN_BLUE")
    assert drain.ended - drain.started >= 30.0  # lb.drain_s, from first sight


def test_process_double_a_controller_crash_before_the_shift_rolls_back(tmp_path: Path,
                                                                      compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    rep = _crash_then_recover(rig, "WAIT_HEALTHY")
    assert rep.result == "rolled_back"
    assert rig.applied()[-1] == [("web-0", "n2-standard-2", "blue", 100)]
    assert set(rig.live_vms()) == {rig.stack.vm("web-0").name}


def test_process_double_a_controller_crash_at_the_shift_rolls_forward(tmp_path: Path, compute: FakeCompute) -> None:
    """Once SHIFT is journaled green may have taken writes: green is authoritative, recovery rolls forward."""
    rig = Rig(tmp_path, compute)
    rep = _crash_then_recover(rig, "SHIFT")
    assert rep.result == "done", rep.reason
    assert rig.applied()[-1] == [("web-1", "n2-highcpu-4", "green", 100)]


def test_the_project_comes_from_the_providers_environment_when_the_spec_has_none(
        tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_PROJECT", "from-env-project")
    rig = Rig(tmp_path, compute, gcp_project=None)
    assert "gcp:project" not in rig.cli.ups[0]
    rep = rig.morph()
    assert rep.result == "done", rep.reason
    assert all("/projects/from-env-project/" in path for _, path, _, _ in compute.requests)


def test_without_any_project_the_platform_says_how_to_set_one(tmp_path: Path, compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute, gcp_project=None)  # neither the spec, the outputs nor the environment
    with pytest.raises(ConfigError, match="GCP project of stack 'web' is not known") as e:
        rig.platform.instances()
    assert "gcp_project" in str(e.value) and "\n" not in str(e.value)


def test_cloud_blocker_on_gcp_allows_weighted_stateless_and_reachable_http_only() -> None:
    def why(reachable: bool = False, **spec: Any) -> str:
        return cloud_blocker(make_fleet("gcp", **spec).spec, private_reachable=reachable) or ""

    assert why(app={"state_sync": {"strategy": "none"}}) == ""
    assert "private addresses" in why() and "GCP URL map cannot pause" in why()  # default sync: http
    assert why(reachable=True) == ""
    assert "consistent hash" in why(lb={"routing": "hash"}, app={"state_sync": {"strategy": "none"}})
    assert "volume" in why(reachable=True, app={"state_sync": {"strategy": "volume"}})
    assert "command" in why(reachable=True, app={"state_sync": {"strategy": "command"}})


@pytest.mark.e2e
def test_http_sync_moves_state_between_the_instances_private_addresses_when_reachable(
        tmp_path: Path, compute: FakeCompute) -> None:
    """Two real demo app processes stand in for the MIG instances, on 127.0.0.2 and 127.0.0.3 (one port)."""
    from sculpt.demoapp.server import spawn
    from tests.helpers import http

    blue, port = spawn(tmp_path / "blue", "blue", host="127.0.0.2")
    green, _ = spawn(tmp_path / "green", "green", host="127.0.0.3", port=port)
    try:
        def call(host: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
            return http(method, f"http://{host}:{port}{path}", body)

        for i in range(5):
            assert call("127.0.0.2", "PUT", f"/kv/k{i}", f"v{i}".encode())[0] == 200
        rig = Rig(tmp_path, compute, reachable=True, ips={"web-0": "127.0.0.2", "web-1": "127.0.0.3"},
                  app={"port": port, "state_sync": {"strategy": "http"}}, lb={"drain_s": 0})
        blue_vm = rig.stack.vm("web-0").name
        rep = rig.morph()
        assert rep.result == "done", rep.reason
        assert [call("127.0.0.3", "GET", f"/kv/k{i}") for i in range(5)] == [(200, f"v{i}".encode())
                                                                             for i in range(5)]
        assert call("127.0.0.2", "PUT", "/kv/late", b"x")[0] == 503  # blue went read-only for the handover
        gets = [path for m, path, _, _ in compute.requests if m == "GET"]
        assert {p.rsplit("/", 1)[-1] for p in gets} == {blue_vm, rig.stack.vm("web-1").name}
        assert len(gets) == 2  # one networkIP read per instance, then kept
    finally:
        for p in (blue, green):
            p.terminate()
            p.wait(timeout=10)


def test_http_sync_without_reachability_refuses_to_touch_private_addresses(tmp_path: Path,
                                                                           compute: FakeCompute) -> None:
    rig = Rig(tmp_path, compute)
    with pytest.raises(ConfigError, match="cannot reach web-0's private address"):
        rig.platform.checkpoint("web-0")
    assert not any(m == "GET" for m, *_ in compute.requests)
