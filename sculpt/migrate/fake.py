"""An in-memory FAKE of the migration ``Platform`` port, for property tests of the state machine.

Why it exists: the invariants of a morph (capacity never below the minimum, one writer per key, no
acknowledged write lost) must hold for *every* interleaving of faults and steps, which is too many cases
to run against real processes. This fake keeps versions, instances with key–value state and seq numbers
(the demo app's checkpoint semantics), and a load balancer with weights, consistent-hash routing (the
real load balancer's ring, ``sculpt.domain.ring``: first healthy member clockwise) and a pause that holds
requests. Every port call lets some seeded client traffic through, so writes interleave
with every step. It is a test double at the provider boundary — never used by ``sculpt`` itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sculpt.domain.errors import ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.domain.ring import ring_of
from sculpt.migrate.port import Checkpoint, Instance, VersionPerUpdate


class InvariantBroken(AssertionError):
    """The fake saw a state a morph must never produce."""


@dataclass
class FakeInstance:
    slot_id: str
    shape: str
    region: str
    weight: int
    healthy: bool = True
    readonly: bool = False
    seq: int = 0
    items: dict[str, tuple[int, str]] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    def put(self, key: str, value: str) -> int | None:
        if self.readonly:
            return None
        self.seq += 1
        self.items[key] = (self.seq, value)
        self.deleted.pop(key, None)
        return self.seq

    def checkpoint(self, since: int | None) -> Checkpoint:
        lo = -1 if since is None else since
        return Checkpoint(self.seq, {k: v for k, (s, v) in self.items.items() if s > lo},
                          tuple(k for k, s in self.deleted.items() if s > lo) if since is not None else ())

    def restore(self, cp: Checkpoint) -> None:
        self.seq = max(self.seq, cp.seq)
        for k, v in cp.items.items():
            self.items[k] = (self.seq, v)
            self.deleted.pop(k, None)
        for k in cp.deleted:
            if self.items.pop(k, None) is not None:
                self.deleted[k] = self.seq


class FakePlatform(VersionPerUpdate):
    """FAKE platform (see module docstring). ``traffic`` writes happen at every port call."""

    def __init__(self, fleet: Fleet, *, keyed: bool = False, live_resize: bool = True, seed: int = 0,
                 traffic: int = 2, fail_apply_at: int | None = None, unhealthy_slots: Sequence[str] = ()) -> None:
        self.stack = fleet.name
        self.keyed = keyed
        self.live_resize = live_resize
        self.rng = random.Random(seed)
        self.traffic = traffic
        self.fail_apply_at = fail_apply_at
        self.unhealthy_slots = set(unhealthy_slots)
        self.versions: list[tuple[Fleet, str]] = []
        self.live: dict[str, FakeInstance] = {}
        self.paused = False
        self.held: list[tuple[str, str]] = []
        self.acked: dict[str, str] = {}
        self.failed = 0
        self.applies = 0
        self.min_capacity_seen: int | None = None
        self.max_serving_seen = 0
        self._next_value = 0
        self.min_replicas = fleet.spec.replicas.min
        self._reconcile(fleet)
        self.versions.append((fleet, "succeeded"))

    # -- client traffic (what the load generator would do) ------------------------------------------------
    def client_put(self, key: str, value: str) -> None:
        if self.paused:
            self.held.append((key, value))
            return
        self._deliver(key, value)

    def _deliver(self, key: str, value: str) -> None:
        target = self.route(key)
        seq = target.put(key, value) if target is not None else None
        if seq is None:
            self.failed += 1
        else:
            self.acked[key] = value

    def route(self, key: str) -> FakeInstance | None:
        if self.keyed:  # as the LB: the ring of every member with weight, the first healthy one clockwise
            ring = ring_of(tuple((i.slot_id, i.weight) for i in self.live.values()))
            sid = ring.owner(key, healthy={i.slot_id: i.healthy for i in self.live.values()})
            return None if sid is None else self.live[sid]
        serving = [i for i in self.live.values() if i.weight > 0 and i.healthy]
        if not serving:
            return None
        return self.rng.choices(serving, weights=[i.weight for i in serving])[0]

    def read(self, key: str) -> str | None:
        inst = self.route(key)
        got = inst.items.get(key) if inst is not None else None
        return got[1] if got else None

    def _tick(self) -> None:
        for _ in range(self.traffic):
            self._next_value += 1
            self.client_put(f"k{self.rng.randrange(40)}", f"v{self._next_value}")
        self.check_invariants()

    def check_invariants(self) -> None:
        serving = [i for i in self.live.values() if i.weight > 0 and i.healthy]
        n = len(serving)
        self.min_capacity_seen = n if self.min_capacity_seen is None else min(self.min_capacity_seen, n)
        self.max_serving_seen = max(self.max_serving_seen, n)
        if n < self.min_replicas:
            raise InvariantBroken(f"capacity {n} below the minimum {self.min_replicas}")
        if not self.keyed:
            writable = [i for i in serving if not i.readonly]
            desired = self.versions[-1][0].spec.replicas.desired if self.versions else n
            if len(writable) > desired:
                raise InvariantBroken(f"{len(writable)} writable serving instances for {desired} replicas")

    def lost_writes(self) -> list[str]:
        """Acknowledged keys whose latest value a read through the load balancer does not return."""
        if self.paused:
            raise InvariantBroken("load balancer left paused")
        return [k for k, v in self.acked.items() if self.read(k) != v]

    # -- the port -------------------------------------------------------------------------------------------
    def current(self) -> tuple[int, Fleet]:
        for n in range(len(self.versions), 0, -1):
            fleet, result = self.versions[n - 1]
            if result == "succeeded":
                return n, fleet
        raise ProviderError("no version", "up first")

    def apply(self, fleet: Fleet, message: str) -> int:
        self._tick()
        self.applies += 1
        if self.fail_apply_at is not None and self.applies == self.fail_apply_at:
            self.versions.append((fleet, "failed"))
            raise ProviderError(f"fake provider: apply #{self.applies} failed", "retry")
        self._reconcile(fleet)
        self.versions.append((fleet, "succeeded"))
        self._tick()
        return len(self.versions)

    def rollback(self, version: int, message: str, fleet: Fleet | None = None) -> int:
        fleet, _ = self.versions[version - 1]
        self._reconcile(fleet)
        self.versions.append((fleet, "succeeded"))
        self._tick()
        return len(self.versions)

    def _reconcile(self, fleet: Fleet) -> None:
        want = {s.id: s for s in fleet.slots}
        # start new slots first, then update weights, then stop removed ones (capacity never dips).
        for sid, s in want.items():
            if sid not in self.live:
                self.live[sid] = FakeInstance(sid, s.shape, s.region, 0, healthy=sid not in self.unhealthy_slots)
        for sid, s in want.items():
            inst = self.live[sid]
            if inst.shape != s.shape:
                if not self.live_resize:
                    raise ProviderError("fake provider cannot resize live", "blue-green")
                inst.shape = s.shape
            inst.weight = s.weight
        for sid in [k for k in self.live if k not in want]:
            del self.live[sid]
        self.check_invariants()

    def instances(self) -> dict[str, Instance]:
        self._tick()
        return {k: Instance(k, i.shape, i.region, i.healthy, i.weight) for k, i in self.live.items()}

    def probe(self, slot_id: str) -> bool:
        inst = self.live.get(slot_id)
        return inst is not None and inst.healthy

    def pause(self) -> None:
        self._tick()
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        held, self.held = self.held, []
        for k, v in held:
            self._deliver(k, v)
        self._tick()

    def wait_idle(self, slot_ids: Sequence[str], timeout_s: float) -> bool:
        return True

    def live_resize_blocker(self) -> str | None:
        return None if self.live_resize else "the fake provider was told it cannot resize live"

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        sid = ring_of(tuple(ring)).owner(key)
        if sid is None:
            raise ProviderError("no slot takes traffic", "give a slot a weight above 0")
        return sid

    def keyed_routing(self) -> bool:
        return self.keyed

    def checkpoint(self, slot_id: str, since: int | None = None) -> Checkpoint:
        self._tick()
        return self.live[slot_id].checkpoint(since)

    def restore(self, slot_id: str, checkpoint: Checkpoint) -> None:
        self.live[slot_id].restore(checkpoint)
        self._tick()

    def set_readonly(self, slot_id: str, on: bool) -> None:
        self.live[slot_id].readonly = on

    def moves_volume(self) -> bool:
        return False

    def data_dir(self, slot_id: str) -> Path | None:
        return None

    def instance_url(self, slot_id: str) -> str | None:
        return None
