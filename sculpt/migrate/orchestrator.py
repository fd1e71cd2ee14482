"""The morph orchestrator: a journaled state machine that moves a fleet to a new shape or region.

Why it exists: moving a live, stateful application is the one place where sculpt can lose data or drop
requests. Every transition is written to the ledger's journal *before* it is taken, each fleet change is a
new stack version (green slots added at weight 0, weights shifted, blue slots removed), and any failure or
timeout re-applies the version the replica started from, so blue keeps (or resumes) serving.

Rules the code keeps (and the tests check):

- blue is not touched before green is healthy and holds the state;
- exactly one instance accepts writes for a key at any moment: blue is made read-only under the pause
  before the final delta, green gets traffic only after the shift;
- capacity never drops: green is added before blue is removed, one replica at a time;
- a paused load balancer is always resumed (on success, on rollback, and by crash recovery);
- time comes from the injected ``Clock``: timeouts in tests pass in no time.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sculpt.domain.clock import Clock
from sculpt.domain.errors import ConfigError, ProviderError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.migrate.faults import Crash, Faults, InjectedFault, hits, kill_self
from sculpt.migrate.port import Platform
from sculpt.migrate.states import (
    BLUE_GREEN_STEPS,
    IN_PLACE_STEPS,
    MorphReport,
    State,
    Step,
    can_follow,
    committed,
)
from sculpt.migrate.sync import Handover, Ring, Syncer

log = logging.getLogger("sculpt.migrate")

Strategy = Literal["auto", "in-place", "blue-green"]
STRATEGIES: tuple[str, ...] = ("auto", "in-place", "blue-green")
Progress = Callable[[Step], None]


class StepTimeout(ProviderError):
    """A step did not finish before its deadline (measured on the injected clock)."""

    def __init__(self, what: str, seconds: float, fix: str) -> None:
        super().__init__(f"{what} within {seconds:g}s", fix, retryable=True)


@dataclass(frozen=True)
class Timeouts:
    """Deadlines per step, seconds on the injected clock."""

    healthy_s: float = 30.0
    step_s: float = 30.0
    drain_s: float = 10.0
    poll_s: float = 0.02


@dataclass(frozen=True)
class MorphRequest:
    shape: str | None = None
    region: str | None = None
    strategy: Strategy = "auto"


@dataclass
class _Ctx:
    """What one replica's handover needs to know; journaled with every state so recovery can finish it."""

    replica: int
    base_version: int
    blue: str
    green: str
    shape: str
    region: str
    handover: Handover | None = None
    paused: bool = False
    readonly: list[str] = field(default_factory=list)
    reached: State = State.PLAN

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.replica, "base_version": self.base_version, "blue": self.blue,
                "green": self.green, "shape": self.shape, "region": self.region,
                "handover": self.handover.to_json() if self.handover else None,
                "paused": self.paused, "readonly": list(self.readonly), "reached": self.reached.value}

    @staticmethod
    def from_json(d: dict[str, Any]) -> _Ctx:
        h = d.get("handover")
        return _Ctx(int(d["replica"]), int(d["base_version"]), str(d["blue"]), str(d["green"]), str(d["shape"]),
                    str(d["region"]), Handover.from_json(h) if h else None, bool(d.get("paused")),
                    list(d.get("readonly") or []), State(d.get("reached", "PLAN")))


def next_slot_ids(fleet_name: str, used: Sequence[str], n: int) -> list[str]:
    """``n`` fresh slot ids ``<fleet>-<k>``, past every id the stack ever used (data dirs are per id).

    >>> next_slot_ids("web", ["web-0", "web-3", "other"], 2)
    ['web-4', 'web-5']
    """
    pat = re.compile(rf"^{re.escape(fleet_name)}-(\d+)")
    top = max((int(m.group(1)) for u in used if (m := pat.match(u))), default=-1)
    return [f"{fleet_name}-{top + 1 + i}" for i in range(n)]


def serving(fleet: Fleet) -> Ring:
    """Slots that take traffic (weight > 0) with their weights, in fleet order: the hash ring."""
    return tuple((s.id, s.weight) for s in fleet.slots if s.weight > 0)


def unreachable_faults(faults: Faults, strategy: str) -> list[str]:
    """Faults of ``faults`` that a morph with ``strategy`` never reaches (said, not silently ignored)."""
    steps = {s.value for s in (IN_PLACE_STEPS if strategy == "in-place" else BLUE_GREEN_STEPS)}
    out = []
    if strategy == "in-place":
        out += [n for n, on in (("restore-fails", faults.restore_fails), ("shift-fails", faults.shift_fails)) if on]
    for name, where in (("step-timeout", faults.timeout_at), ("crash-at", faults.crash_at),
                        ("crash-before", faults.crash_before)):
        if where and not where.startswith("#") and where not in steps and where != "ROLLBACK":
            out.append(f"{name}:{where}")
    return out


def _reason(e: BaseException) -> str:
    if isinstance(e, SculptError):
        return e.message
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"internal error: {type(e).__name__}: {e}"


def with_spec_of(fleet: Fleet) -> Fleet:
    """Once every slot runs one shape in one region, the version's spec says so too (``shape``/``region``)."""
    kinds = {(s.shape, s.region) for s in fleet.slots}
    if len(kinds) != 1:
        return fleet
    ((shape, region),) = kinds
    if (fleet.spec.shape, fleet.spec.region) == (shape, region):
        return fleet
    regions = [r for r in fleet.spec.allowed_regions if r != region]
    return Fleet(spec=fleet.spec.with_changes(shape=shape, region=region, regions=regions), slots=fleet.slots)


class Orchestrator:
    """Runs morphs (and recovers interrupted ones) on a ``Platform``, journaling into a ledger."""

    def __init__(self, platform: Platform, ledger: Any, clock: Clock, *, faults: Faults | None = None,
                 timeouts: Timeouts | None = None, crash: Crash = kill_self, progress: Progress | None = None,
                 migration_id: str | None = None) -> None:
        self.p = platform
        self.ledger = ledger
        self.clock = clock
        self.faults = faults or Faults()
        self.t = timeouts or Timeouts()
        self.crash = crash
        self.progress = progress
        self.mid = migration_id or f"m-{uuid.uuid4().hex[:10]}"
        self.report: MorphReport | None = None
        self._state = State.PLAN
        self._step_no = 0
        self._pause_started: float | None = None

    # -- public -------------------------------------------------------------------------------------------
    def morph(self, request: MorphRequest) -> MorphReport:
        """Move the fleet to ``request``'s shape/region. Returns the report (result done / rolled_back /
        unchanged); raises ``SculptError`` for requests that cannot start (nothing changed then).

        Holds the stack lock from the first read to the last write, so no ``sculpt up`` interleaves."""
        with self.ledger.lock(self.p.stack, f"morph {self.mid}"):
            return self._morph(request)

    def _morph(self, request: MorphRequest) -> MorphReport:
        version, fleet = self.p.current()
        if not fleet.slots:
            raise ConfigError(f"stack '{self.p.stack}' has no instances to morph", "run `sculpt up` first")
        first = fleet.slots[0]
        shape = request.shape or first.shape
        region = request.region or first.region
        todo = [i for i, s in enumerate(fleet.slots) if (s.shape, s.region) != (shape, region)]
        strategy = self._choose(request.strategy, fleet, todo, region)
        source = {"shape": first.shape, "region": first.region, "version": version, "replicas": len(fleet.slots)}
        target = {"shape": shape, "region": region}
        rep = self.report = MorphReport(self.mid, strategy, source, target)
        if not todo:
            rep.result = "unchanged"
            return rep
        syncer = Syncer(self.p, fleet.spec.app.state_sync, restore_fails=self.faults.restore_fails,
                        command_timeout_s=self.t.step_s)
        if strategy == "blue-green":
            syncer.check(self.p.keyed_routing(), len(fleet.slots))
            if len(fleet.slots) > 1 and not self.p.keyed_routing() and syncer.strategy != "none":
                raise ConfigError(
                    f"a stateful fleet of {len(fleet.slots)} replicas behind weighted routing has no single "
                    "owner per key, so its state cannot be handed over safely",
                    "set lb.routing: hash (one owner per key) or app.state_sync.strategy: none")
        for unused in unreachable_faults(self.faults, strategy):
            log.warning("fault '%s' never fires in a%s %s morph", unused, "n" if strategy[0] == "i" else "",
                        strategy)
        self.ledger.begin_migration(self.mid, self.p.stack, strategy, source, target, State.PLAN.value,
                                    when=self.clock.now())
        self._run(strategy, todo, shape, region, syncer, start=0)
        return rep

    def recover(self, migration: Any) -> MorphReport:
        """Finish an interrupted migration from its journal: roll forward once traffic reached green,
        else roll back. Always leaves the load balancer resumed."""
        entries = self.ledger.journal_entries(migration.id)
        self.mid = migration.id
        rep = self.report = MorphReport(migration.id, migration.strategy, migration.source, migration.target)
        last = entries[-1] if entries else None
        state = State(last.state) if last else State.PLAN
        ctx_json = next((e.data["ctx"] for e in reversed(entries) if e.data.get("ctx")), None)
        self._state = state
        real = [e for e in entries if not e.data.get("update")]
        self._step_no = sum(1 for e in real if e.state != State.PLAN.value)
        rep.steps = [Step(State(e.state), e.time, replica=int((e.data.get("ctx") or {}).get("replica", 0)))
                     for e in real if e.state != State.PLAN.value]
        with self.ledger.lock(self.p.stack, f"recover {migration.id}"):
            if state is State.DONE:
                return self._finish("done", None)
            if state is State.ROLLED_BACK:
                return self._finish("rolled_back", migration.reason or "rolled back before a crash")
            if ctx_json is None:  # crashed before touching anything
                self.p.resume()
                self._enter(State.ROLLBACK, None, {"reason": "controller died before the first step",
                                                   "recovered": True})
                self._enter(State.ROLLED_BACK, None, {})
                return self._finish("rolled_back", "controller died before the first step")
            ctx = _Ctx.from_json(ctx_json)
            ctx.paused = True  # we cannot know: resume whatever happens
            reason = f"controller died during {state.value} (replica {ctx.replica})"
            if migration.strategy == "blue-green" and state is not State.ROLLBACK and committed(state):
                log.warning("morph %s: %s; traffic had reached green, rolling forward", self.mid, reason)
                spec_fleet = self.p.current()[1]
                syncer = Syncer(self.p, spec_fleet.spec.app.state_sync, command_timeout_s=self.t.step_s)
                try:
                    self._finish_replica(ctx, state)
                    todo = [i for i, s in enumerate(self.p.current()[1].slots)
                            if (s.shape, s.region) != (ctx.shape, ctx.region)]
                    self._run("blue-green", todo, ctx.shape, ctx.region, syncer, start=ctx.replica + 1)
                except SculptError as e:
                    if rep.result != "running":
                        return rep
                    raise ProviderError(f"could not finish morph {self.mid} after a crash: {e.message}",
                                        "fix the cause and run any sculpt command again to retry") from None
                return rep
            self._rollback(ctx, reason, recovered=True)
            return rep

    # -- strategy -----------------------------------------------------------------------------------------
    def _choose(self, wanted: str, fleet: Fleet, todo: list[int], region: str) -> str:
        if wanted not in STRATEGIES:
            raise ConfigError(f"unknown strategy '{wanted}'", f"use one of: {', '.join(STRATEGIES)}")
        region_change = any(fleet.slots[i].region != region for i in todo)
        blocker = "the region changes (a live resize cannot move an instance)" if region_change else None
        if blocker is None:
            blocker = self.p.live_resize_blocker()
        if wanted == "in-place":
            if blocker:
                raise ConfigError(f"cannot morph in place: {blocker}", "use --strategy blue-green (or auto)")
            return "in-place"
        if wanted == "blue-green":
            return "blue-green"
        return "in-place" if blocker is None else "blue-green"

    # -- the machine --------------------------------------------------------------------------------------
    def _run(self, strategy: str, todo: list[int], shape: str, region: str, syncer: Syncer, *,
             start: int) -> None:
        """Morph the slots at indexes ``todo``, one replica at a time (replica numbers from ``start``)."""
        ctx: _Ctx | None = None
        try:
            ids = [s.id for s in self.p.current()[1].slots]
            order = [ids[i] for i in todo]
            for k, blue_id in enumerate(order):
                n = start + k
                version, fleet = self.p.current()
                blue = next(s for s in fleet.slots if s.id == blue_id)
                if strategy == "in-place":
                    ctx = _Ctx(n, version, blue.id, blue.id, shape, region)
                    self._in_place(ctx, fleet, blue)
                else:
                    used = self._ids_ever_used(fleet)
                    green_id = next_slot_ids(fleet.name, used, 1)[0]
                    ctx = _Ctx(n, version, blue.id, green_id, shape, region)
                    self._blue_green(ctx, fleet, blue, syncer)
            self._enter(State.DONE, None, {})
            self._finish("done", None)
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure rolls back
            reason = _reason(e)
            if ctx is None:
                self._enter(State.ROLLBACK, None, {"reason": reason})
                self._enter(State.ROLLED_BACK, None, {})
                self._finish("rolled_back", reason)
            else:
                try:
                    self._rollback(ctx, reason)
                except SculptError as again:
                    raise ProviderError(
                        f"morph {self.mid} failed ({reason}) and rolling it back failed too: {again.message}",
                        "run any sculpt command again: it resumes the rollback from the journal") from None
            if isinstance(e, KeyboardInterrupt):
                raise

    def _in_place(self, ctx: _Ctx, fleet: Fleet, blue: Slot) -> None:
        resized = fleet.with_slots([s.model_copy(update={"shape": ctx.shape}) if s.id == blue.id else s
                                    for s in fleet.slots])
        self._step(State.RESIZE, ctx, lambda: self._apply(resized, f"resize {blue.id} to {ctx.shape}"))
        self._step(State.WAIT_HEALTHY, ctx, lambda: self._wait_healthy(blue.id, ctx.shape))

    def _blue_green(self, ctx: _Ctx, fleet: Fleet, blue: Slot, syncer: Syncer) -> None:
        green = Slot(id=ctx.green, shape=ctx.shape, region=ctx.region,
                     colour="green" if blue.colour == "blue" else "blue", weight=0)
        before = serving(fleet)
        after = tuple((ctx.green, w) if sid == blue.id else (sid, w) for sid, w in before)
        ctx.handover = Handover({blue.id: ctx.green}, before, after, self.p.keyed_routing())
        with_green = fleet.with_slots([*fleet.slots, green])
        shifted = fleet.with_slots([
            *(s.model_copy(update={"weight": 0}) if s.id == blue.id else s for s in fleet.slots),
            green.model_copy(update={"weight": blue.weight}),
        ])
        h = ctx.handover

        def provision() -> None:
            syncer.before_provision(h)
            self._apply(with_green, f"add {green.colour} {green.id} ({ctx.shape} in {ctx.region}) at weight 0")

        def final_delta() -> None:
            self.p.pause()
            ctx.paused = True
            self._pause_started = self.clock.monotonic()
            self._journal_ctx(ctx)
            self._wait(lambda: self.p.wait_idle(h.sources(), 0.0), self.t.drain_s, f"requests in flight to {', '.join(h.sources())} did not finish",
                       "raise lb.drain_s in sculpt.yaml")
            self.p.set_readonly(blue.id, True)
            ctx.readonly = [blue.id]
            self._journal_ctx(ctx)
            syncer.final_delta(h)

        def shift() -> None:
            self._apply(shifted, f"shift traffic {blue.id} -> {green.id}")
            if self.faults.shift_fails:
                raise InjectedFault(f"shift {blue.id} -> {green.id} failed after the new weights were applied")

        self._step(State.PROVISION_GREEN, ctx, provision)
        self._step(State.WAIT_HEALTHY, ctx, lambda: self._wait_healthy(green.id, ctx.shape))
        self._step(State.SYNC_STATE, ctx, lambda: syncer.presync(h))
        self._step(State.PAUSE_FINAL_DELTA, ctx, final_delta)
        self._step(State.SHIFT, ctx, shift)
        self._step(State.RESUME, ctx, lambda: self._resume(ctx))
        self._finish_replica(ctx, State.RESUME, already_entered=True)

    def _finish_replica(self, ctx: _Ctx, state: State, already_entered: bool = False) -> None:
        """RESUME (if needed) → DRAIN_BLUE → RETIRE_BLUE for a replica whose shift is taken."""
        if not already_entered and state is State.RESUME:
            self._step(State.RESUME, ctx, lambda: self._resume(ctx))
        elif not already_entered:
            self._resume(ctx)  # a crashed controller may have left the LB paused
        if state in (State.RESUME, State.DRAIN_BLUE):
            self._step(State.DRAIN_BLUE, ctx,
                       lambda: self._wait(lambda: self.p.wait_idle([ctx.blue], 0.0), self.t.drain_s,
                                          f"{ctx.blue} did not drain", "raise lb.drain_s in sculpt.yaml"))

        def retire() -> None:
            fleet = self.p.current()[1]
            if any(s.id == ctx.blue for s in fleet.slots):
                self._apply(fleet.with_slots([s for s in fleet.slots if s.id != ctx.blue]), f"retire {ctx.blue}")

        self._step(State.RETIRE_BLUE, ctx, retire)

    # -- steps ------------------------------------------------------------------------------------------
    def _step(self, state: State, ctx: _Ctx, action: Callable[[], object]) -> None:
        self._enter(state, ctx, {})
        step = self.report.steps[-1] if self.report else None
        if hits(self.faults.timeout_at, state, self._step_no):
            self._wait(lambda: False, self.t.step_s, f"{state.value} did not finish (injected step-timeout)",
                       "unset SCULPT_FAULT / drop --fault")
        action()
        ctx.reached = state
        if step is not None:
            step.ended = self.clock.now()
            if self.progress:
                self.progress(step)
        if hits(self.faults.crash_at, state, self._step_no):
            self.crash()

    def _enter(self, state: State, ctx: _Ctx | None, data: dict[str, Any]) -> None:
        """Journal ``state`` before taking it (write-ahead), then record the step."""
        if not can_follow(state, self._state) and state is not self._state:  # same state: a retry after a crash
            raise AssertionError(f"illegal morph transition {self._state.value} -> {state.value}")
        payload = dict(data)
        if ctx is not None:
            payload["ctx"] = ctx.to_json()
        self.ledger.journal(self.mid, state.value, payload, when=self.clock.now())
        self._state = state
        if state not in (State.DONE, State.ROLLED_BACK):
            self._step_no += 1
        if self.report is not None:
            steps = self.report.steps
            if steps and steps[-1].ended is None:
                steps[-1].ended = self.clock.now()
            if state is not State.DONE and state is not State.ROLLED_BACK:
                steps.append(Step(state, self.clock.now(), replica=ctx.replica if ctx else 0,
                                  detail=str(data.get("reason", ""))))
                if self.progress:
                    self.progress(steps[-1])
        if hits(self.faults.crash_before, state, self._step_no):
            self.crash()

    def _journal_ctx(self, ctx: _Ctx) -> None:
        """Re-journal the current state with updated context (e.g. 'LB paused', 'blue read-only')."""
        self.ledger.journal(self.mid, self._state.value, {"ctx": ctx.to_json(), "update": True},
                            when=self.clock.now())

    def _apply(self, fleet: Fleet, what: str) -> int:
        fleet = with_spec_of(fleet)
        v = self.p.apply(fleet, f"morph {self.mid}: {what}")
        if self.report is not None:
            self.report.versions.append(v)
        return v

    def _resume(self, ctx: _Ctx) -> None:
        self.p.resume()
        if self._pause_started is not None and self.report is not None:
            held = (self.clock.monotonic() - self._pause_started) * 1000.0
            self.report.pause_ms += held
            self.report.pause_ms_max = max(self.report.pause_ms_max, held)
        self._pause_started = None
        ctx.paused = False

    def _wait(self, cond: Callable[[], bool], timeout_s: float, what: str, fix: str) -> None:
        deadline = self.clock.monotonic() + timeout_s
        while True:
            if cond():
                return
            if self.clock.monotonic() >= deadline:
                raise StepTimeout(what, timeout_s, fix)
            self.clock.sleep(self.t.poll_s)

    def _wait_healthy(self, slot_id: str, shape: str) -> None:
        def ok() -> bool:
            if self.faults.green_unhealthy:
                return False
            inst = self.p.instances().get(slot_id)
            return inst is not None and inst.shape == shape and self.p.probe(slot_id)

        self._wait(ok, self.t.healthy_s, f"{slot_id} did not become healthy as {shape}",
                   "see its log under the state dir's instances/; raise --timeout if the app starts slowly")

    def _ids_ever_used(self, fleet: Fleet) -> list[str]:
        """Slot ids in the fleet and in every version the ledger holds (a reused id would reuse a data dir)."""
        used = [s.id for s in fleet.slots]
        for v in self.ledger.versions(self.p.stack):
            used += [str(s.get("id")) for s in (v.fleet.get("slots") or [])]
        return used

    # -- rollback -----------------------------------------------------------------------------------------
    def _rollback(self, ctx: _Ctx, reason: str, recovered: bool = False) -> None:
        """Re-apply the version this replica started from; blue keeps or resumes serving; green goes."""
        rep = self.report
        failed_in = self._last_real_state() if self._state is State.ROLLBACK else self._state
        self._enter(State.ROLLBACK, ctx, {"reason": reason, "recovered": recovered})
        log.warning("morph %s rolling back: %s", self.mid, reason)
        try:
            h = ctx.handover
            # From RESUME on, green may have taken writes (copying back when it took none is harmless).
            # Before that, nothing is asked of the instances: a health API that fails (a cloud's 403) must
            # not stop the re-apply that puts blue back.
            traffic_reached_green = committed(failed_in) or committed(ctx.reached)
            insts = self.p.instances() if h is not None and traffic_reached_green else {}
            if h is not None and traffic_reached_green and ctx.blue in insts and ctx.green in insts:
                # green took writes: hold traffic, freeze green, hand its keys back before blue serves again.
                self.p.pause()
                ctx.paused = True
                self._pause_started = self._pause_started or self.clock.monotonic()
                self._wait(lambda: self.p.wait_idle(h.after_ids(), 0.0), self.t.drain_s,
                           f"requests in flight to {ctx.green} did not finish", "raise lb.drain_s in sculpt.yaml")
                self.p.set_readonly(ctx.green, True)
                Syncer(self.p, self.p.current()[1].spec.app.state_sync,
                       command_timeout_s=self.t.step_s).reverse(h)
            # Always re-apply: the provider reconciles away a half-started green even if no version says so.
            v = self.p.rollback(ctx.base_version, f"morph {self.mid} rolled back: {reason}")
            if rep is not None:
                rep.versions.append(v)
            # blue can be read-only only once the pause began (journaled before the switch)
            if (ctx.paused or ctx.readonly or traffic_reached_green) and ctx.blue in self.p.instances():
                self.p.set_readonly(ctx.blue, False)
        finally:
            self._resume(ctx)
        self._enter(State.ROLLED_BACK, ctx, {"reason": reason})
        self._finish("rolled_back", reason)

    def _last_real_state(self) -> State:
        for e in reversed(self.ledger.journal_entries(self.mid)):
            if e.state not in (State.ROLLBACK.value, State.ROLLED_BACK.value):
                return State(e.state)
        return State.PLAN

    def _finish(self, result: str, reason: str | None) -> MorphReport:
        self.ledger.end_migration(self.mid, result, reason, when=self.clock.now())
        rep = self.report
        assert rep is not None
        rep.result = result
        rep.reason = reason
        if rep.steps and rep.steps[-1].ended is None:
            rep.steps[-1].ended = self.clock.now()
        return rep

