"""The morph state machine against the in-memory FAKE platform (a test double at the provider boundary).

These check the protocol's logic — journal order, rollback per fault, crash recovery decisions, capacity,
one writer, no lost write — for cases too many to run with real processes; ``test_migrate_e2e.py`` runs
the same paths for real. Time is a ``FakeClock``: a 30 s health timeout passes in no wall time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sculpt.domain import FakeClock, Fleet
from sculpt.domain.errors import ConfigError
from sculpt.domain.spec import parse_spec
from sculpt.ledger import Ledger
from sculpt.migrate import MorphRequest, Orchestrator, Timeouts, parse_faults
from sculpt.migrate.fake import FakePlatform
from sculpt.migrate.recovery import recover
from sculpt.migrate.states import BLUE_GREEN_STEPS, State


class SimulatedCrash(BaseException):
    """Stands in for SIGKILL inside one process: nothing after it runs, no except clause catches it."""


def crash() -> None:
    raise SimulatedCrash


def make(tmp_path: Path, *, replicas: int = 1, keyed: bool = False, live_resize: bool = False,
         seed: int = 0, **kw: Any) -> tuple[FakePlatform, Ledger]:
    spec = parse_spec({"fleet": "web", "shape": "std-1c-1024m", "region": "local-a", "regions": ["local-b"],
                       "replicas": {"min": replicas, "max": 5, "desired": replicas},
                       "lb": {"routing": "hash" if keyed else "weighted"}})
    p = FakePlatform(Fleet.from_spec(spec), keyed=keyed, live_resize=live_resize, seed=seed, **kw)
    return p, Ledger(tmp_path / "ledger.db")


def orch(p: FakePlatform, led: Ledger, fault: str = "", **kw: Any) -> Orchestrator:
    return Orchestrator(p, led, FakeClock(1000.0), faults=parse_faults(fault), crash=crash,
                        timeouts=Timeouts(healthy_s=30, step_s=30, drain_s=5), **kw)


def assert_safe(p: FakePlatform) -> None:
    assert not p.paused, "load balancer left paused"
    assert p.lost_writes() == []
    assert p.failed == 0
    assert all(not i.readonly for i in p.live.values() if i.weight > 0)
    assert set(p.live) == {s.id for s in p.current()[1].slots}, "instances and the stack disagree"


def test_blue_green_journals_every_state_before_taking_it_and_moves_all_state(tmp_path: Path) -> None:
    p, led = make(tmp_path)
    seen: list[str] = []
    rep = orch(p, led, progress=lambda s: seen.append(s.state.value) if s.ended is None else None).morph(
        MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert rep.result == "done" and rep.strategy == "blue-green"
    journal = [e.state for e in led.journal_entries(rep.migration_id) if not e.data.get("update")]
    assert journal == ["PLAN", *[s.value for s in BLUE_GREEN_STEPS], "DONE"]
    assert seen == [s.value for s in BLUE_GREEN_STEPS]
    assert led.migration(rep.migration_id).result == "done"
    (slot,) = p.current()[1].slots
    assert (slot.id, slot.shape, slot.colour, slot.weight) == ("web-1", "std-2c-2048m", "green", 100)
    assert p.current()[1].spec.shape == "std-2c-2048m"
    assert len(rep.versions) == 3  # add green, shift, retire blue: each a stack version
    assert p.max_serving_seen == 1 and p.min_capacity_seen == 1
    assert len(p.acked) > 10
    assert_safe(p)


@pytest.mark.parametrize("fault, failed_in", [
    ("green-unhealthy", State.WAIT_HEALTHY),
    ("restore-fails", State.SYNC_STATE),
    ("step-timeout", State.SYNC_STATE),
    ("step-timeout:PAUSE_FINAL_DELTA", State.PAUSE_FINAL_DELTA),
    ("shift-fails", State.SHIFT),
    ("step-timeout:DRAIN_BLUE", State.DRAIN_BLUE),
    ("step-timeout:RETIRE_BLUE", State.RETIRE_BLUE),
])
def test_each_fault_rolls_back_to_blue_with_nothing_lost(tmp_path: Path, fault: str, failed_in: State) -> None:
    p, led = make(tmp_path)
    base_version, base = p.current()
    rep = orch(p, led, fault).morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert rep.result == "rolled_back" and rep.reason
    states = [s.state for s in rep.steps]
    assert states[-2:] == [failed_in, State.ROLLBACK]
    assert [s.slots for s in [p.current()[1]]] == [base.slots]  # blue is back, green is gone
    m = led.migration(rep.migration_id)
    assert (m.result, m.state) == ("rolled_back", "ROLLED_BACK") and m.reason == rep.reason
    assert_safe(p)


def test_a_failing_provider_apply_rolls_back_too(tmp_path: Path) -> None:
    p, led = make(tmp_path, fail_apply_at=2)  # the shift's apply
    rep = orch(p, led).morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert rep.result == "rolled_back" and "apply #2 failed" in (rep.reason or "")
    assert_safe(p)


def test_in_place_is_refused_clearly_where_the_provider_cannot_resize_live(tmp_path: Path) -> None:
    p, led = make(tmp_path, live_resize=False)
    with pytest.raises(ConfigError, match="cannot morph in place.*To fix: use --strategy blue-green"):
        orch(p, led).morph(MorphRequest(shape="std-2c-2048m", strategy="in-place"))
    assert led.migrations("web") == []  # refused before anything started
    assert orch(p, led).morph(MorphRequest(shape="std-2c-2048m")).strategy == "blue-green"  # auto


def test_auto_resizes_in_place_when_it_can_and_region_changes_need_blue_green(tmp_path: Path) -> None:
    p, led = make(tmp_path, live_resize=True)
    rep = orch(p, led).morph(MorphRequest(shape="std-2c-2048m"))
    assert rep.strategy == "in-place" and rep.result == "done"
    assert [s.state for s in rep.steps] == [State.RESIZE, State.WAIT_HEALTHY]
    assert [(s.id, s.shape) for s in p.current()[1].slots] == [("web-0", "std-2c-2048m")]
    assert orch(p, led).morph(MorphRequest(region="local-b")).strategy == "blue-green"
    with pytest.raises(ConfigError, match="region changes"):
        orch(p, led).morph(MorphRequest(region="local-a", strategy="in-place"))
    assert_safe(p)


def test_nothing_to_do_is_reported_as_unchanged_without_a_migration(tmp_path: Path) -> None:
    p, led = make(tmp_path)
    assert orch(p, led).morph(MorphRequest(shape="std-1c-1024m")).result == "unchanged"
    assert led.migrations("web") == []


def test_multi_replica_hash_fleet_rolls_one_replica_at_a_time_and_moves_only_changed_keys(tmp_path: Path) -> None:
    p, led = make(tmp_path, replicas=3, keyed=True, traffic=4)
    restored: list[tuple[str, int]] = []
    real_restore = p.restore
    p.restore = lambda sid, cp: (restored.append((sid, len(cp.items))), real_restore(sid, cp))[1]  # type: ignore[method-assign]
    rep = orch(p, led).morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert rep.result == "done"
    assert [s.replica for s in rep.steps if s.state is State.SHIFT] == [0, 1, 2]
    assert {s.shape for s in p.current()[1].slots} == {"std-2c-2048m"}
    assert p.min_capacity_seen == 3 and p.max_serving_seen == 3
    total_keys_moved = sum(n for _, n in restored)
    assert 0 < total_keys_moved
    assert_safe(p)


def test_weighted_multi_replica_stateful_fleets_are_refused(tmp_path: Path) -> None:
    p, led = make(tmp_path, replicas=2)
    with pytest.raises(ConfigError, match="lb.routing: hash"):
        orch(p, led).morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))


@pytest.mark.parametrize("state", [s.value for s in BLUE_GREEN_STEPS])
@pytest.mark.parametrize("when", ["crash-at", "crash-before"])
def test_a_crash_at_any_step_is_recovered_from_the_journal(tmp_path: Path, state: str, when: str) -> None:
    p, led = make(tmp_path)
    with pytest.raises(SimulatedCrash):
        orch(p, led, f"{when}:{state}").morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    (m,) = led.unfinished_migrations("web")
    p._tick()  # clients keep writing while nobody is in charge
    rep = orch(p, led).recover(m)
    assert led.unfinished_migrations("web") == []
    # once SHIFT is journaled green is authoritative: recovery rolls forward
    forward = State(state) in (State.SHIFT, State.RESUME, State.DRAIN_BLUE, State.RETIRE_BLUE)
    assert rep.result == ("done" if forward else "rolled_back")
    assert {s.shape for s in p.current()[1].slots} == {"std-2c-2048m" if forward else "std-1c-1024m"}
    assert_safe(p)


def test_recover_skips_migrations_whose_controller_is_alive_and_finishes_orphans(tmp_path: Path) -> None:
    p, led = make(tmp_path)
    with pytest.raises(SimulatedCrash):
        orch(p, led, "crash-at:PAUSE_FINAL_DELTA").morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert p.paused
    # the "dead" controller is this very process: recover() leaves it alone ...
    assert recover(tmp_path, "web", platform=p, ledger=led, clock=FakeClock()) == []
    # ... until its pid is gone
    (m,) = led.unfinished_migrations("web")
    led._conn().execute("UPDATE migrations SET pid=? WHERE id=?", (2**22 + 12345, m.id))
    (rep,) = recover(tmp_path, "web", platform=p, ledger=led, clock=FakeClock())
    assert rep.result == "rolled_back" and "PAUSE_FINAL_DELTA" in (rep.reason or "")
    assert_safe(p)


@pytest.mark.parametrize("fault", ["shift-fails", "step-timeout:DRAIN_BLUE", "green-unhealthy"])
def test_a_crash_during_the_rollback_itself_is_finished_by_recovery(tmp_path: Path, fault: str) -> None:
    p, led = make(tmp_path)
    with pytest.raises(SimulatedCrash):
        orch(p, led, f"{fault},crash-before:ROLLBACK").morph(MorphRequest(shape="std-2c-2048m",
                                                                         strategy="blue-green"))
    (m,) = led.unfinished_migrations("web")
    assert m.state == "ROLLBACK"
    assert orch(p, led).recover(m).result == "rolled_back"
    assert {s.shape for s in p.current()[1].slots} == {"std-1c-1024m"}
    assert_safe(p)


@pytest.mark.parametrize("boom", [KeyError("bug"), KeyboardInterrupt()])
def test_unexpected_errors_and_ctrl_c_roll_back_too(tmp_path: Path, boom: BaseException) -> None:
    p, led = make(tmp_path)
    real = p.checkpoint

    def failing(*a: Any, **k: Any) -> Any:
        if p.paused:
            raise boom
        return real(*a, **k)

    p.checkpoint = failing  # type: ignore[method-assign]
    o = orch(p, led)
    if isinstance(boom, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            o.morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    else:
        o.morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert o.report is not None and o.report.result == "rolled_back"
    assert (o.report.reason or "").startswith("interrupted" if isinstance(boom, KeyboardInterrupt) else
                                             "internal error: KeyError")
    p.checkpoint = real  # type: ignore[method-assign]
    assert_safe(p)


def test_a_rollback_that_fails_leaves_the_migration_for_recovery_with_a_one_line_error(tmp_path: Path) -> None:
    from sculpt.domain.errors import ProviderError

    p, led = make(tmp_path)
    real_rollback = p.rollback
    p.rollback = lambda v, msg, fleet=None: (_ for _ in ()).throw(ProviderError("agent gone", "restart it"))  # type: ignore[method-assign]
    with pytest.raises(ProviderError, match="rolling it back failed too: agent gone.*To fix: run any sculpt"):
        orch(p, led, "restore-fails").morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert not p.paused
    (m,) = led.unfinished_migrations("web")
    p.rollback = real_rollback  # type: ignore[method-assign]
    assert orch(p, led).recover(m).result == "rolled_back"
    assert_safe(p)


def test_a_resume_that_released_traffic_and_then_failed_copies_greens_writes_back(tmp_path: Path) -> None:
    from sculpt.domain.errors import ProviderError

    p, led = make(tmp_path, traffic=6)
    real_resume = p.resume
    calls = {"n": 0}

    def resume_then_fail() -> None:
        real_resume()  # traffic flowed to green ...
        calls["n"] += 1
        if calls["n"] == 1:
            raise ProviderError("agent hiccup after resuming", "retry")  # ... but the call reports failure

    p.resume = resume_then_fail  # type: ignore[method-assign]
    rep = orch(p, led).morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert rep.result == "rolled_back" and [s.state for s in rep.steps][-2:] == [State.RESUME, State.ROLLBACK]
    assert {s.shape for s in p.current()[1].slots} == {"std-1c-1024m"}
    assert_safe(p)
