"""The ``Platform`` port's contract, run against the in-memory ``FakePlatform`` (alone and inside a
``FaultyPlatform`` that injects nothing) and the real ``LocalPlatform`` (an agent, a load balancer and two
demo-app processes, hash-routed).

The fake stands in for real processes in the property tests of the state machine; these tests are what
keeps it honest: one set of behaviours — versions, instances, probes, the pause, key ownership, checkpoint
and restore, the read-only switch — that both must show. The real cases share one stack per module and
only the version test starts a process, so the local side stays a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sculpt.domain.errors import ProviderError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import parse_spec
from sculpt.migrate.fake import FakePlatform
from sculpt.migrate.faults import AppliedButFailed, FaultyPlatform, parse_faults, with_faults
from sculpt.migrate.port import Checkpoint, Platform

SPEC = {"fleet": "ct", "shape": "std-0.5c-512m", "region": "local-a",
        "replicas": {"min": 1, "max": 4, "desired": 2}, "lb": {"routing": "hash"}}


@dataclass
class Rig:
    """A platform under test plus what the contract needs that the port does not offer: a client's write
    straight to one instance, and whether the load balancer holds requests now."""

    platform: Platform
    write: Callable[[str, str, str], bool]
    paused: Callable[[], bool]


def _fake_rig(wrap: bool) -> Rig:
    fake = FakePlatform(Fleet.from_spec(parse_spec(SPEC)), keyed=True, traffic=0)
    platform: Platform = FaultyPlatform(fake, parse_faults("")) if wrap else fake
    return Rig(platform, lambda slot, k, v: fake.live[slot].put(k, v) is not None, lambda: fake.paused)


@pytest.fixture(scope="module")
def local_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    import yaml

    from sculpt.catalog import local_catalog
    from sculpt.domain.spec import load_spec
    from sculpt.engine.local import LocalEngine
    from sculpt.ledger import Ledger
    from sculpt.migrate.local import LocalPlatform
    from sculpt.migrate.transport import http_call
    from sculpt.providers.local.provider import LocalProvider

    root = tmp_path_factory.mktemp("contract")
    (root / "sculpt.yaml").write_text(yaml.safe_dump(SPEC))
    home = root / "state"
    ledger = Ledger(home / "ledger.db")
    engine = LocalEngine("ct", ledger, local_catalog(), LocalProvider(home, "ct", timeout_s=30))
    engine.up(Fleet.from_spec(load_spec(root / "sculpt.yaml")), "contract stack")
    platform = LocalPlatform(engine, home)

    def write(slot: str, key: str, value: str) -> bool:
        address = platform.instances()[slot].address
        assert address is not None
        return http_call(address, "PUT", f"/kv/{key}", value.encode())[0] == 200

    try:
        yield Rig(platform, write, lambda: bool(platform.client.stats()["paused"]))
    finally:
        engine.destroy()
        ledger.close()


@pytest.fixture(params=["fake", "faulty-fake", pytest.param("local", marks=pytest.mark.e2e)])
def rig(request: pytest.FixtureRequest) -> Rig:
    if request.param == "local":
        return request.getfixturevalue("local_rig")  # type: ignore[no-any-return]
    return _fake_rig(wrap=request.param == "faulty-fake")


def _serving(fleet: Fleet) -> tuple[tuple[str, int], ...]:
    return tuple((s.id, s.weight) for s in fleet.slots if s.weight > 0)


# -- versions and instances -----------------------------------------------------------------------------
def test_instances_are_the_current_fleet_running_healthy(rig: Rig) -> None:
    p = rig.platform
    version, fleet = p.current()
    assert version >= 1 and fleet.name == p.stack == "ct"
    insts = p.instances()
    assert set(insts) == {s.id for s in fleet.slots}
    for s in fleet.slots:
        i = insts[s.id]
        assert (i.slot_id, i.shape, i.region, i.weight, i.healthy) == (s.id, s.shape, s.region, s.weight, True)
        assert p.probe(s.id)
    assert not p.probe("ct-no-such-slot")
    blocker = p.live_resize_blocker()
    assert blocker is None or (blocker and "\n" not in blocker)
    assert p.moves_volume() is False


def test_a_new_version_starts_a_slot_and_a_rollback_to_a_fleet_removes_it(rig: Rig) -> None:
    p = rig.platform
    base_version, base = p.current()
    green = Slot(id="ct-7", shape=base.slots[0].shape, region="local-a", colour="green", weight=0)
    target = base.with_slots([*base.slots, green])
    command = p.begin_command("morph", "contract: add ct-7", target)
    v = p.apply(target, "contract: add ct-7 at weight 0")
    assert p.current()[0] == v and [s.id for s in p.current()[1].slots] == [s.id for s in target.slots]
    assert "ct-7" in p.instances() and p.instances()["ct-7"].weight == 0
    deadline = time.monotonic() + 15
    while not p.probe("ct-7"):
        assert time.monotonic() < deadline, "the new slot never answered its health check"
        time.sleep(0.05)
    back = p.rollback(base_version, "contract: back", fleet=base)
    assert back >= v and p.current()[0] == back
    assert [s.id for s in p.current()[1].slots] == [s.id for s in base.slots]
    assert set(p.instances()) == {s.id for s in base.slots}
    if command is not None:  # a platform with command versions: the updates were steps of it
        assert command == v == back
        p.end_command(command, "succeeded", None)
        assert p.current()[0] == command


# -- traffic --------------------------------------------------------------------------------------------
def test_the_pause_holds_until_resume_and_resume_is_idempotent(rig: Rig) -> None:
    p = rig.platform
    ids = [s.id for s in p.current()[1].slots]
    p.resume()  # not paused: nothing to do
    assert not rig.paused()
    p.pause()
    try:
        assert rig.paused()
        assert p.wait_idle(ids, 2.0)  # nothing in flight
        assert p.wait_idle([], 0.0)
    finally:
        p.resume()
    assert not rig.paused()
    p.resume()
    assert not rig.paused()


def test_each_key_has_one_owner_in_the_ring_and_unrelated_changes_keep_it(rig: Rig) -> None:
    p = rig.platform
    assert p.keyed_routing() is True
    ring = _serving(p.current()[1])
    ids = {sid for sid, _ in ring}
    keys = [f"key-{i}" for i in range(300)]
    owners = {k: p.owner(k, ring) for k in keys}
    assert set(owners.values()) == ids  # every member owns some keys, and only members do
    assert all(p.owner(k, ring) == o for k, o in owners.items())  # the same answer every time
    grown = (*ring, ("ct-new", 100))
    for k, o in owners.items():
        assert p.owner(k, grown) in (o, "ct-new")  # a newcomer takes keys only for itself
    first = ring[0][0]
    shrunk = ring[1:]
    for k, o in owners.items():
        if o != first:
            assert p.owner(k, shrunk) == o  # a member leaving moves only its own keys
    with pytest.raises(ProviderError):
        p.owner("key-0", ())


# -- state ----------------------------------------------------------------------------------------------
def test_a_restore_reads_back_in_full_and_delta_checkpoints(rig: Rig) -> None:
    p = rig.platform
    slot = p.current()[1].slots[0].id
    s0 = p.checkpoint(slot).seq
    p.restore(slot, Checkpoint(s0 + 10, {"ct-a": "1", "ct-b": "2"}))
    full = p.checkpoint(slot)
    assert full.seq == s0 + 10 and {"ct-a": "1", "ct-b": "2"}.items() <= full.items.items()
    assert {"ct-a", "ct-b"} <= set(p.checkpoint(slot, since=s0).items)
    assert p.checkpoint(slot, since=full.seq).items == {}
    assert rig.write(slot, "ct-c", "3")
    delta = p.checkpoint(slot, since=full.seq)
    assert (delta.items, delta.deleted) == ({"ct-c": "3"}, ())
    p.restore(slot, Checkpoint(delta.seq + 5, {}, ("ct-a",)))
    assert "ct-a" not in p.checkpoint(slot).items
    assert p.checkpoint(slot, since=delta.seq).deleted == ("ct-a",)


def test_a_read_only_instance_refuses_writes_until_switched_back(rig: Rig) -> None:
    p = rig.platform
    slot = p.current()[1].slots[-1].id
    p.set_readonly(slot, True)
    try:
        assert not rig.write(slot, "ct-ro", "x")
    finally:
        p.set_readonly(slot, False)
    assert rig.write(slot, "ct-ro", "y")
    assert p.checkpoint(slot).items["ct-ro"] == "y"


def test_data_dirs_and_urls_are_absent_or_well_formed(rig: Rig) -> None:
    p = rig.platform
    for s in p.current()[1].slots:
        d = p.data_dir(s.id)
        assert d is None or isinstance(d, Path)
        url = p.instance_url(s.id)
        assert url is None or url.startswith("http://")


# -- the real thing only ----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_load_balancer_sends_each_key_to_the_owner_the_planner_names(local_rig: Rig) -> None:
    """The planner's ring is the LB's: a write through the LB lands on ``owner(key)`` and nowhere else."""
    from sculpt.migrate.transport import http_call

    p = local_rig.platform
    st = p.client.status()  # type: ignore[attr-defined]
    ring = _serving(p.current()[1])
    keys = [f"lb-{i}" for i in range(30)]
    for k in keys:
        assert http_call(st["lb"]["address"], "PUT", f"/kv/{k}", b"v")[0] == 200
    held = {sid: set(p.checkpoint(sid).items) for sid, _ in ring}
    for k in keys:
        o = p.owner(k, ring)
        assert k in held[o] and all(k not in ks for sid, ks in held.items() if sid != o), k


# -- the fault decorator ----------------------------------------------------------------------------------
def _fake() -> FakePlatform:
    return FakePlatform(Fleet.from_spec(parse_spec({**SPEC, "replicas": {"min": 1, "max": 4, "desired": 1}})),
                        keyed=True, traffic=0)


def test_no_platform_fault_means_no_wrapper() -> None:
    fake = _fake()
    assert with_faults(fake, parse_faults("crash-at:SHIFT,step-timeout")) is fake  # the machine's hooks
    assert isinstance(with_faults(fake, parse_faults("shift-fails")), FaultyPlatform)


def test_the_decorator_fails_probes_restores_and_shifts_of_any_platform() -> None:
    fake = _fake()
    p = FaultyPlatform(fake, parse_faults("green-unhealthy,restore-fails,shift-fails"))
    blue = p.current()[1].slots[0]
    assert fake.probe(blue.id) and not p.probe(blue.id)
    with pytest.raises(ProviderError, match=f"^injected fault: restore into {blue.id} failed"):
        p.restore(blue.id, Checkpoint(1, {"k": "v"}))
    assert "k" not in fake.live[blue.id].items  # it failed before writing anything
    green = Slot(id="ct-1", shape=blue.shape, region=blue.region, colour="green", weight=0)
    added = p.current()[1].with_slots([blue, green])
    assert p.apply(added, "add green") == p.current()[0]  # adding at weight 0 is no shift
    shifted = added.with_slots([blue.model_copy(update={"weight": 0}), green.model_copy(update={"weight": 100})])
    with pytest.raises(AppliedButFailed, match="injected fault: shift ct-0 -> ct-1 failed after the new weights") as e:
        p.apply(shifted, "shift")
    assert e.value.version == p.current()[0] and fake.live["ct-1"].weight == 100  # applied, then failed
