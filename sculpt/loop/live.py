"""The live port: the loop's ``FleetPort`` over a running fleet.

Why it exists: replay and the live service run the same tick (``sculpt.loop.tick``); this is what makes it
live. Streams are replica positions (``web#0``, ``web#1``...), not slot ids, so a blue/green morph that
replaces ``web-0`` by ``web-1`` continues the same demand history. A reading that is missing or NaN is not
learned and its instance holds (with a warning); ``execute`` runs the plan's morph through the
``Actuator`` (the orchestrator in ``auto`` mode, a recorder in ``recommend`` mode).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sculpt.decide.availability import Availability, fallbacks, is_capacity_error
from sculpt.decide.fleet import Moves
from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.fleet import SlotInfo
from sculpt.domain.spec import FleetSpec
from sculpt.loop.tick import Observation
from sculpt.metrics.readings import Readings
from sculpt.migrate.actuator import Actuator, MorphOutcome

if TYPE_CHECKING:
    from sculpt.engine.base import StackEngine
    from sculpt.providers.local.client import AgentClient

log = logging.getLogger("sculpt.loop")


class FleetView(Protocol):
    """Where the fleet's serving instances are now (the local agent; a cloud API)."""

    def slots(self) -> list[SlotInfo]: ...


class AgentFleetView:
    """The serving slots of a local stack, from its agent's ``status()``; an agent that is down gives none."""

    def __init__(self, client: AgentClient) -> None:
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

    def __init__(self, engine: StackEngine) -> None:
        self.engine = engine

    def slots(self) -> list[SlotInfo]:
        try:
            fleet = self.engine.current()
        except SculptError as e:
            log.warning("cannot read the stack's current version: %s", e)
            return []
        return [SlotInfo(s.id, s.shape, s.region) for s in (fleet.slots if fleet else ()) if s.weight > 0]


class LivePort:
    """``FleetPort`` over the running fleet: streams are replica positions, ``execute`` morphs the fleet.

    The orchestrator morphs a whole fleet to one shape; the fleet's plan (``sculpt.decide.fleet``) already
    names that shape, so ``execute`` carries it out as planned.
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
        self.actions: list[MorphOutcome] = []
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
        rows, cpu, mem, lat = [], [], [], []
        for s in self.slots:
            row = self.row_of.get(s.id)
            if row is None:
                continue
            if s.shape in self.names:
                self._current[row] = self.names.index(s.shape)
            v = self.values.get(s.id) or {}
            c, m = self._cpu_mem(s, v)
            if c is None:
                self.warnings.append(f"{s.id}: no CPU reading this tick (metric source down or NaN): holding")
                continue
            rows.append(row)
            cpu.append(c)
            mem.append(m)
            ms = float(v.get("latency_p95_ms", math.nan))
            lat.append(ms if math.isfinite(ms) and ms >= 0 else math.nan)
        r = np.array(rows, dtype=np.int64)
        return Observation(rows=r, t=np.full(len(r), now), cpu_cores=np.array(cpu, dtype=np.float64),
                           mem_gib=np.array(mem, dtype=np.float64), latency_ms=np.array(lat, dtype=np.float64))

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
        slots = self.view.slots() if self.readings.keeps_history else []
        if not slots:
            return []
        self._assign(slots)
        data = self.readings.history(slots, start, end, step)
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

    def _launch(self, shape: str, region: str, source: str, now: float) -> MorphOutcome:
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

    def execute(self, moves: Moves, now: float) -> np.ndarray:
        """Morph the whole fleet as the plan says: every row of ``moves`` to one shape (in ``moves.region``
        when it is a region move: blue/green, the caller rebases the port once it is done). A launch the
        cloud had no room for is learned and, in the home region, the next-best candidate is tried; the
        outcome's detail then names the shape the plan asked for."""
        if not moves:
            return np.zeros(0, dtype=bool)
        if len(set(int(t) for t in moves.to)) != 1:
            raise ValueError("a fleet morphs to one shape: the plan's moves name several")
        region = moves.region or self.spec.region
        names = self.names if moves.region is None else [str(n) for n in self.catalog.arrays(region).names]
        planned = target = int(moves.to[0])
        source = self.names[int(self._current[int(moves.rows[0])])]
        act = self._launch(names[target], region, source, now)
        tried: list[int] = []
        while moves.region is None and not act.ok and is_capacity_error(act.detail) \
                and len(tried) < self.max_fallbacks:
            tried.append(target)
            nxt = fallbacks(self.arrays, target, self.availability, region, now, self.allowed, tried)
            if not nxt:
                break
            target = nxt[0]
            act = self._launch(names[target], region, source, now)
        if target != planned:
            act.detail = f"the plan's {names[planned]} had no capacity, so {names[target]}: {act.detail}"
        if act.ok and moves.region is None:
            self._current[:] = target
        if act.ok:
            self._prime_new_slots(now)
        return np.full(len(moves.rows), act.ok)

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

    def _prime_new_slots(self, now: float) -> None:
        """After a blue/green morph the serving instances are new: take a first reading now, so rates
        (CPU cores) exist at the next tick instead of one tick later."""
        slots = self.view.slots()
        if {s.id for s in slots} != {s.id for s in self.slots}:
            self.readings.latest(slots, now)
