"""The sculptor service: the live loop behind ``sculpt watch``, ``sculpt plan``, the HTTP API and ``sculpt demo``.

Why it exists: the loop body (observe -> learn -> predict -> decide) is ``sculpt.replay.loop.tick``, shared
with replay; this module is what makes it *live*. It wires

* a **metric source** (local processes + the app's ``/metrics``, Prometheus, CloudWatch) behind one small
  ``Readings`` port that answers "the latest values of these instances";
* a **predictor** (``sculpt.forecast.make_predictor``) wrapped in ``Guarded``, which falls back to the
  reactive last-value rule when the model raises, and says so;
* a live ``FleetPort`` (``LivePort``) over the running fleet (the stack's agent) whose ``resize`` is the
  **actuator**: in ``auto`` mode the migration orchestrator (``sculpt.migrate``), in ``recommend`` mode a
  recorder that changes nothing (like the VPA's *Off* mode);
* the ledger: model checkpoints (``<stack>:watch``), the watch lock (``"<stack>:watch"``: a second watcher
  refuses) and crash recovery of an interrupted morph at start.

Stream names are stable per replica position (``web#0``, ``web#1``...), not per slot id, so a blue/green
morph that replaces ``web-0`` by ``web-1`` continues the same demand history and the same checkpoint.

Robustness, in one place: a reading that is missing or NaN is not learned and its instance holds (with a
warning in the tick report); a model failure falls back to the reactive rule; a failed morph is rolled
back by the orchestrator and reported; ``stop()`` lets the morph in flight finish before the loop exits.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypedDict

import numpy as np

from sculpt.app.events import DecisionEvents, Webhook, WebhookThread
from sculpt.decide.availability import Availability, Candidate, fallbacks, is_capacity_error, rank
from sculpt.decide.cost import DEFAULT_COST, CostModel
from sculpt.decide.decision import (
    HOURS_PER_MONTH,
    REASONS,
    BatchDecision,
    Columns,
    ForecastColumns,
    Why,
    family_mask,
    plan_of,
    policy_gate,
)
from sculpt.decide.state import DecisionState
from sculpt.domain.catalog import Catalog
from sculpt.domain.clock import Clock, SystemClock
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.plan import Action as PlanAction
from sculpt.domain.plan import Decision, Plan, RuleResult
from sculpt.domain.spec import FleetSpec
from sculpt.forecast.base import ForecastBatch, Predictor, SampleBatch
from sculpt.replay.loop import Observation, Sculptor, nowcast, tick

log = logging.getLogger("sculpt.sculptor")

Mode = Literal["auto", "recommend"]
MODES: tuple[str, ...] = ("auto", "recommend")
SPARK = 60  # utilisation samples kept per instance for the live view
MAX_TICK_FAILURES = 5  # consecutive failed ticks after which the loop gives up (the error is raised)


# -- settings and time ---------------------------------------------------------------------------------------
VOLUME_OUTAGE_S = 120.0
"""A ``volume`` hand-over on a cloud: blue stops, the volume detaches and attaches to green, green mounts it,
starts its app and passes two 10-second health checks — about two minutes without service (an estimate;
not measured on a real cloud)."""


def cost_model_for(spec: FleetSpec, base: CostModel = DEFAULT_COST) -> CostModel:
    """The decision's constants for a live fleet: the spec's aggressiveness and utilisation cap, and the
    outage a cloud ``volume`` hand-over causes (charged to every move at the SLO penalty rate)."""
    cm = replace(base, aggressiveness=spec.aggressiveness, utilisation_cap=spec.slo.max_utilisation)
    if spec.engine == "pulumi" and spec.app.state_sync.strategy == "volume":
        cm = replace(cm, outage_s=max(cm.outage_s, VOLUME_OUTAGE_S))
    return cm


class ScaledClock:
    """A clock whose ``now`` runs ``factor`` times faster than the wall clock (``sculpt demo``'s compressed
    time: with factor 300 one real second is five model minutes). ``sleep`` waits the real time that
    corresponds to the model seconds asked for."""

    def __init__(self, factor: float, start: float | None = None, base: Clock | None = None) -> None:
        if not factor > 0:
            raise ConfigError(f"time factor {factor} must be positive", "pass a factor above 0")
        self.factor = float(factor)
        self.base = base or SystemClock()
        self._real0 = self.base.monotonic()
        self._t0 = self.base.now() if start is None else float(start)

    def now(self) -> float:
        return self._t0 + (self.base.monotonic() - self._real0) * self.factor

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds / self.factor)


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


# -- the fleet as the loop sees it ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SlotInfo:
    """A serving instance: slot id, shape, region, and how to measure it (pid, ``host:port``)."""

    id: str
    shape: str
    region: str
    pid: int | None = None
    address: str | None = None
    healthy: bool = True


class FleetView(Protocol):
    """Where the fleet's serving instances are now (the local agent; a cloud API)."""

    def slots(self) -> list[SlotInfo]: ...


class AgentFleetView:
    """The serving slots of a local stack, from its agent's ``status()``; an agent that is down gives none."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def slots(self) -> list[SlotInfo]:
        try:
            rows = self.client.status().get("instances", [])
        except SculptError as e:
            log.warning("cannot read the fleet from its agent: %s", e)
            return []
        return [SlotInfo(str(r["id"]), str(r["shape"]), str(r["region"]), r.get("pid"), r.get("address"),
                         bool(r.get("healthy", True)))
                for r in rows if int(r.get("weight", 0)) > 0]


class EngineFleetView:
    """The slots of a stack's current version (cloud engines): ids, shapes and regions, no local processes;
    metrics then come from Prometheus or CloudWatch keyed by slot id."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def slots(self) -> list[SlotInfo]:
        try:
            fleet = self.engine.current()
        except SculptError as e:
            log.warning("cannot read the stack's current version: %s", e)
            return []
        return [SlotInfo(s.id, s.shape, s.region) for s in (fleet.slots if fleet else ()) if s.weight > 0]


class Readings(Protocol):
    """The latest metric values of each instance (``cpu_cores``, ``mem_gib``, ...); NaN = not measured."""

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]: ...


class LocalReadings:
    """``sculpt.metrics.local.LocalSource`` over the slots the loop is told about (one poll per tick)."""

    def __init__(self, clock: Clock | None = None, timeout_s: float = 1.0) -> None:
        from sculpt.metrics.local import LocalSource, Target

        self._slots: Sequence[SlotInfo] = ()
        self._target = Target
        self.source = LocalSource(lambda: [Target(s.id, s.pid, s.address) for s in self._slots],
                                  clock=clock, timeout_s=timeout_s)

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]:
        self._slots = list(slots)
        return {k: dict(v.values) for k, v in self.source.poll().items()}


class RangeReadings:
    """Any ``MetricSource`` (Prometheus, CloudWatch): the last sample in ``[now - window_s, now]``.

    A source that raises (down, HTTP error) gives no readings: every instance holds this tick.
    """

    def __init__(self, source: Any, window_s: float = 120.0, step_s: float = 15.0) -> None:
        self.source, self.window_s, self.step_s = source, window_s, step_s

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]:
        ids = [s.id for s in slots]
        try:
            data = self.source.read(ids, now - self.window_s, now, self.step_s)
        except SculptError as e:
            log.warning("metric source failed: %s", e)
            return {}
        return {i: dict(samples[-1].values) for i, samples in data.items() if samples}

    def history(self, slots: Sequence[SlotInfo], start: float, end: float, step: float) -> dict[str, list[Any]]:
        """Every sample of ``slots`` in ``[start, end]`` (``Sample`` lists, oldest first), for backfill.

        Raises ``SculptError`` when the source fails: a backfill that cannot read says so."""
        return self.source.read([s.id for s in slots], start, end, step)  # type: ignore[no-any-return]


# -- the predictor, guarded -----------------------------------------------------------------------------------
class Guarded:
    """A ``Predictor`` that falls back to the reactive last-value rule when its model raises.

    The fallback learns every sample too, so it is ready the moment it is needed. ``degraded`` holds the
    reason while the fallback is in use; ``model_s`` accumulates the time spent in models (the loop's
    overhead benchmark subtracts it).
    """

    def __init__(self, primary: Predictor, fallback: Predictor | None = None) -> None:
        from sculpt.forecast import make_predictor

        self.primary = primary
        self.fallback = fallback or make_predictor("last-value", horizon_s=getattr(primary, "horizon_s", 3600.0))
        self.name = primary.name
        self.degraded: str | None = None
        self.model_s = 0.0

    @property
    def notes(self) -> list[str]:
        return list(getattr(self.primary, "notes", []) or [])

    def _fail(self, what: str, e: Exception) -> None:
        reason = f"model '{self.primary.name}' failed to {what} ({type(e).__name__}: {e}); using the reactive rule"
        if self.degraded is None:
            log.warning(reason)
        self.degraded = reason

    def learn_one(self, stream: str, sample: Any) -> None:
        self.fallback.learn_one(stream, sample)
        try:
            self.primary.learn_one(stream, sample)
        except Exception as e:  # noqa: BLE001 - any model failure falls back, never stops the loop
            self._fail("learn", e)

    def learn_many(self, batch: SampleBatch) -> None:
        t0 = time.perf_counter()
        try:
            self.fallback.learn_many(batch)
            if self.degraded is None:
                try:
                    self.primary.learn_many(batch)
                except Exception as e:  # noqa: BLE001
                    self._fail("learn", e)
        finally:
            self.model_s += time.perf_counter() - t0

    def forecast(self, stream: str, horizon_s: float) -> Any:
        return self.forecast_many([stream], horizon_s).get(0)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        t0 = time.perf_counter()
        try:
            if self.degraded is None:
                try:
                    fc = self.primary.forecast_many(streams, horizon_s)
                    if np.isfinite(np.asarray(fc.cpu_p50, dtype=np.float64)).all():
                        return fc
                    raise ValueError("forecast is not finite")
                except Exception as e:  # noqa: BLE001
                    self._fail("forecast", e)
            return self.fallback.forecast_many(streams, horizon_s)
        finally:
            self.model_s += time.perf_counter() - t0

    def dumps(self) -> bytes:
        return self.primary.dumps()

    def loads(self, blob: bytes) -> None:
        self.primary.loads(blob)


class Handover:
    """A ``Predictor`` that switches a live fleet to a new profile's model without forgetting.

    A profile names the model a fleet's streams are learned by; its history (per-stream periods, residuals,
    calibration) lives inside that model and the ``Predictor`` protocol has no way to move it into another
    one. So both learn every sample, and each stream is forecast by the *old* model until the new profile's
    model is as confident about it, or confident ``enough`` (the decision's confidence floor: from there
    it may make non-urgent moves on its own; confidence grows with periods seen, so a young model would
    otherwise never catch up with an old one); ``done`` once the new one serves every stream asked for
    (the service then drops the old one). Checkpoints save the old model until then (a restart builds the
    handover again: the checkpoint's profile differs from the spec's).
    """

    def __init__(self, old: Predictor, new: Predictor, enough: float = DEFAULT_COST.confidence_floor) -> None:
        self.old, self.new, self.enough = old, new, float(enough)
        self.name = new.name
        self.horizon_s = getattr(new, "horizon_s", 3600.0)
        self.profile = getattr(new, "profile", None)
        self.done = False

    @property
    def notes(self) -> list[str]:
        return list(getattr(self.new, "notes", []) or [])

    def learn_one(self, stream: str, sample: Any) -> None:
        self.old.learn_one(stream, sample)
        self.new.learn_one(stream, sample)

    def learn_many(self, batch: SampleBatch) -> None:
        self.old.learn_many(batch)
        self.new.learn_many(batch)

    def forecast(self, stream: str, horizon_s: float) -> Any:
        return self.forecast_many([stream], horizon_s).get(0)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        new = self.new.forecast_many(streams, horizon_s)
        old = self.old.forecast_many(streams, horizon_s)
        nc = np.asarray(new.confidence, dtype=np.float64)
        oc = np.asarray(old.confidence, dtype=np.float64)
        use = np.isfinite(np.asarray(new.cpu_p50, dtype=np.float64)) & (np.asarray(new.samples) > 0) \
            & (nc >= np.fmin(oc, self.enough) - 1e-12)
        self.done = bool(len(streams)) and bool(use.all())
        def pick(c: str) -> np.ndarray:
            return np.where(use, np.asarray(getattr(new, c)), np.asarray(getattr(old, c)))

        return replace(new, model=new.model if self.done else f"{old.model}->{new.model}",
                       cpu_p50=pick("cpu_p50"), cpu_p95=pick("cpu_p95"), cpu_lo=pick("cpu_lo"), cpu_hi=pick("cpu_hi"),
                       mem_p50=pick("mem_p50"), mem_p95=pick("mem_p95"), mem_lo=pick("mem_lo"), mem_hi=pick("mem_hi"),
                       confidence=pick("confidence"), samples=pick("samples"))

    def dumps(self) -> bytes:
        return self.new.dumps() if self.done else self.old.dumps()

    def loads(self, blob: bytes) -> None:
        self.old.loads(blob)


def switch_profile(predictor: Predictor, profile: str, horizon_s: float,
                   enough: float = DEFAULT_COST.confidence_floor) -> Predictor:
    """``predictor`` handing over to a fresh model of the same kind for ``profile`` (``Handover``); the
    predictor itself when it already is that profile's."""
    from sculpt.forecast import make_predictor

    if getattr(predictor, "profile", profile) == profile:
        return predictor
    base = predictor.old if isinstance(predictor, Handover) else predictor
    if getattr(base, "profile", None) == profile:
        return base  # switched back before the handover finished: the old model is that profile's
    fresh = make_predictor(predictor.name, profile=profile, seed=int(getattr(base, "seed", 0)), horizon_s=horizon_s)
    return Handover(base, fresh, enough)


# -- the actuator ---------------------------------------------------------------------------------------------
@dataclass
class Action:
    """What the loop asked the fleet to do, and what came of it."""

    t: float
    to_shape: str
    from_shape: str
    region: str
    result: str  # "recommended" | "done" | "rolled_back" | "unchanged" | "failed"
    detail: str = ""
    migration_id: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "from": self.from_shape, "to": self.to_shape, "region": self.region,
                "result": self.result, "detail": self.detail, "migration_id": self.migration_id,
                "seconds": round(self.seconds, 3)}


class Actuator(Protocol):
    def morph(self, shape: str, region: str, from_shape: str, now: float) -> Action: ...


class Recommender:
    """``recommend`` mode: remember what would have been done; change nothing."""

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> Action:
        return Action(now, shape, from_shape, region, "recommended", "recommend mode: nothing changed")


class OrchestratorActuator:
    """``auto`` mode: a journaled, rollback-safe morph of the whole fleet through ``sculpt.migrate``."""

    def __init__(self, platform: Any, ledger: Any, *, timeouts: Any = None, progress: Any = None) -> None:
        self.platform, self.ledger, self.timeouts, self.progress = platform, ledger, timeouts, progress

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> Action:
        from sculpt.migrate import MorphRequest, Orchestrator

        t0 = time.monotonic()
        orch = Orchestrator(self.platform, self.ledger, SystemClock(), timeouts=self.timeouts,
                            progress=self.progress)
        try:
            rep = orch.morph(MorphRequest(shape=shape, region=region, origin="watch",
                                          message=f"watch: morph to {shape} in {region}"))
        except SculptError as e:
            return Action(now, shape, from_shape, region, "failed", str(e), orch.mid, time.monotonic() - t0)
        return Action(now, shape, from_shape, region, rep.result, rep.reason or rep.strategy, rep.migration_id,
                      time.monotonic() - t0)


# -- the live port --------------------------------------------------------------------------------------------
class LivePort:
    """``FleetPort`` over the running fleet: streams are replica positions, ``resize`` acts on the fleet.

    The orchestrator morphs a whole fleet to one shape, so ``resize`` takes the largest target asked for
    (never leaves a replica short) and morphs every slot to it.
    """

    def __init__(self, spec: FleetSpec, catalog: Catalog, view: FleetView, readings: Readings,
                 actuator: Actuator, streams: Sequence[str]) -> None:
        self.spec = spec
        self.catalog = catalog
        self.arrays = catalog.arrays(spec.region)
        self.names = [str(n) for n in self.arrays.names]
        self.view, self.readings, self.actuator = view, readings, actuator
        self.streams = list(streams)
        self.row_of: dict[str, int] = {}
        self.slots: list[SlotInfo] = []
        self.values: dict[str, dict[str, float]] = {}
        self.warnings: list[str] = []
        self.actions: list[Action] = []
        self.busy = False
        self.availability = Availability()
        self.allowed: np.ndarray | None = None
        self.max_fallbacks = 2
        self._current = np.full(len(self.streams), self._index(spec.shape), dtype=np.int64)

    def _index(self, shape: str) -> int:
        try:
            return self.names.index(shape)
        except ValueError:
            raise ConfigError(f"shape '{shape}' is not offered in {self.spec.region}",
                              "pick a shape from `sculpt catalog` for that region") from None

    def _assign(self, slots: Sequence[SlotInfo]) -> None:
        live = {s.id for s in slots}
        for sid in [k for k in self.row_of if k not in live]:
            del self.row_of[sid]  # its row is free for the slot that replaced it
        used = set(self.row_of.values())
        free = [r for r in range(len(self.streams)) if r not in used]
        for s in sorted(slots, key=lambda s: s.id):
            if s.id not in self.row_of and free:
                self.row_of[s.id] = free.pop(0)

    def observe(self, now: float) -> Observation:
        self.warnings = []
        self.slots = self.view.slots()
        self._assign(self.slots)
        if not self.slots:
            self.warnings.append("no serving instances (is the fleet up?): holding")
        self.values = self.readings.latest(self.slots, now) if self.slots else {}
        rows, cpu, mem = [], [], []
        for s in self.slots:
            row = self.row_of.get(s.id)
            if row is None:
                continue
            if s.shape in self.names:
                self._current[row] = self.names.index(s.shape)
            c, m = self._cpu_mem(s, self.values.get(s.id) or {})
            if c is None:
                self.warnings.append(f"{s.id}: no CPU reading this tick (metric source down or NaN): holding")
                continue
            rows.append(row)
            cpu.append(c)
            mem.append(m)
        r = np.array(rows, dtype=np.int64)
        return Observation(rows=r, t=np.full(len(r), now), cpu_cores=np.array(cpu, dtype=np.float64),
                           mem_gib=np.array(mem, dtype=np.float64))

    def _cpu_mem(self, s: SlotInfo, v: Mapping[str, float]) -> tuple[float | None, float]:
        """CPU cores (``None`` when unknown) and memory GiB (NaN when unknown) from one reading of ``s``."""
        c, m = float(v.get("cpu_cores", math.nan)), float(v.get("mem_gib", math.nan))
        if math.isnan(c) and "cpu_pct" in v and s.shape in self.names:  # CloudWatch: % of the shape
            c = float(v["cpu_pct"]) / 100.0 * float(self.arrays.vcpu[self.names.index(s.shape)])
        if not (math.isfinite(c) and c >= 0):
            return None, math.nan
        return c, (m if math.isfinite(m) and m >= 0 else math.nan)

    def history(self, start: float, end: float, step: float) -> list[Observation]:
        """The serving slots' past readings from a range source (Prometheus, CloudWatch), one ``Observation``
        per sample time, oldest first; empty when the readings keep no history (the local source)."""
        read = getattr(self.readings, "history", None)
        slots = self.view.slots()
        if read is None or not slots:
            return []
        self._assign(slots)
        data = read(slots, start, end, step)
        at: dict[float, list[tuple[int, float, float]]] = {}
        for s in slots:
            row = self.row_of.get(s.id)
            if row is None:
                continue
            for sample in data.get(s.id) or []:
                c, m = self._cpu_mem(s, sample.values)
                if c is not None:
                    at.setdefault(float(sample.time), []).append((row, c, m))
        out = []
        for t, items in sorted(at.items()):
            rows, cpu, mem = zip(*items, strict=True)
            out.append(Observation(rows=np.array(rows, dtype=np.int64), t=np.full(len(rows), t),
                                   cpu_cores=np.array(cpu, dtype=np.float64), mem_gib=np.array(mem, dtype=np.float64)))
        return out

    def current(self) -> np.ndarray:
        return self._current

    def pending(self) -> np.ndarray:
        return np.full(len(self.streams), self.busy)

    def _launch(self, idx: int, source: str, now: float) -> Action:
        target = self.names[idx]
        self.busy = True
        try:
            act = self.actuator.morph(target, self.spec.region, source, now)
        finally:
            self.busy = False
        self.actions.append(act)
        if act.result == "done":
            self.availability = self.availability.record(target, self.spec.region, True, now)
        elif act.result in ("failed", "rolled_back") and is_capacity_error(act.detail):
            self.availability = self.availability.record(target, self.spec.region, False, now)
        return act

    def resize(self, rows: np.ndarray, to: np.ndarray, now: float) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0, dtype=bool)
        big = max((int(t) for t in to), key=lambda i: (self.arrays.vcpu[i], self.arrays.memory_gib[i], i))
        source = self.names[int(self._current[int(rows[0])])]
        tried: list[int] = []
        act = self._launch(big, source, now)
        # a launch the cloud had no room for: learn it, and fall back to the next-best candidate
        while act.result not in ("done", "unchanged") and is_capacity_error(act.detail) \
                and len(tried) < self.max_fallbacks:
            tried.append(big)
            nxt = fallbacks(self.arrays, big, self.availability, self.spec.region, now, self.allowed, tried)
            if not nxt:
                break
            big = nxt[0]
            act = self._launch(big, source, now)
        ok = act.result in ("done", "unchanged")
        if ok:
            self._current[:] = big
            self._prime_new_slots(now)
        return np.full(len(rows), ok)

    def rebase(self, spec: FleetSpec) -> None:
        """The fleet now lives in ``spec.region``: shape indexes refer to that region's offerings."""
        shapes = [self.names[int(i)] for i in self._current]
        self.spec = spec
        self.arrays = self.catalog.arrays(spec.region)
        self.names = [str(n) for n in self.arrays.names]
        self.allowed = None
        fallback = self._index(spec.shape)
        self._current = np.array([self.names.index(s) if s in self.names else fallback for s in shapes],
                                 dtype=np.int64)

    def move_region(self, shape: str, region: str, now: float) -> Action:
        """Morph the whole fleet to ``shape`` in ``region`` (the orchestrator makes it blue/green: an instance
        cannot be resized into another region). The caller rebases the port when it is done."""
        source = self.names[int(self._current[0])] if len(self._current) else self.spec.shape
        self.busy = True
        try:
            act = self.actuator.morph(shape, region, source, now)
        finally:
            self.busy = False
        self.actions.append(act)
        if act.result == "done":
            self.availability = self.availability.record(shape, region, True, now)
        elif act.result in ("failed", "rolled_back") and is_capacity_error(act.detail):
            self.availability = self.availability.record(shape, region, False, now)
        return act

    def _prime_new_slots(self, now: float) -> None:
        """After a blue/green morph the serving instances are new: take a first reading now, so rates
        (CPU cores) exist at the next tick instead of one tick later."""
        slots = self.view.slots()
        if {s.id for s in slots} != {s.id for s in self.slots}:
            self.readings.latest(slots, now)


# -- reports --------------------------------------------------------------------------------------------------
@dataclass
class InstanceReport:
    slot: str
    stream: str
    shape: str
    cpu_cores: float
    mem_gib: float
    utilisation: float
    forecast_p50: float
    forecast_p95: float
    top: list[tuple[str, float]]
    confidence: float
    decision: str
    reason: str
    rps: float = math.nan
    latency_p95_ms: float = math.nan

    def to_json(self) -> dict[str, Any]:
        def f(x: float, n: int = 4) -> float | None:
            return round(x, n) if math.isfinite(x) else None

        return {"slot": self.slot, "stream": self.stream, "shape": self.shape, "cpu_cores": f(self.cpu_cores),
                "mem_gib": f(self.mem_gib), "utilisation": f(self.utilisation), "rps": f(self.rps, 2),
                "latency_p95_ms": f(self.latency_p95_ms, 2),
                "forecast": {"cpu_p50": f(self.forecast_p50), "cpu_p95": f(self.forecast_p95)},
                "top_shapes": [{"shape": s, "p": round(p, 4)} for s, p in self.top],
                "confidence": round(self.confidence, 4), "decision": self.decision, "reason": self.reason}


@dataclass
class TickReport:
    """What one tick saw, predicted, decided and did (one JSON line in the non-TTY view)."""

    stack: str
    mode: str
    t: float
    n: int
    plan: Plan
    instances: list[InstanceReport]
    action: Action | None
    warnings: list[str]
    tick_ms: float
    model_ms: float
    model: str

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "mode": self.mode, "t": round(self.t, 3), "tick": self.n,
                "model": self.model, "decision": self.plan.decision.value, "reason": self.plan.reason,
                "plan": self.plan.to_json(), "instances": [i.to_json() for i in self.instances],
                "action": self.action.to_json() if self.action else None, "warnings": list(self.warnings),
                "tick_ms": round(self.tick_ms, 3), "model_ms": round(self.model_ms, 3)}


def merge_plans(stack: str, plans: Sequence[Plan], fallback_reason: str) -> Plan:
    """One fleet plan from per-replica plans: blocked > migrate > hold; money adds up, confidence is the
    weakest replica's, the distribution is the replicas' average."""
    if not plans:
        return Plan(stack=stack, decision=Decision.HOLD, reason=fallback_reason)
    rank = {Decision.BLOCKED: 0, Decision.MIGRATE: 1, Decision.SCALE: 1, Decision.HOLD: 2}
    lead = min(plans, key=lambda p: rank[p.decision])
    dist: dict[str, float] = {}
    for p in plans:
        for k, v in p.distribution.items():
            dist[k] = dist.get(k, 0.0) + v / len(plans)
    actions = tuple(a for p in plans for a in p.actions) if lead.decision is Decision.MIGRATE else ()
    return Plan(stack=stack, decision=lead.decision, actions=actions, reason=lead.reason,
                expected_monthly_delta_usd=sum(p.expected_monthly_delta_usd for p in plans)
                if lead.decision is Decision.MIGRATE else 0.0,
                risk=max(p.risk for p in plans), confidence=min(p.confidence for p in plans),
                distribution=dict(sorted(dist.items(), key=lambda kv: -kv[1])), policy=lead.policy,
                urgent=any(p.urgent for p in plans))


# -- the service ----------------------------------------------------------------------------------------------
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
                 ledger: Any = None, checkpoint_every: int = 30) -> None:
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
        self.sculptor = Sculptor(self.guard, arrays, port.streams, model=self.cost,
                                 allowed=family_mask(arrays, spec.families), spec=spec,
                                 max_migrations_per_day=spec.policy.max_migrations_per_day)
        self.n = 0
        self.moves: Any = None  # the ledger whose record of moves the daily cap counts (``count_moves``)
        self.last: TickReport | None = None
        self.history: dict[str, deque[float]] = {}
        self.counters: Counters = {"ticks": 0, "decisions": {}, "migrations": {}, "warnings": 0}
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self.events: DecisionEvents | None = None  # the stack's watcher records its decisions (sculpt events)
        self.webhook: WebhookThread | None = None

    # -- configuration --------------------------------------------------------------------------------
    def update_spec(self, spec: FleetSpec) -> list[str]:
        """Apply new requirements (profile, SLOs, budget, aggressiveness) to the running loop; returns notes
        on how (a profile change hands over to that profile's model, see ``Handover``)."""
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
        if isinstance(self.guard.primary, Handover):
            return (f"profile '{profile}' applied live: a fresh {self.guard.name} model for it learns from now on; "
                    "the previous model keeps forecasting each instance until the new one is as confident or "
                    f"past the {self.cost.confidence_floor:.0%} confidence floor")
        return f"profile '{profile}' applied live"

    def model_profile(self) -> str | None:
        """The profile of the model forecasting now (``old->new`` while a profile change hands over)."""
        p = self.guard.primary
        if isinstance(p, Handover):
            return f"{getattr(p.old, 'profile', '?')}->{getattr(p.new, 'profile', '?')}"
        return getattr(p, "profile", None)

    def _finish_handover(self) -> None:
        if isinstance(self.guard.primary, Handover) and self.guard.primary.done:
            self.guard.primary = self.guard.primary.new

    def _sync_shape(self, act: Action | None) -> None:
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

    def _region_choice(self, rows: np.ndarray, floored: ForecastColumns | None, now: float
                       ) -> tuple[Candidate, Candidate] | None:
        """The geographic choice for the busiest replica: (best, stay) when another allowed region would
        serve it for less, availability-weighted and net of the move's cost (overlap, transfer of
        ``state_gb``, risk; ``sculpt.decide.availability.rank``); None otherwise or with too little history."""
        if len(self.spec.allowed_regions) < 2 or floored is None or len(rows) == 0:
            return None
        from sculpt.domain.forecast import Forecast

        i = int(np.nanargmax(np.asarray(floored.cpu_p95, dtype=np.float64))) if np.isfinite(
            np.asarray(floored.cpu_p95, dtype=np.float64)).any() else 0
        def g(col: Any) -> float:
            v = float(np.asarray(col)[i])
            return v if math.isfinite(v) else 0.0

        fc = Forecast(horizon_s=self.cost.horizon_h * 3600.0, cpu_p50=g(floored.cpu_p50), cpu_p95=g(floored.cpu_p95),
                      cpu_lo=0.0, cpu_hi=g(floored.cpu_hi), mem_p50=g(floored.mem_p50), mem_p95=g(floored.mem_p95),
                      mem_hi=g(floored.mem_hi), confidence=min(max(g(floored.confidence), 0.0), 1.0),
                      samples=int(g(floored.samples)))
        if fc.confidence < self.cost.confidence_floor:
            return None  # too little history to send anyone to another region
        ranked = rank(self.catalog, self.spec, fc, self.spec.shape, self.spec.region, self.port.availability, now,
                      self.cost)
        stay = next((c for c in ranked if c.shape == self.spec.shape and c.region == self.spec.region), None)
        best = ranked[0] if ranked else None
        if best is None or stay is None or best.region == self.spec.region \
                or not best.effective_usd < stay.effective_usd - 1e-9:
            return None
        return best, stay

    def elsewhere(self, rows: np.ndarray, floored: ForecastColumns | None, now: float) -> str | None:
        """The advisory note of a holding plan when another allowed region would be cheaper."""
        choice = self._region_choice(rows, floored, now)
        if choice is None:
            return None
        best, stay = choice
        return (f"elsewhere: {best.shape} in {best.region} would cost ${stay.effective_usd - best.effective_usd:.4f} "
                f"less over {self.cost.payback_h:g} h (launch availability {best.availability:.0%}); a region move is "
                f"blue/green: `sculpt morph --region {best.region} --shape {best.shape}`")

    def _region_plan(self, now: float, rows: np.ndarray, floored: ForecastColumns | None, hold: Plan) -> Plan:
        """A holding plan, or a region move when one pays and passes the gates of any non-urgent move:
        confidence floor (in ``_region_choice``), cooldown since the last move of any replica, the
        aggressiveness threshold on the availability-weighted net gain, and every mandatory policy rule on
        the fleet it would produce (regions, budget, migrations per day, change windows...). A move that
        fails a gate stays an advisory note that says which gate."""
        choice = self._region_choice(rows, floored, now)
        if choice is None or self.port.busy:
            return hold
        best, stay = choice
        note = self.elsewhere(rows, floored, now) or ""
        if self.spec.engine != "local":  # a cloud stack's load balancer is regional: a move is a new stack
            return hold.model_copy(update={"reason": f"{hold.reason}; {note} (advisory on engine "
                                                     f"'{self.spec.engine}')"})
        gain = stay.effective_usd - best.effective_usd
        price = self.catalog.price(self.spec.shape, self.spec.region)
        threshold = self.cost.gain_threshold() * (price if math.isfinite(price) else 0.0) * self.cost.payback_h
        st = self.sculptor.state
        waited = float(np.min(st.since_last_move(now))) if len(st) else math.inf
        if waited < self.cost.cooldown_s:
            return hold.model_copy(update={"reason": f"{hold.reason}; {note} (not now: cooling down after the last move)"})
        if not gain > threshold:
            return hold.model_copy(update={"reason": f"{hold.reason}; {note} (not now: the saving does not clear the "
                                                     "aggressiveness threshold)"})
        arrays = self.catalog.arrays(best.region)
        target = [str(n) for n in arrays.names].index(best.shape)
        day = int(np.max(st.moves_last_day(now))) if len(st) else 0
        policy = policy_gate(self.spec, arrays, target, day, now, region=best.region)
        failed = [r.rule for r in policy if not r.passed and r.level == "mandatory"]
        if failed:
            return hold.model_copy(update={"reason": f"{hold.reason}; {note} (not now: policy blocks it: "
                                                     f"{', '.join(failed)})"})
        n = max(len(self.port.slots), 1)
        actions = tuple(PlanAction(kind="move", slot=sl.id, from_shape=sl.shape, to_shape=best.shape,
                                   from_region=sl.region, to_region=best.region) for sl in self.port.slots) or \
            (PlanAction(kind="move", slot=self.spec.fleet, from_shape=self.spec.shape, to_shape=best.shape,
                        from_region=self.spec.region, to_region=best.region),)
        delta = (float(arrays.price[target]) - price) * HOURS_PER_MONTH * n
        reason = (f"moving to {best.region} saves ${gain:.4f} per instance over {self.cost.payback_h:g} h net of the "
                  f"move (overlap, transfer, risk; launch availability {best.availability:.0%}); blue/green: "
                  f"{self.spec.shape} in {self.spec.region} -> {best.shape} in {best.region}")
        return Plan(stack=self.spec.fleet, decision=Decision.MIGRATE, actions=actions, reason=reason,
                    expected_monthly_delta_usd=delta if math.isfinite(delta) else 0.0, risk=hold.risk,
                    confidence=hold.confidence, distribution=hold.distribution, policy=policy, urgent=False)

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

    def _move_region(self, shape: str, region: str, now: float) -> Action:
        """Act on a region move (auto: the orchestrator, blue/green; recommend: recorded only). Every
        replica's cooldown starts now, as for any move."""
        act = self.port.move_region(shape, region, now)
        self.sculptor.state = self.sculptor.state.record(np.ones(len(self.sculptor.state), dtype=bool), now)
        if act.result == "done":
            self._rehome(region, shape)
            self.port._prime_new_slots(now)  # the new instances' rates exist at the next tick
        return act

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
        with self.lock:
            t0 = time.perf_counter()
            m0 = self.guard.model_s
            n_actions = len(self.port.actions)
            self.count_moves(self.clock.now())
            self._discount_unavailable()
            rows, batch = tick(self.sculptor, self.port, self.clock)
            self._finish_handover()
            acts = self.port.actions[n_actions:]
            act = acts[-1] if acts else None
            act_s = sum(a.seconds for a in acts)
            self._sync_shape(act)
            now = self.clock.now()
            report = self._report(now, rows, batch, act)
            move = next((a for a in report.plan.actions if a.kind == "move"), None)
            if act is None and move is not None and move.to_region and move.to_shape:
                act = self._move_region(move.to_shape, move.to_region, now)
                act_s += act.seconds
                report.action = act
                if act.result in ("rolled_back", "failed"):
                    report.warnings.append(f"move to {act.to_shape} in {act.region} {act.result}: {act.detail}")
            # the overhead of the tick excludes the morph it triggered (seconds of real work)
            report.tick_ms = max(0.0, (time.perf_counter() - t0 - act_s) * 1000.0)
            report.model_ms = (self.guard.model_s - m0) * 1000.0
            self.n += 1
            self.last = report
            self._count(report)
            if self.events is not None:
                self.events.observe(report.plan, now, executed=act.result if act is not None else None)
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
        """The next plan without acting: the last tick's if there was one, else a decision on what is known."""
        with self.lock:
            if self.last is not None:
                return self.last.plan
            rows = np.arange(len(self.sculptor.streams))
            self.count_moves(self.clock.now())
            batch = self.sculptor.decide(self.clock.now(), self.port.current(), self.port.pending(), rows)
            return self._fleet_plan(self.clock.now(), rows, batch)[0]

    def _forecast(self, rows: np.ndarray) -> tuple[ForecastBatch, Columns]:
        """The model's forecast of ``rows`` and the same floored by the latest readings (``nowcast``)."""
        names = [self.sculptor.streams[int(i)] for i in rows]
        fc = self.guard.forecast_many(names, self.cost.horizon_h * 3600.0)
        cpu, mem = self.sculptor.last_cpu[rows], self.sculptor.last_mem[rows]
        peaks = getattr(self.sculptor, "peaks", None)
        if peaks is not None:  # the same floors the decision used (recent peaks), when the loop keeps them
            try:
                return fc, nowcast(fc, cpu, mem, recall=peaks[rows].max(axis=1),
                                   mem_recall=getattr(self.sculptor, "mem_recall_h", 0) > 0)
            except (TypeError, IndexError, AttributeError) as e:
                log.debug("nowcast with recall unavailable (%s); showing the plain nowcast", e)
        return fc, nowcast(fc, cpu, mem)

    def _fleet_plan(self, now: float, rows: np.ndarray, batch: BatchDecision,
                    floored: ForecastColumns | None = None) -> tuple[Plan, list[Plan]]:
        """The fleet's plan and the per-replica plans it merges (one per decided row)."""
        if floored is None:
            floored = self._forecast(rows)[1] if len(rows) else None
        plans = []
        for i, row in enumerate(rows):
            plan = plan_of(batch, i, stack=self.spec.fleet, slot=self._slot_of(int(row)), arrays=self.port.arrays,
                           spec=self.spec, region=self.spec.region, now=now, forecast=floored,
                           allowed=self.sculptor.allowed, model=self.cost,
                           moves_last_day=int(self.sculptor.state.moves_last_day(now)[int(row)]))
            if Why(int(batch.why[i])) is Why.NO_HISTORY:
                plan = plan.model_copy(update={"reason": f"{REASONS[Why.NO_HISTORY]}: the model has seen no complete "
                                               f"{self.cost.horizon_h * 60:g}-minute period of this fleet's demand, so "
                                               "confidence is 0 and sculpt holds (keep `sculpt watch` running)"})
            elif plan.decision is Decision.HOLD and plan.confidence < self.cost.confidence_floor:
                n = int(np.asarray(floored.samples)[i]) if floored is not None else 0
                plan = plan.model_copy(update={"reason": f"{plan.reason}; little history: {n} period(s) seen, "
                                               f"confidence {plan.confidence:.0%} is below the "
                                               f"{self.cost.confidence_floor:.0%} floor, so only urgent moves "
                                               "are made"})
            plans.append(plan)
        reason = "no usable metrics this tick, so nothing to decide on: holding"
        merged = merge_plans(self.spec.fleet, plans, reason)
        if not plans:
            merged = merged.model_copy(update={"policy": self._hold_policy(now)})
        if merged.decision is Decision.HOLD:
            merged = self._region_plan(now, rows, floored, merged)
        return merged, plans

    def _hold_policy(self, now: float) -> tuple[RuleResult, ...]:
        from sculpt.domain.fleet import Fleet
        from sculpt.rules import RuleContext, evaluate

        fleet = Fleet.from_spec(self.spec)
        price = self.catalog.price(self.spec.shape, self.spec.region)
        return evaluate(RuleContext(spec=self.spec, fleet=fleet, hourly_cost=price * len(fleet.slots),
                                    families={self.spec.shape: self.catalog.shape(self.spec.shape).family},
                                    is_change=False, now=now, tags=self.spec.tags))

    def _slot_of(self, row: int) -> str:
        for sid, r in self.port.row_of.items():
            if r == row:
                return sid
        return self.sculptor.streams[row]

    def _report(self, now: float, rows: np.ndarray, batch: BatchDecision, act: Action | None) -> TickReport:
        floored = self._forecast(rows)[1] if len(rows) else None
        plan, subs = self._fleet_plan(now, rows, batch, floored)
        out = []
        arrays = self.port.arrays
        for i, row in enumerate(rows):
            assert floored is not None  # rows is not empty here
            row = int(row)
            slot = self._slot_of(row)
            cur = int(batch.current[i])
            cpu = float(self.sculptor.last_cpu[row])
            vals = self.port.values.get(slot, {})
            util = cpu / float(arrays.vcpu[cur]) if arrays.vcpu[cur] > 0 else math.nan
            self.history.setdefault(slot, deque(maxlen=SPARK)).append(util)
            sub = subs[i]
            top = sorted(sub.distribution.items(), key=lambda kv: -kv[1])[:3]
            out.append(InstanceReport(slot=slot, stream=self.sculptor.streams[row], shape=str(arrays.names[cur]),
                                      cpu_cores=cpu, mem_gib=float(self.sculptor.last_mem[row]), utilisation=util,
                                      forecast_p50=float(floored.cpu_p50[i]), forecast_p95=float(floored.cpu_p95[i]),
                                      top=top, confidence=float(batch.confidence[i]), decision=sub.decision.value,
                                      reason=sub.reason, rps=float(vals.get("rps", math.nan)),
                                      latency_p95_ms=float(vals.get("latency_p95_ms", math.nan))))
        warnings = list(self.port.warnings)
        if self.guard.degraded:
            warnings.append(self.guard.degraded)
        if act is not None and act.result in ("rolled_back", "failed"):
            warnings.append(f"morph to {act.to_shape} {act.result}: {act.detail}")
        return TickReport(self.spec.fleet, self.mode, now, self.n + 1, plan, out, act, warnings, 0.0, 0.0,
                          self.guard.name if not self.guard.degraded else f"{self.guard.name}->last-value")

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


# -- composition for a local stack ----------------------------------------------------------------------------
@dataclass
class Opened:
    """A service wired to a stack, and what must be released when done."""

    service: SculptorService
    wiring: Any
    notes: list[str] = field(default_factory=list)
    locked: bool = False
    save: bool = True

    def close(self) -> None:
        try:
            if self.service.webhook is not None:
                self.service.webhook.stop()
            if self.save:
                self.service.checkpoint()
        finally:
            if self.locked:
                self.wiring.ledger.release(watch_lock(self.wiring.stack))
            self.wiring.close()


REQUIREMENT_FIELDS = ("profile", "slo", "budget_usd_per_hour", "aggressiveness")


def api_requirements(ledger: Any, stack: str, spec: FleetSpec, spec_path: Any) -> tuple[FleetSpec, str | None]:
    """Requirements changed through the API (a ``requirements`` stack version) survive a restart unless
    sculpt.yaml was edited after them: the newer word wins."""
    import os

    last = next((v for v in reversed(ledger.versions(stack)) if v.kind == "requirements"), None)
    if last is None:
        return spec, None
    try:
        edited = os.path.getmtime(spec_path) if spec_path is not None else 0.0
    except OSError:
        edited = 0.0
    if edited > last.time:
        return spec, None
    changes = {k: last.spec[k] for k in REQUIREMENT_FIELDS if k in last.spec}
    try:
        new = spec.with_changes(**changes)
    except Exception:  # noqa: BLE001 - an unreadable old version never stops the watcher
        return spec, None
    if new == spec:
        return spec, None
    return new, f"requirements set through the API (version {last.version}) override sculpt.yaml's"


def make_readings(source: str, clock: Clock | None = None) -> Readings:
    """``local`` | ``prometheus=URL`` | ``cloudwatch[=REGION]`` (``gcp-monitoring``: ``sculpt.app.cloud``)."""
    kind, _, arg = source.partition("=")
    if kind == "local":
        return LocalReadings(clock=None)
    if kind == "prometheus":
        if not arg:
            raise ConfigError("--source prometheus needs the server URL", "pass --source prometheus=http://host:9090")
        from sculpt.metrics.prometheus import PrometheusSource

        return RangeReadings(PrometheusSource(arg))
    if kind == "cloudwatch":
        from sculpt.metrics import cloudwatch

        factory = getattr(cloudwatch, "CloudWatchSource", None)
        if factory is None:
            raise ConfigError("this installation has no CloudWatch source", "use --source local or prometheus=URL")
        return RangeReadings(factory(region=arg or "us-east-1"), window_s=900.0, step_s=60.0)
    if kind == "gcp-monitoring":  # by slot, wired for GCP stacks in sculpt.app.cloud
        raise ConfigError("--source gcp-monitoring reads a GCP stack's instances (engine: pulumi, provider: gcp)",
                          "use --source local or prometheus=URL for this fleet")
    raise ConfigError(f"unknown metric source '{source}'",
                      "use local, prometheus=URL, cloudwatch[=REGION] or gcp-monitoring (GCP stacks)")


def open_service(spec_path: Any, *, mode: Mode = "recommend", model: str = "ensemble", source: str = "local",
                 clock: Clock | None = None, cost: CostModel | None = None, lock: bool = True,
                 recover: bool = True, progress: Any = None, timeouts: Any = None, seed: int = 0,
                 save: bool = True, backfill_h: float | None = None) -> Opened:
    """Wire the live sculptor of the stack in ``spec_path``: lock, recovery, checkpoint, port, actuator.

    ``lock`` takes ``"<stack>:watch"`` (a second watcher gets ``LockedError``); ``recover`` finishes or
    rolls back a morph a dead controller left half-done. ``backfill_h``: hours of the range source's history
    to learn before the first tick; ``None`` means ``AUTO_BACKFILL_H`` when no model checkpoint was resumed
    and the source keeps history (Prometheus, CloudWatch), else none.
    """
    from sculpt.app.wiring import wire
    from sculpt.forecast import persist

    w = wire(spec_path)
    notes: list[str] = []
    locked = False
    try:
        spec = w.spec
        assert spec is not None
        if lock:
            w.ledger.acquire(watch_lock(w.stack), "sculpt watch")
            locked = True
        cloud = None
        if spec.engine == "pulumi":  # CloudWatch by slot, and the cloud morph platform: sculpt.app.cloud
            from sculpt.app.cloud import CloudWiring

            cloud = CloudWiring.of(w.engine, w.catalog, spec, mode=mode)
        if recover:
            from sculpt.migrate import recover as _recover

            for rep in _recover(w.state_dir, w.stack, ledger=w.ledger,
                                platform=cloud.platform if cloud else None):
                notes.append(f"recovered interrupted morph {rep.migration_id}: {rep.result}")
        cm = cost or cost_model_for(spec)
        from sculpt.forecast.prior import PRIOR_MODELS, find_prior

        prior = find_prior(w.state_dir, spec.profile) if model in PRIOR_MODELS else None
        predictor, note = persist.restore(w.ledger, checkpoint_key(w.stack), model, profile=spec.profile,
                                          seed=seed, horizon_s=cm.horizon_h * 3600.0,
                                          **({"prior": str(prior)} if prior is not None else {}))
        resumed = False
        if note:
            notes.append(note)
        elif w.ledger.load_checkpoint(checkpoint_key(w.stack), model) is not None:
            notes.append(f"resumed model '{model}' from its checkpoint")
            resumed = True
        if prior is not None and not resumed:
            notes.append(f"cold-start prior {prior} answers for streams younger than two days")
        notes.extend(getattr(predictor, "notes", []) or [])
        from sculpt.providers.local.client import AgentClient

        client = AgentClient(w.state_dir, w.stack)
        view: FleetView = AgentFleetView(client) if spec.engine == "local" else EngineFleetView(w.engine)
        if mode == "auto":
            from sculpt.migrate.local import LocalPlatform

            platform = cloud.platform if cloud else LocalPlatform(w.engine, w.state_dir)
            actuator: Actuator = OrchestratorActuator(platform, w.ledger, progress=progress,
                                                      timeouts=timeouts or (cloud.timeouts if cloud else None))
        else:
            actuator = Recommender()
        current = w.engine.current() if hasattr(w.engine, "current") else None
        live_spec = current.spec if current is not None else spec
        # the running version's spec carries the shape the fleet runs now, and the region when a region move
        # (any allowed region) took it away from sculpt.yaml's
        if live_spec.region == spec.region:
            spec = spec.with_changes(shape=live_spec.shape)
        elif live_spec.region in spec.allowed_regions:
            spec = spec.with_changes(shape=live_spec.shape, region=live_spec.region,
                                     regions=[r for r in spec.allowed_regions if r != live_spec.region])
            notes.append(f"the fleet runs in {live_spec.region} (moved there from {w.spec.region if w.spec else '?'})")
        spec, note = api_requirements(w.ledger, w.stack, spec, w.spec_path)
        if note:
            notes.append(note)
        if getattr(predictor, "profile", spec.profile) != spec.profile:  # the checkpoint is another profile's
            notes.append(f"profile changed from '{getattr(predictor, 'profile', '?')}' to '{spec.profile}': the "
                         "checkpointed model forecasts until the new profile's model is as confident")
            predictor = switch_profile(predictor, spec.profile, cm.horizon_h * 3600.0, cm.confidence_floor)
        by_slot = cloud.readings_source(source) if cloud else None
        readings = RangeReadings(by_slot, window_s=900.0, step_s=60.0) if by_slot is not None else make_readings(source, clock)
        port = LivePort(spec, w.catalog, view, readings, actuator,
                        stream_names(w.stack, spec.replicas.max))
        svc = SculptorService(spec, w.catalog, predictor, port, clock=clock, mode=mode, cost=cm,
                              ledger=w.ledger if save else None)
        migs = [m for m in w.ledger.migrations(w.stack) if m.result == "done"]
        if migs:
            svc.seed_cooldown(max(m.started for m in migs))
        svc.moves = w.ledger  # the daily cap reads the one record of moves (also for `sculpt plan`)
        if lock and save:  # the stack's one watcher records its decisions and delivers the events
            svc.events = DecisionEvents(w.ledger, w.stack)
            if spec.events.webhook_url:
                svc.webhook = WebhookThread(Webhook(w.ledger, w.stack, spec.events.webhook_url),
                                            period_s=float(spec.tick_s)).start()
        svc.count_moves(svc.clock.now())
        hours = (0.0 if resumed else AUTO_BACKFILL_H) if backfill_h is None else backfill_h
        if hours > 0 and hasattr(readings, "history"):
            try:
                n = svc.backfill(hours)
                notes.append(f"learned {n} sample(s) from the last {hours:g} h of --source {source}")
            except SculptError as e:
                notes.append(f"no backfill from --source {source}: {e}")
        return Opened(svc, w, notes, locked, save)
    except BaseException:
        if locked:
            w.ledger.release(watch_lock(w.stack))
        w.close()
        raise
