"""Green is authoritative once the shift was requested; a rollback is a morph to a target fleet; the
controller bounds its pause. Against the in-memory FAKE platform (a test double at the provider boundary);
the same paths run for real in tests/statesafety/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sculpt.domain import FakeClock, Fleet
from sculpt.domain.errors import ProviderError
from sculpt.domain.fleet import Slot
from sculpt.migrate import MorphRequest
from sculpt.migrate.orchestrator import Interrupted
from sculpt.migrate.states import State
from tests.migrate.test_migrate_fake import SimulatedCrash, assert_safe, make, orch


def test_a_crash_at_shift_whose_pause_was_released_rolls_forward_and_keeps_greens_writes(tmp_path: Path) -> None:
    p, led = make(tmp_path, traffic=4)
    with pytest.raises(SimulatedCrash):
        orch(p, led, "crash-at:SHIFT").morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    # nobody in charge: the lease ran out and the LB released the held requests onto green
    p.resume()
    for _ in range(5):
        p._tick()
    green_only = [k for k, v in p.acked.items() if p.live[next(s for s in p.live if s != "web-0")].items.get(k, (0, ""))[1] == v
                  and p.live["web-0"].items.get(k, (0, ""))[1] != v]
    assert green_only, "the test must make green take writes blue does not have"
    (m,) = led.unfinished_migrations("web")
    rep = orch(p, led).recover(m)
    assert rep.result == "done"
    assert {s.shape for s in p.current()[1].slots} == {"std-2c-2048m"}
    assert_safe(p)


def test_a_rollback_after_the_shift_that_cannot_reach_green_undoes_nothing_and_recovery_rolls_forward(
        tmp_path: Path) -> None:
    p, led = make(tmp_path, traffic=3)
    real_instances = p.instances
    state = {"hide": False}

    def instances():  # type: ignore[no-untyped-def]
        got = real_instances()
        return {k: v for k, v in got.items() if k == "web-0"} if state["hide"] else got

    def resume_then_fail() -> None:
        type(p).resume(p)
        state["hide"] = True  # green cannot be reached any more (its agent round trips fail)
        raise ProviderError("agent hiccup after resuming", "retry")

    p.instances = instances  # type: ignore[method-assign]
    p.resume = resume_then_fail  # type: ignore[method-assign]
    with pytest.raises(ProviderError, match="rolling it back failed too.*cannot be reached"):
        orch(p, led).morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    (m,) = led.unfinished_migrations("web")
    assert m.state == "RESUME"  # not ROLLBACK: nothing was undone
    assert {s.weight for s in p.current()[1].slots if s.id != "web-0"} == {100}
    state["hide"] = False
    p.resume = lambda: type(p).resume(p)  # type: ignore[method-assign]
    assert orch(p, led).recover(m).result == "done"
    assert_safe(p)


def test_a_crash_during_the_rollback_keeps_the_original_reason(tmp_path: Path) -> None:
    p, led = make(tmp_path)
    with pytest.raises(SimulatedCrash):
        orch(p, led, "shift-fails,crash-at:ROLLBACK").morph(MorphRequest(shape="std-2c-2048m",
                                                                         strategy="blue-green"))
    (m,) = led.unfinished_migrations("web")
    rep = orch(p, led).recover(m)
    assert rep.result == "rolled_back"
    assert "failed after the new weights were applied" in (rep.reason or "")
    assert "controller died" not in (rep.reason or "")
    assert led.migration(m.id).reason == rep.reason
    assert_safe(p)


def test_a_sigterm_is_named_in_the_reason(tmp_path: Path) -> None:
    p, led = make(tmp_path)
    real = p.checkpoint

    def interrupted(*a: object, **k: object) -> object:
        if p.paused:
            raise Interrupted("SIGTERM")
        return real(*a, **k)  # type: ignore[arg-type]

    p.checkpoint = interrupted  # type: ignore[method-assign]
    o = orch(p, led)
    with pytest.raises(KeyboardInterrupt):
        o.morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert o.report is not None and o.report.reason == "interrupted (SIGTERM)"
    p.checkpoint = real  # type: ignore[method-assign]
    assert_safe(p)


def test_a_target_fleet_is_paired_in_order_and_every_differing_pair_moves(tmp_path: Path) -> None:
    p, led = make(tmp_path, replicas=2, keyed=True, traffic=3)
    _, now = p.current()
    target = Fleet(spec=now.spec, slots=(Slot(id="web-0", shape="std-2c-2048m", region="local-a"),
                                         Slot(id="old-9", shape="std-1c-1024m", region="local-a")))
    rep = orch(p, led).morph(MorphRequest(target=target, strategy="blue-green", origin="rollback"))
    assert rep.result == "done"
    shapes = [s.shape for s in p.current()[1].slots]
    assert sorted(shapes) == ["std-1c-1024m", "std-2c-2048m"]
    assert [(m.origin, m.from_shape, m.to_shape) for m in led.moves("web")] == [
        ("rollback", "std-1c-1024m", "std-2c-2048m")]
    assert_safe(p)


def test_replace_hands_a_slot_over_even_when_its_shape_stays(tmp_path: Path) -> None:
    p, led = make(tmp_path, live_resize=True, traffic=3)
    _, now = p.current()
    rep = orch(p, led).morph(MorphRequest(target=now, replace=("web-0",), origin="up"))
    assert rep.result == "done" and rep.strategy == "blue-green"
    assert [s.id for s in p.current()[1].slots] != ["web-0"]
    assert_safe(p)


def test_a_hung_step_under_the_pause_is_bounded_by_the_lease_not_the_step_timeout(tmp_path: Path) -> None:
    p, led = make(tmp_path)
    clock = FakeClock(1000.0)
    o = orch(p, led, "step-timeout:SHIFT")
    o.clock = clock
    rep = o.morph(MorphRequest(shape="std-2c-2048m", strategy="blue-green"))
    assert rep.result == "rolled_back" and "paused" in (rep.reason or "")
    lease = p.current()[1].spec.lb.pause_lease_s
    # step_s is 30 s: the pause ended at 60 % of the 10 s lease instead (FakeClock seconds, not wall time)
    assert rep.pause_ms_max <= 0.6 * lease * 1000 + 100
    assert [s.state for s in rep.steps][-1] is State.ROLLBACK
    assert_safe(p)
