"""The loop's nowcast (what the decision sees) and the tick wiring against a fake fleet port."""

from __future__ import annotations

import numpy as np

from sculpt.decide.decision import Columns
from sculpt.decide.fleet import Moves
from sculpt.domain.clock import FakeClock
from sculpt.loop.tick import TAIL_CAP, Observation, Sculptor, nowcast, tick


def cols(c50: float, c95: float, m50: float, m95: float, hi_scale: float = 1.0) -> Columns:
    a = lambda v: np.array([v], dtype=np.float64)  # noqa: E731
    return Columns(a(c50), a(c95), a(c95 * hi_scale), a(m50), a(m95), a(m95 * hi_scale), a(0.8), a(10))


def test_nowcast_floors_by_the_latest_reading_with_a_bounded_spread() -> None:
    f = nowcast(cols(0.1, 4.0, 0.0, 0.004), np.array([3.0]), np.array([0.4]))
    assert f.cpu_p50[0] == 3.0
    assert f.cpu_p95[0] == 4.5  # 3 + min(3.9, 0.5 * 3): the model's whole width is not stacked on a burst
    assert f.mem_p50[0] == 0.4 and 0.4 < f.mem_p95[0] <= 0.41  # additive spread: no ratio blow-up near zero


def test_nowcast_never_lowers_a_forecast_and_caps_wild_intervals_by_recall() -> None:
    f = nowcast(cols(2.0, 3.0, 1.0, 2.0), np.array([0.5]), np.array([0.5]))
    assert (f.cpu_p50[0], f.cpu_p95[0], f.mem_p50[0], f.mem_p95[0]) == (2.0, 3.0, 1.0, 2.0)
    wild = cols(1.0, 1.5, 1.0, 1.5, hi_scale=20.0)  # interval top at 30 for a stream that never used 9
    recall = np.array([[8.0, 4.0]])
    f = nowcast(wild, np.array([1.0]), np.array([1.0]), recall=recall)
    assert f.cpu_p95[0] == TAIL_CAP * 8.0
    assert f.mem_p95[0] == TAIL_CAP * 4.0
    f = nowcast(cols(1.0, 1.2, 1.0, 1.2), np.array([1.0]), np.array([1.0]), recall=recall)
    assert f.mem_p95[0] == 4.0  # memory recall: yesterday's peak stays in the tail
    f = nowcast(cols(1.0, 1.2, 1.0, 1.2), np.array([1.0]), np.array([1.0]), recall=recall, mem_recall=False)
    assert f.mem_p95[0] == 1.2


class FakePort:
    """A call-recording fleet of two streams on shape 2 (of the tiny catalog: s4)."""

    def __init__(self) -> None:
        self.shapes = np.array([2, 2])
        self.calls: list[tuple[list[int], list[int]]] = []

    def observe(self, now: float) -> Observation:
        return Observation(rows=np.array([0, 1]), t=np.array([now, now]), cpu_cores=np.array([0.2, 3.5]),
                           mem_gib=np.array([0.2, 3.0]))

    def current(self) -> np.ndarray:
        return self.shapes

    def pending(self) -> np.ndarray:
        return np.zeros(2, dtype=bool)

    def execute(self, moves: Moves, now: float) -> np.ndarray:
        self.calls.append((moves.rows.tolist(), moves.to.tolist()))
        return np.ones(len(moves), dtype=bool)


def test_tick_learns_decides_and_resizes_only_movers(catalog, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    port = FakePort()
    sculptor = Sculptor(stub_predictor(), catalog.arrays("r"), ["idle", "busy"])
    step = tick(sculptor, port, FakeClock(1_700_000_000.0))
    rows, batch = step.rows, step.batch
    assert rows.tolist() == [0, 1]
    assert port.calls == [([0], [0])]  # the idle stream shrinks to s1; the busy one stays on s4
    assert sculptor.state.last_move_t.tolist() == [1_700_000_000.0, -np.inf]
    assert bool(batch.move[0]) and not batch.move[1]
    assert (step.moves.rows.tolist(), step.moves.to.tolist()) == port.calls[0]  # executed = planned


def test_a_preview_plan_records_nothing(catalog, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    port = FakePort()
    sculptor = Sculptor(stub_predictor(), catalog.arrays("r"), ["idle", "busy"])
    sculptor.learn(port.observe(1_700_000_000.0))
    before = sculptor.state
    step = sculptor.plan(1_700_000_000.0, port.current(), port.pending(), commit=False)
    assert step.moves.rows.tolist() == [0]  # the idle stream would shrink...
    assert sculptor.state is before  # ...but a preview leaves the cooldown and the daily count alone
