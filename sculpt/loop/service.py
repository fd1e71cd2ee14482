"""The live sculptor of one stack: the shared tick, run on a timer, with what a running service needs.

Why it exists: ``sculpt watch``, ``sculpt plan``, the HTTP API and ``sculpt demo`` all run this. Each tick
is ``sculpt.loop.tick.tick`` over the ``LivePort`` with the fleet's planner (``sculpt.decide.fleet``): the
plan the tick reports is exactly what the port executed. Around it: live requirement changes (profile,
SLO, budget, aggressiveness), the daily move cap counted from the ledger's record of moves, shapes that
failed to launch kept out of the candidates, the home region after a region move, model checkpoints, and a
``run`` loop that survives a failing tick (``MAX_TICK_FAILURES`` in a row stop it) and lets the morph in
flight finish on ``stop()``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Literal, Protocol, TypedDict

import numpy as np

from sculpt.decide.cost import CostModel, cost_model_for
from sculpt.decide.decision import BatchDecision, Columns, family_mask
from sculpt.decide.fleet import FleetInputs, FleetPlan, plan_fleet
from sculpt.decide.state import DecisionState
from sculpt.domain.catalog import Catalog
from sculpt.domain.clock import Clock, SystemClock
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.plan import Plan
from sculpt.domain.spec import FleetSpec
from sculpt.forecast.base import ForecastBatch, Predictor
from sculpt.forecast.guard import Guarded, ProfileHandover, switch_profile
from sculpt.ledger import Ledger
from sculpt.loop.live import LivePort
from sculpt.loop.report import InstanceReport, TickReport
from sculpt.loop.tick import Sculptor, Step, tick
from sculpt.migrate.actuator import MorphOutcome

log = logging.getLogger("sculpt.loop")

Mode = Literal["auto", "recommend"]
MODES: tuple[str, ...] = ("auto", "recommend")
SPARK = 60  # utilisation samples kept per instance for the live view
MAX_TICK_FAILURES = 5  # consecutive failed ticks after which the loop gives up (the error is raised)
BACKFILL_STEP_S = 300.0
"""Backfill reads history at 5-minute steps: the models' slot (``sculpt.forecast``), CloudWatch's basic period."""
AUTO_BACKFILL_H = 24.0
"""A watcher or plan with no model checkpoint learns this much history from a range source before it decides."""


def stream_names(stack: str, n: int) -> list[str]:
    """One stable demand stream per replica position.

    >>> stream_names("web", 2)
    ['web#0', 'web#1']
    """
    return [f"{stack}#{i}" for i in range(n)]


class EventSink(Protocol):
    """Where the stack's watcher records each tick's plan (``sculpt.app.events.DecisionEvents``)."""

    def observe(self, plan: Plan, now: float, *, executed: str | None = None) -> int | None: ...


class Kick(Protocol):
    """A background deliverer woken after each recorded tick (``sculpt.app.events.WebhookThread``)."""

    def kick(self) -> None: ...

    def stop(self) -> None: ...


class Counters(TypedDict):
    """What a ``SculptorService`` has done since it started (the ``/metrics`` counters)."""

    ticks: int
    decisions: dict[str, int]  # plans by decision (hold, migrate...)
    migrations: dict[str, int]  # morphs by result
    warnings: int


class SculptorService:
    """The live sculptor of one stack: ``tick()`` runs the shared loop once; ``run()`` repeats it."""

    def __init__(self, spec: FleetSpec, catalog: Catalog, predictor: Predictor, port: LivePort, *,
                 clock: Clock | None = None, mode: Mode = "recommend", cost: CostModel | None = None,
                 ledger: Ledger | None = None, checkpoint_every: int = 30, moves_regions: bool = True) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown mode '{mode}'", "use --mode recommend or --mode auto")
        self.spec = spec
        self.catalog = catalog
        self.clock = clock or SystemClock()
        self.mode = mode
        self.port = port
        self.ledger = ledger
        self.checkpoint_every = checkpoint_every
        self.guard = predictor if isinstance(predictor, Guarded) else Guarded(predictor)
        self.cost = cost or cost_model_for(spec)
        arrays = port.arrays
        self.moves_regions = moves_regions  # the platform moves a fleet across regions (else: advisory)
        self.sculptor = Sculptor(self.guard, arrays, port.streams, model=self.cost,
                                 allowed=family_mask(arrays, spec.families), spec=spec,
                                 max_migrations_per_day=spec.policy.max_migrations_per_day,
                                 planner=self._plan_fleet)
        self.n = 0
        self.moves: Ledger | None = None  # the ledger whose record of moves the daily cap counts (``count_moves``)
        self.last: TickReport | None = None
        self.history: dict[str, deque[float]] = {}
        self.counters: Counters = {"ticks": 0, "decisions": {}, "migrations": {}, "warnings": 0}
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self.events: EventSink | None = None  # the stack's watcher records its decisions (sculpt events)
        self.webhook: Kick | None = None

    # -- configuration --------------------------------------------------------------------------------
    def update_spec(self, spec: FleetSpec) -> list[str]:
        """Apply new requirements (profile, SLOs, budget, aggressiveness) to the running loop; returns notes
        on how (a profile change hands over to that profile's model, see ``ProfileHandover``)."""
        notes: list[str] = []
        with self.lock:
            if spec.fleet != self.spec.fleet or spec.region != self.spec.region:
                raise ConfigError("requirements cannot rename the fleet or change its home region",
                                  "change fleet/region in sculpt.yaml and restart `sculpt watch`")
            if spec.profile != self.spec.profile:
                notes.append(self._switch_profile(spec.profile))
            self.spec = spec
            self.port.spec = spec
            self.cost = replace(self.cost, aggressiveness=spec.aggressiveness,
                                utilisation_cap=spec.slo.max_utilisation)
            self.sculptor.spec = spec
            self.sculptor.model = self.cost
            self.sculptor.allowed = family_mask(self.port.arrays, spec.families)
            self.sculptor.max_migrations_per_day = spec.policy.max_migrations_per_day
        return notes

    def _switch_profile(self, profile: str) -> str:
        try:
            self.guard.primary = switch_profile(self.guard.primary, profile, self.cost.horizon_h * 3600.0,
                                                self.cost.confidence_floor)
        except SculptError as e:
            return f"profile '{profile}' is stored but the running model cannot switch ({e}); it applies at restart"
        self.guard.name = self.guard.primary.name
        if isinstance(self.guard.primary, ProfileHandover):
            return (f"profile '{profile}' applied live: a fresh {self.guard.name} model for it learns from now on; "
                    "the previous model keeps forecasting each instance until the new one is as confident or "
                    f"past the {self.cost.confidence_floor:.0%} confidence floor")
        return f"profile '{profile}' applied live"

    def model_profile(self) -> str | None:
        """The profile of the model forecasting now (``old->new`` while a profile change hands over)."""
        p = self.guard.primary
        if isinstance(p, ProfileHandover):
            return f"{p.old.profile}->{p.new.profile}"
        return p.profile

    def _finish_handover(self) -> None:
        if isinstance(self.guard.primary, ProfileHandover) and self.guard.primary.done:
            self.guard.primary = self.guard.primary.new

    def _sync_shape(self, act: MorphOutcome | None) -> None:
        """Keep ``spec.shape`` on the shape the fleet runs now (the policy rules read the fleet from it)."""
        shapes = {s.shape for s in self.port.slots if s.shape in self.port.names}
        if act is not None and act.result in ("done", "unchanged"):
            shapes = {act.to_shape}
        if len(shapes) == 1 and (shape := shapes.pop()) != self.spec.shape:
            self.update_spec(self.spec.with_changes(shape=shape))

    def _discount_unavailable(self) -> None:
        """Shapes that launches show to be unlikely to launch are not candidates (the running one stays)."""
        arrays = self.port.arrays
        avail = self.port.availability.mask(arrays, self.spec.region, self.clock.now())
        avail[np.unique(self.port.current())] = True
        self.sculptor.allowed = family_mask(arrays, self.spec.families) & avail
        self.port.allowed = self.sculptor.allowed

    def _rehome(self, region: str, shape: str) -> None:
        """After a region move: the fleet's home region (and the offerings the decision picks from) is
        ``region``; the region it left stays allowed (as the orchestrator's version spec says)."""
        with self.lock:
            regions = [r for r in self.spec.allowed_regions if r != region]
            spec = self.spec.with_changes(region=region, regions=regions, shape=shape)
            self.spec = spec
            self.port.rebase(spec)
            self.sculptor.arrays = self.port.arrays
            self.update_spec(spec)

    def count_moves(self, now: float) -> None:
        """The daily cap counts the stack's migrations of the last 24 h in the ledger's one record of moves
        (``sculpt watch``'s own, ``sculpt morph``, ``rollback`` and ``up`` alike; one per command, see
        ``migration_times``), the same count ``sculpt policy check`` uses; the cooldown starts at the latest
        of them too. Without a ledger (``moves`` unset) the decision keeps its own memory."""
        if self.moves is None:
            return
        from sculpt.ledger import DAY_S, migration_times

        times = migration_times(self.moves.moves(self.spec.fleet, since=now - DAY_S))
        st = self.sculptor.state
        ring = np.full_like(st.move_times, -np.inf)
        recent = times[-ring.shape[1]:] if ring.shape[1] else []
        ring[:, :len(recent)] = recent
        last = np.maximum(st.last_move_t, times[-1]) if times else st.last_move_t
        self.sculptor.state = DecisionState(last_move_t=last, move_times=ring)

    def seed_cooldown(self, last_move_t: float) -> None:
        """Resume the cooldown after a restart from the last migration's time (from the ledger)."""
        st = self.sculptor.state
        self.sculptor.state = DecisionState(last_move_t=np.full(len(st), last_move_t), move_times=st.move_times)

    # -- one tick -------------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        """Observe, learn, plan and execute exactly the plan's actions (``sculpt.loop.tick``), then report."""
        with self.lock:
            t0 = time.perf_counter()
            m0 = self.guard.model_s
            n_actions = len(self.port.actions)
            self.count_moves(self.clock.now())
            self._discount_unavailable()
            step = tick(self.sculptor, self.port, self.clock)
            self._finish_handover()
            acts = self.port.actions[n_actions:]
            act = acts[-1] if acts else None
            if act is not None and act.ok and act.region != self.spec.region:
                self._rehome(act.region, act.to_shape)
            self._sync_shape(act)
            report = self._report(step, act)
            # the overhead of the tick excludes the morph it triggered (seconds of real work)
            report.tick_ms = max(0.0, (time.perf_counter() - t0 - sum(a.seconds for a in acts)) * 1000.0)
            report.model_ms = (self.guard.model_s - m0) * 1000.0
            self.n += 1
            self.last = report
            self._count(report)
            if self.events is not None:
                self.events.observe(report.plan, step.now, executed=act.result if act is not None else None)
                if self.webhook is not None:
                    self.webhook.kick()
            if self.ledger is not None and self.checkpoint_every and self.n % self.checkpoint_every == 0:
                self.checkpoint()
            return report

    def prime(self) -> None:
        """One reading without learning: rate metrics (CPU cores, rps) need two polls to exist."""
        self.port.observe(self.clock.now())

    def backfill(self, hours: float, step_s: float = BACKFILL_STEP_S) -> int:
        """Learn the last ``hours`` of the fleet's readings from a range source before the first tick, so a new
        watcher (or ``sculpt plan`` in CI) starts with a forecast instead of "no history yet". Returns the
        number of samples learned (0 when the source keeps no history). Raises ``SculptError`` when the
        source fails."""
        if hours <= 0:
            return 0
        now = self.clock.now()
        with self.lock:
            seen = self.port.history(now - hours * 3600.0, now, step_s)
            for obs in seen:
                self.sculptor.learn(obs)
        return sum(len(o.rows) for o in seen)

    def plan(self) -> Plan:
        """The next plan without acting: the last tick's if there was one, else a plan on what is known
        (nothing is recorded: the decision state is left as it was)."""
        with self.lock:
            if self.last is not None:
                return self.last.plan
            now = self.clock.now()
            self.count_moves(now)
            step = self.sculptor.plan(now, self.port.current(), self.port.pending(), commit=False)
            assert step.fleet is not None  # the service always plans the fleet
            return step.fleet.plan

    def forecast_now(self, rows: np.ndarray) -> tuple[ForecastBatch, Columns]:
        """The model's forecast of ``rows`` and the same floored by the latest readings: what a decision now
        would weigh (``Sculptor.forecast``)."""
        with self.lock:
            return self.sculptor.forecast(np.asarray(rows, dtype=np.int64))

    def _plan_fleet(self, now: float, rows: np.ndarray, fc: Columns, batch: BatchDecision,
                    state: DecisionState) -> FleetPlan:
        """The planner the loop calls: the fleet's one plan from the replicas' decisions."""
        return plan_fleet(FleetInputs(
            spec=self.spec, catalog=self.catalog, arrays=self.port.arrays, rows=rows, slots=self.port.slots,
            slot_of=[self._slot_of(int(r)) for r in rows], batch=batch, forecast=fc, state=state,
            availability=self.port.availability, cost=self.cost, allowed=self.sculptor.allowed, now=now,
            busy=self.port.busy, moves_regions=self.moves_regions))

    def _slot_of(self, row: int) -> str:
        for sid, r in self.port.row_of.items():
            if r == row:
                return sid
        return self.sculptor.streams[row]

    def _report(self, step: Step, act: MorphOutcome | None) -> TickReport:
        assert step.fleet is not None  # the service always plans the fleet
        out = []
        arrays = self.port.arrays
        fc, batch = step.forecast, step.batch
        for i, row in enumerate(step.rows):
            row = int(row)
            slot = self._slot_of(row)
            cur = int(batch.current[i])
            cpu = float(self.sculptor.last_cpu[row])
            vals = self.port.values.get(slot, {})
            util = cpu / float(arrays.vcpu[cur]) if cur < len(arrays) and arrays.vcpu[cur] > 0 else math.nan
            self.history.setdefault(slot, deque(maxlen=SPARK)).append(util)
            sub = step.fleet.replicas[i]
            top = sorted(sub.distribution.items(), key=lambda kv: -kv[1])[:3]
            out.append(InstanceReport(slot=slot, stream=self.sculptor.streams[row], shape=str(arrays.names[cur])
                                      if cur < len(arrays) else "?",
                                      cpu_cores=cpu, mem_gib=float(self.sculptor.last_mem[row]), utilisation=util,
                                      forecast_p50=float(fc.cpu_p50[i]), forecast_p95=float(fc.cpu_p95[i]),
                                      top=top, confidence=float(batch.confidence[i]), decision=sub.decision.value,
                                      reason=sub.reason, rps=float(vals.get("rps", math.nan)),
                                      latency_p95_ms=float(vals.get("latency_p95_ms", math.nan))))
        warnings = list(self.port.warnings)
        if self.guard.degraded:
            warnings.append(self.guard.degraded)
        if act is not None and act.result in ("rolled_back", "failed"):
            where = f" in {act.region}" if act.region != self.spec.region else ""
            warnings.append(f"morph to {act.to_shape}{where} {act.result}: {act.detail}")
        return TickReport(self.spec.fleet, self.mode, step.now, self.n + 1, step.fleet.plan, out, act, warnings,
                          0.0, 0.0, self.guard.name if not self.guard.degraded else f"{self.guard.name}->last-value")

    def _count(self, r: TickReport) -> None:
        c = self.counters
        c["ticks"] += 1
        c["decisions"][r.plan.decision.value] = c["decisions"].get(r.plan.decision.value, 0) + 1
        if r.action is not None:
            c["migrations"][r.action.result] = c["migrations"].get(r.action.result, 0) + 1
        c["warnings"] += len(r.warnings)

    # -- persistence ----------------------------------------------------------------------------------
    def checkpoint(self) -> int:
        """Save the model to the ledger under ``<stack>:watch``; returns the bytes written (0 without one)."""
        if self.ledger is None:
            return 0
        from sculpt.forecast import persist

        try:
            return persist.save(self.ledger, checkpoint_key(self.spec.fleet), self.guard.primary)
        except Exception as e:  # noqa: BLE001 - a failed checkpoint is a warning, never a stop
            log.warning("could not checkpoint the model: %s", e)
            return 0

    # -- the loop -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask ``run`` to return after the tick (and any morph) in flight."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, ticks: int | None = None, on_tick: Callable[[TickReport], None] | None = None,
            tick_s: float | None = None) -> int:
        """Tick every ``tick_s`` real seconds (default: the spec's) until ``stop()`` or ``ticks`` ticks."""
        period = tick_s if tick_s is not None else self.spec.tick_s
        done = 0
        nxt = time.monotonic()
        failures = 0
        while not self._stop.is_set() and (ticks is None or done < ticks):
            try:
                report = self.tick()
                failures = 0
            except Exception as e:  # noqa: BLE001 - one bad tick must not stop the controller
                failures += 1
                log.warning("tick failed (%s: %s); holding until the next tick", type(e).__name__, e)
                if failures >= MAX_TICK_FAILURES:
                    raise
                done += 1
                if self._stop.wait(period):
                    break
                nxt = time.monotonic()
                continue
            done += 1
            if on_tick is not None:
                on_tick(report)
            nxt += period
            wait = nxt - time.monotonic()
            if wait < 0:
                nxt = time.monotonic()
            elif self._stop.wait(wait):
                break
        self.checkpoint()
        return done


def checkpoint_key(stack: str) -> str:
    return f"{stack}:watch"


def watch_lock(stack: str) -> str:
    return f"{stack}:watch"
