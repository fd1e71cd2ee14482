"""Hypothesis stateful test: random morphs with random faults at random steps keep the invariants.

Runs against the in-memory FAKE platform (a test double at the provider boundary, ``sculpt.migrate.fake``)
with client writes interleaved at every platform call; its hash routing is the load balancer's own ring
(``sculpt.domain.ring``, whose properties ``test_ring.py`` proves), so "one owner per key" below holds for
the algorithm production routes by. ``test_platform_contract.py`` keeps the fake's behaviour the real
platform's; the real path is covered by ``test_migrate_e2e.py``. Invariants, checked after every rule (and capacity at every fleet change):

- capacity never below ``replicas.min`` (the fake raises the moment it would be);
- one writer: never more writable serving instances than replicas (weighted), one owner per key (hash);
- no state lost: every acknowledged write reads back through the load balancer;
- nothing left half-done: no unfinished migration, the LB not paused, the stack and the instances agree.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sculpt.domain import FakeClock, Fleet
from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.domain.spec import parse_spec
from sculpt.ledger import Ledger
from sculpt.migrate import MorphRequest, Orchestrator, Timeouts, parse_faults
from sculpt.migrate.fake import FakePlatform
from sculpt.migrate.states import BLUE_GREEN_STEPS, IN_PLACE_STEPS

SHAPES = ("std-1c-1024m", "std-2c-2048m", "std-0.5c-512m")
STEPS = sorted({s.value for s in (*BLUE_GREEN_STEPS, *IN_PLACE_STEPS)})
FAULTS = st.one_of(
    st.just(""),
    st.sampled_from(["green-unhealthy", "restore-fails", "shift-fails"]),
    st.builds(lambda s: f"step-timeout:{s}", st.sampled_from(STEPS)),
    st.builds(lambda w, s: f"{w}:{s}", st.sampled_from(["crash-at", "crash-before"]), st.sampled_from(STEPS)),
    st.builds(lambda f: f"{f},crash-before:ROLLBACK", st.sampled_from(["green-unhealthy", "shift-fails",
                                                                        "step-timeout:DRAIN_BLUE"])),
    st.builds(lambda n: f"crash-at:{n}", st.integers(1, 20)),
)


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL of the controller."""


def _crash() -> None:
    raise SimulatedCrash


class MorphMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="sculpt-prop-"))
        self.ledger = Ledger(self.dir / "ledger.db")
        self.p: FakePlatform | None = None

    def teardown(self) -> None:
        self.ledger.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(replicas=st.integers(1, 3), hashed=st.booleans(), live=st.booleans(), seed=st.integers(0, 999))
    def start(self, replicas: int, hashed: bool, live: bool, seed: int) -> None:
        hashed = hashed or replicas > 1  # a stateful multi-replica fleet needs an owner per key
        spec = parse_spec({"fleet": "web", "shape": SHAPES[0], "region": "local-a", "regions": ["local-b"],
                           "replicas": {"min": replicas, "max": 5, "desired": replicas},
                           "lb": {"routing": "hash" if hashed else "weighted"}})
        self.p = FakePlatform(Fleet.from_spec(spec), keyed=hashed, live_resize=live, seed=seed, traffic=3)

    @rule(shape=st.sampled_from(SHAPES), region=st.sampled_from(["local-a", "local-b"]),
          strategy=st.sampled_from(["auto", "blue-green", "in-place"]), fault=FAULTS,
          apply_fails=st.one_of(st.none(), st.integers(1, 6)))
    def morph(self, shape: str, region: str, strategy: str, fault: str, apply_fails: int | None) -> None:
        p = self.p
        assert p is not None
        p.fail_apply_at = None if apply_fails is None else p.applies + apply_fails
        before = p.current()[1]
        o = Orchestrator(p, self.ledger, FakeClock(), faults=parse_faults(fault), crash=_crash,
                         timeouts=Timeouts(healthy_s=5, step_s=5, drain_s=1))
        try:
            rep = o.morph(MorphRequest(shape=shape, region=region, strategy=strategy))  # type: ignore[arg-type]
            assert rep.result in ("done", "rolled_back", "unchanged")
            if rep.result == "done":
                assert {(s.shape, s.region) for s in p.current()[1].slots} == {(shape, region)}
        except ConfigError:
            assert p.current()[1] == before  # refused up front: nothing touched
        except SimulatedCrash:
            p._tick()  # clients keep writing while the controller is dead
            self._recover(retry=True)
        finally:
            p.fail_apply_at = None

    def _recover(self, retry: bool) -> None:
        """What the next sculpt command does; if the provider still fails, the one after it tries again."""
        assert self.p is not None
        for m in self.ledger.unfinished_migrations("web"):
            o = Orchestrator(self.p, self.ledger, FakeClock(), timeouts=Timeouts(healthy_s=5, step_s=5, drain_s=1))
            try:
                o.recover(m)
            except ProviderError:
                if not retry:
                    raise
                assert self.ledger.unfinished_migrations("web"), "a failed recovery must stay recoverable"
                self.p.fail_apply_at = None
                self._recover(retry=False)

    @rule(n=st.integers(1, 5))
    def clients_write(self, n: int) -> None:
        assert self.p is not None
        for _ in range(n):
            self.p._tick()

    @invariant()
    def nothing_half_done(self) -> None:
        if self.p is None:
            return
        assert self.ledger.unfinished_migrations("web") == []
        assert not self.p.paused
        assert set(self.p.live) == {s.id for s in self.p.current()[1].slots}
        assert all(not i.readonly for i in self.p.live.values())

    @invariant()
    def capacity_and_one_writer(self) -> None:
        if self.p is None:
            return
        self.p.check_invariants()
        assert self.p.min_capacity_seen is None or self.p.min_capacity_seen >= self.p.min_replicas

    @invariant()
    def no_state_lost(self) -> None:
        if self.p is None:
            return
        assert self.p.lost_writes() == []
        assert self.p.failed == 0


MorphMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=6, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestMorphInvariants = MorphMachine.TestCase
