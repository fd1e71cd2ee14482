"""The sculpt loop's tick, shared by ``sculpt watch`` (live) and ``sculpt replay`` (on ``sim``).

One tick: observe the fleet's latest samples -> ``learn_many`` -> ``forecast_many`` -> ``decide_many`` (pure)
-> one plan (``Step``: per stream for replay's independent VMs, ``sculpt.decide.fleet`` for a live fleet)
-> the port executes exactly the plan's moves. ``Sculptor`` holds the predictor and the
decision state; ``tick`` wires it to any provider port (``FleetPort``) and a ``Clock``. Nothing here knows
whether the fleet is simulated: the replay harness hands it a port over ``sculpt.providers.sim.SimCloud``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sculpt.decide.cost import DEFAULT_COST, CostModel
from sculpt.decide.decision import BatchDecision, Columns, ForecastColumns, decide_many
from sculpt.decide.distribution import upper
from sculpt.decide.fleet import FleetPlan, Moves, per_stream
from sculpt.decide.state import DecisionState
from sculpt.domain.catalog import CatalogArrays
from sculpt.domain.clock import Clock
from sculpt.domain.spec import FleetSpec
from sculpt.forecast.base import ForecastBatch, Predictor, SampleBatch


@dataclass(frozen=True)
class Observation:
    """The latest sample of each active stream (rows index ``Sculptor.streams``)."""

    rows: np.ndarray
    t: np.ndarray
    cpu_cores: np.ndarray
    mem_gib: np.ndarray
    latency_ms: np.ndarray | None = None  # the service's measured p95 latency (NaN: not measured)


@dataclass(frozen=True)
class Step:
    """One tick's plan: the streams decided on, the floored forecast the decision used, the per-stream
    decisions, and the moves the loop executes (exactly the plan's actions; for a live fleet ``fleet`` is
    that plan, explained)."""

    now: float
    rows: np.ndarray
    forecast: Columns
    batch: BatchDecision
    moves: Moves
    fleet: FleetPlan | None = None


Planner = Callable[[float, np.ndarray, Columns, BatchDecision, DecisionState], FleetPlan]
"""A live fleet's planner: (now, rows, forecast, decisions, state before the tick) -> the fleet's plan."""


class FleetPort(Protocol):
    """What the loop needs from a provider: the fleet's samples, shapes, moves in flight, and a way to
    execute a plan's moves."""

    def observe(self, now: float) -> Observation: ...

    def current(self) -> np.ndarray: ...

    def pending(self) -> np.ndarray: ...

    def execute(self, moves: Moves, now: float) -> np.ndarray:
        """Carry out ``moves`` (exactly a plan's actions); per moved row, whether it took effect."""
        ...


class Sculptor:
    """The predictive controller of N streams: a predictor, the decision's cost model and its state."""

    def __init__(
        self,
        predictor: Predictor,
        arrays: CatalogArrays,
        streams: Sequence[str],
        *,
        model: CostModel = DEFAULT_COST,
        allowed: np.ndarray | None = None,
        spec: FleetSpec | None = None,
        max_migrations_per_day: int | None = None,
        mem_recall_h: int = 24,
        planner: Planner | None = None,
    ) -> None:
        self.predictor = predictor
        self.arrays = arrays
        self.streams = list(streams)
        self.model = model
        self.allowed = allowed
        self.spec = spec
        self.max_migrations_per_day = max_migrations_per_day
        self.state = DecisionState.empty(len(self.streams))
        self._names = np.array(self.streams, dtype=object)
        self.last_cpu = np.zeros(len(self.streams))
        self.last_mem = np.full(len(self.streams), np.nan)
        self.last_latency = np.full(len(self.streams), np.nan)  # ms, from the live readings (replay has none)
        # memory recall: hourly memory peaks of the last day, per stream (a ring indexed by hour of day)
        self.mem_recall_h = mem_recall_h
        self.planner = planner  # the live fleet's planner (``sculpt.decide.fleet``); None: independent streams
        self.peaks = np.zeros((len(self.streams), RECALL_H, 2))  # hourly (cpu, mem) peaks of the last day
        self.peak_hour = np.full(len(self.streams), -1, dtype=np.int64)

    def learn(self, obs: Observation) -> None:
        if len(obs.rows) == 0:
            return
        self.last_cpu[obs.rows] = np.nan_to_num(obs.cpu_cores, nan=0.0)
        self.last_mem[obs.rows] = obs.mem_gib
        if obs.latency_ms is not None:
            self.last_latency[obs.rows] = obs.latency_ms
        hour = (np.asarray(obs.t) // 3600).astype(np.int64)
        slot = hour % RECALL_H
        fresh = hour != self.peak_hour[obs.rows]
        self.peaks[obs.rows[fresh], slot[fresh]] = 0.0
        now = np.column_stack([np.where(np.isfinite(obs.cpu_cores), obs.cpu_cores, 0.0),
                               np.where(np.isfinite(obs.mem_gib), obs.mem_gib, 0.0)])
        self.peaks[obs.rows, slot] = np.maximum(self.peaks[obs.rows, slot], now)
        self.peak_hour[obs.rows] = hour
        self.predictor.learn_many(SampleBatch(streams=list(self._names[obs.rows]), t=obs.t, cpu_cores=obs.cpu_cores,
                                              mem_gib=obs.mem_gib))

    def forecast(self, rows: np.ndarray) -> tuple[ForecastBatch, Columns]:
        """The model's forecast of ``rows`` and the same floored by what is happening now (``nowcast``):
        the second is what the decision weighs."""
        fc = self.predictor.forecast_many(list(self._names[rows]), self.model.horizon_h * 3600.0)
        return fc, nowcast(fc, self.last_cpu[rows], self.last_mem[rows], recall=self.peaks[rows].max(axis=1),
                           mem_recall=self.mem_recall_h > 0)

    def plan(self, now: float, current: np.ndarray, pending: np.ndarray, rows: np.ndarray | None = None, *,
             commit: bool = True) -> Step:
        """Forecast, decide and plan for ``rows`` (default: all streams). With ``commit`` the decision state
        records the plan's moves (the loop is about to execute them); without, nothing changes (a preview)."""
        rows = np.arange(len(self.streams)) if rows is None else np.asarray(rows, dtype=np.int64)
        _, fc = self.forecast(rows)
        whole = len(rows) == len(self.streams)
        sub = self.state if whole else self.state_rows(rows)
        batch, new = decide_many(current=current[rows], forecast=fc, arrays=self.arrays, state=sub, now=now,
                                 model=self.model, allowed=self.allowed, pending=pending[rows], spec=self.spec,
                                 max_migrations_per_day=self.max_migrations_per_day,
                                 latency_over=self.latency_over(rows))
        fleet = self.planner(now, rows, fc, batch, self.state) if self.planner is not None else None
        moves = fleet.moves if fleet is not None else per_stream(rows, batch)
        if commit:
            if fleet is not None:  # the fleet's plan says who moves (a whole-fleet morph moves every replica)
                moved = np.zeros(len(self.streams), dtype=bool)
                moved[moves.rows] = True
                self.state = self.state.record(moved, now) if moved.any() else self.state
            elif whole:
                self.state = new
            else:
                last = self.state.last_move_t.copy()
                ring = self.state.move_times.copy()
                last[rows] = new.last_move_t
                ring[rows] = new.move_times
                self.state = DecisionState(last_move_t=last, move_times=ring)
        return Step(now=now, rows=rows, forecast=fc, batch=batch, moves=moves, fleet=fleet)

    def latency_over(self, rows: np.ndarray) -> np.ndarray | None:
        """Streams whose latest measured p95 latency is above the spec's SLO (None without a spec or a
        latency signal: replay's traces have none)."""
        lat = self.last_latency[rows]
        if self.spec is None or not np.isfinite(lat).any():
            return None
        over: np.ndarray = np.nan_to_num(lat, nan=0.0) > self.spec.slo.p95_latency_ms
        return over

    def state_rows(self, rows: np.ndarray) -> DecisionState:
        return DecisionState(last_move_t=self.state.last_move_t[rows], move_times=self.state.move_times[rows])


RECALL_H = 24  # hours of (cpu, mem) peaks the loop remembers per stream
TAIL_CAP = 1.5  # the top of a model's interval is believed up to 1.5x the last day's peak
NOWCAST_SPREAD = 0.5  # the spread kept above a reading is at most half of it: a model that expected a quiet
# hour with a wide interval must not have that whole width stacked on top of a burst it did not foresee


def nowcast(fc: ForecastColumns, cpu: np.ndarray, mem: np.ndarray, recall: np.ndarray | None = None,
            mem_recall: bool = True) -> Columns:
    """The forecast floored by what is happening now: the next minutes look like the last one.

    Models forecast the horizon from closed periods (hourly); between closes, a demand already above a
    shape is the strongest evidence there is. The median is raised to the latest reading and the p95 keeps
    its spread (p95 - p50) above it, so a breach in progress makes upsizing urgent within one tick and no downsizing
    goes below the demand of the moment.

    ``recall`` holds each stream's (cpu, mem) peak of the last day. It bounds the top of the model's
    interval at ``TAIL_CAP`` x that peak (a conformal interval scaled by a bursty stream's level can claim
    30 cores for a VM that never used 9), and, with ``mem_recall``, floors the memory *p95*: memory that was used a few
    hours ago is likely to be used again (batch jobs, caches), and an OOM kills. The median still follows
    the forecast, so the decision sees a tail, not a certainty: shrinking below yesterday's peak happens
    only when the saving is worth several breach-penalties.
    """
    c50 = np.asarray(fc.cpu_p50, dtype=np.float64)
    m50 = np.asarray(fc.mem_p50, dtype=np.float64)
    c_hi = np.asarray(fc.cpu_hi, dtype=np.float64)
    m_hi = np.asarray(fc.mem_hi, dtype=np.float64)
    if recall is not None:
        c_hi = np.where(recall[:, 0] > 0, np.fmin(c_hi, TAIL_CAP * recall[:, 0]), c_hi)
        m_hi = np.where(recall[:, 1] > 0, np.fmin(m_hi, TAIL_CAP * recall[:, 1]), m_hi)
    c95 = upper(fc.cpu_p95, c_hi)
    m95 = upper(fc.mem_p95, m_hi)
    cpu = np.nan_to_num(cpu, nan=0.0)
    has_mem = np.isfinite(mem)
    new_c50 = np.fmax(c50, cpu)
    new_m50 = np.where(has_mem, np.fmax(m50, np.nan_to_num(mem)), m50)
    # keep the forecast's spread (additive: a ratio would explode when the model's median is ~0)
    new_c95 = np.fmax(c95, new_c50 + np.minimum(np.fmax(c95 - c50, 0.0), NOWCAST_SPREAD * new_c50))
    new_m95 = np.where(has_mem, np.fmax(m95, new_m50 + np.minimum(np.fmax(m95 - m50, 0.0), NOWCAST_SPREAD * new_m50)),
                       m95)
    if recall is not None and mem_recall:
        new_m95 = np.where(has_mem, np.fmax(new_m95, recall[:, 1]), new_m95)
    return Columns(cpu_p50=new_c50, cpu_p95=new_c95, cpu_hi=new_c95, mem_p50=new_m50, mem_p95=new_m95, mem_hi=new_m95,
                    confidence=np.asarray(fc.confidence), samples=np.asarray(fc.samples))


def tick(sculptor: Sculptor, port: FleetPort, clock: Clock) -> Step:
    """One turn of the loop at ``clock.now()``: observe, learn, plan, then execute exactly the plan's moves."""
    now = clock.now()
    obs = port.observe(now)
    sculptor.learn(obs)
    step = sculptor.plan(now, port.current(), port.pending(), obs.rows)
    if step.moves:
        port.execute(step.moves, now)
    return step
