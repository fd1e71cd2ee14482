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
from sculpt.domain.spec import FleetSpec
from sculpt.migrate.faults import Crash, Faults, hits, kill_self, with_faults
from sculpt.migrate.port import AppliedButFailed, Platform
from sculpt.migrate.states import (
    BLUE_GREEN_STEPS,
    IN_PLACE_STEPS,
    MorphReport,
    State,
    Step,
    can_follow,
    committed,
)
from sculpt.migrate.sync import Ring, StateHandover, Syncer

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
    """What to move to. ``shape``/``region``: every slot to that shape/region (``sculpt morph``).

    ``target``: a whole fleet to morph to (``sculpt rollback``, ``sculpt up``): its serving slots are paired
    in order with the current serving slots (the counts must match), each pair whose shape or region
    differs — or whose current slot id is in ``replace`` (its app config changed) — is moved, and every
    new instance runs ``target.spec``. ``command``: the user-visible version already opened for this
    move (else the morph opens one of kind ``kind``); ``origin`` labels the moves it records.
    """

    shape: str | None = None
    region: str | None = None
    strategy: Strategy = "auto"
    target: Fleet | None = None
    replace: tuple[str, ...] = ()
    command: int | None = None
    kind: str = "morph"
    message: str = ""
    origin: str = "morph"


@dataclass(frozen=True)
class Move:
    """One replica's move: slot ``blue`` to ``shape`` in ``region`` (``replace``: a new instance is needed)."""

    blue: str
    shape: str
    region: str
    replace: bool = False

    def to_json(self) -> list[object]:
        return [self.blue, self.shape, self.region, self.replace]

    @staticmethod
    def from_json(v: list[Any]) -> Move:
        return Move(str(v[0]), str(v[1]), str(v[2]), bool(v[3]))


@dataclass
class _Ctx:
    """What one replica's handover needs to know; journaled with every state so recovery can finish it."""

    replica: int
    base_version: int
    blue: str
    green: str
    shape: str
    region: str
    handover: StateHandover | None = None
    paused: bool = False
    readonly: list[str] = field(default_factory=list)
    reached: State = State.PLAN
    base_fleet: dict[str, Any] | None = None
    from_shape: str = ""
    from_region: str = ""

    @property
    def kind(self) -> str:
        return "in-place" if self.green == self.blue else "blue-green"

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.replica, "base_version": self.base_version, "blue": self.blue,
                "green": self.green, "shape": self.shape, "region": self.region,
                "handover": self.handover.to_json() if self.handover else None,
                "paused": self.paused, "readonly": list(self.readonly), "reached": self.reached.value,
                "base_fleet": self.base_fleet, "from_shape": self.from_shape, "from_region": self.from_region}

    @staticmethod
    def from_json(d: dict[str, Any]) -> _Ctx:
        h = d.get("handover")
        return _Ctx(int(d["replica"]), int(d["base_version"]), str(d["blue"]), str(d["green"]), str(d["shape"]),
                    str(d["region"]), StateHandover.from_json(h) if h else None, bool(d.get("paused")),
                    list(d.get("readonly") or []), State(d.get("reached", "PLAN")), d.get("base_fleet"),
                    str(d.get("from_shape", "")), str(d.get("from_region", "")))


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM) interrupted a morph: it rolls back, then the command exits 130."""

    def __init__(self, signame: str = "SIGINT") -> None:
        super().__init__(signame)
        self.signame = signame


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


def unreachable_faults(faults: Faults, strategy: str, state_sync: str = "http") -> list[str]:
    """Faults of ``faults`` that a morph with ``strategy`` never reaches (said, not silently ignored);
    ``state_sync``: the app's sync strategy (``none`` restores nothing, ``command`` restores through the
    user's own command, which no platform fault reaches)."""
    steps = {s.value for s in (IN_PLACE_STEPS if strategy == "in-place" else BLUE_GREEN_STEPS)}
    out = []
    if strategy == "in-place":
        out += [n for n, on in (("restore-fails", faults.restore_fails), ("shift-fails", faults.shift_fails)) if on]
    elif faults.restore_fails and state_sync in ("none", "command"):
        out.append("restore-fails")
    for name, where in (("step-timeout", faults.timeout_at), ("crash-at", faults.crash_at),
                        ("crash-before", faults.crash_before)):
        if where and not where.startswith("#") and where not in steps and where != "ROLLBACK":
            out.append(f"{name}:{where}")
    return out


def _reason(e: BaseException) -> str:
    if isinstance(e, SculptError):
        return e.message
    if isinstance(e, Interrupted):
        return f"interrupted ({'Ctrl-C' if e.signame == 'SIGINT' else e.signame})"
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
        self.faults = faults or Faults()
        # the platform's faults break the way forward (a rollback copies back over ``unfaulted``, what it
        # exercises); the controller's own (a hung step, a crash) are hooks of the steps below
        self.unfaulted = platform
        self.p = with_faults(platform, self.faults)
        self.ledger = ledger
        self.clock = clock
        self.t = timeouts or Timeouts()
        self.crash = crash
        self.progress = progress
        self.mid = migration_id or f"m-{uuid.uuid4().hex[:10]}"
        self.report: MorphReport | None = None
        self._state = State.PLAN
        self._step_no = 0
        self._pause_started: float | None = None
        self._pause_deadline: float | None = None
        self._command: int | None = None
        self._origin = "morph"

    # -- public -------------------------------------------------------------------------------------------
    def morph(self, request: MorphRequest) -> MorphReport:
        """Move the fleet to ``request``'s shape/region (or target fleet). Returns the report (result done /
        rolled_back / unchanged); raises ``SculptError`` for requests that cannot start (nothing changed then).

        Holds the stack lock from the first read to the last write, so no ``sculpt up`` interleaves."""
        with self.ledger.lock(self.p.stack, f"morph {self.mid}"):
            return self._morph(request)

    def _plan(self, request: MorphRequest, fleet: Fleet) -> list[Move]:
        if request.target is None:
            first = fleet.slots[0]
            shape = request.shape or first.shape
            region = request.region or first.region
            return [Move(s.id, shape, region, s.id in request.replace) for s in fleet.slots
                    if (s.shape, s.region) != (shape, region) or s.id in request.replace]
        now = [s for s in fleet.slots if s.weight > 0]
        want = [s for s in request.target.slots if s.weight > 0]
        if len(now) != len(want):
            raise ConfigError(f"the fleet serves {len(now)} replica(s) and the target {len(want)}",
                              "change replicas.desired with `sculpt up` first")
        return [Move(a.id, b.shape, b.region, a.id in request.replace) for a, b in zip(now, want, strict=True)
                if (a.shape, a.region) != (b.shape, b.region) or a.id in request.replace]

    def _morph(self, request: MorphRequest) -> MorphReport:
        version, fleet = self.p.current()
        if not fleet.slots:
            raise ConfigError(f"stack '{self.p.stack}' has no instances to morph", "run `sculpt up` first")
        first = fleet.slots[0]
        plan = self._plan(request, fleet)
        spec = request.target.spec if request.target is not None else fleet.spec
        kinds = [self._choose(request.strategy, fleet, m) for m in plan]
        strategy = "blue-green" if "blue-green" in kinds else "in-place"
        if not plan:
            strategy = self._choose(request.strategy, fleet, Move(first.id, first.shape, first.region))
        goal = plan[0] if plan else Move(first.id, request.shape or first.shape, request.region or first.region)
        source = {"shape": first.shape, "region": first.region, "version": version, "replicas": len(fleet.slots)}
        target = {"shape": goal.shape, "region": goal.region}
        rep = self.report = MorphReport(self.mid, strategy, source, target)
        if not plan:
            rep.result = "unchanged"
            return rep
        syncer = Syncer(self.p, spec.app.state_sync, command_timeout_s=self.t.step_s)
        if strategy == "blue-green":
            syncer.check(self.p.keyed_routing(), len(fleet.slots))
            if len(fleet.slots) > 1 and not self.p.keyed_routing() and syncer.strategy != "none":
                raise ConfigError(
                    f"a stateful fleet of {len(fleet.slots)} replicas behind weighted routing has no single "
                    "owner per key, so its state cannot be handed over safely",
                    "set lb.routing: hash (one owner per key) or app.state_sync.strategy: none")
        for unused in unreachable_faults(self.faults, strategy, spec.app.state_sync.strategy):
            log.warning("fault '%s' never fires in a%s %s morph", unused, "n" if strategy[0] == "i" else "",
                        strategy)
        self._origin = request.origin
        self._command = request.command
        if self._command is None:
            estimate = fleet.with_slots([s.model_copy(update={"shape": goal.shape, "region": goal.region})
                                         for s in fleet.slots])
            what = request.message or f"morph {first.shape}@{first.region} -> {goal.shape}@{goal.region}"
            self._command = self.p.begin_command(request.kind, what, Fleet(spec=spec, slots=estimate.slots))
        self.ledger.begin_migration(self.mid, self.p.stack, strategy, source, target, State.PLAN.value,
                                    when=self.clock.now())
        self.ledger.journal(self.mid, State.PLAN.value,
                            {"plan": [m.to_json() for m in plan], "kinds": kinds, "command": self._command,
                             "origin": self._origin, "spec": spec.model_dump(mode="json"), "update": True},
                            when=self.clock.now())
        self._run(plan, kinds, spec, syncer, start=0)
        return rep

    def recover(self, migration: Any) -> MorphReport:
        """Finish an interrupted migration from its journal: roll forward once ``SHIFT`` was journaled
        (green may have taken writes: it is authoritative), else roll back. Always leaves the LB resumed."""
        entries = self.ledger.journal_entries(migration.id)
        self.mid = migration.id
        rep = self.report = MorphReport(migration.id, migration.strategy, migration.source, migration.target)
        plan_data: dict[str, Any] = next((e.data for e in entries if e.data.get("plan") is not None), {})
        plan = [Move.from_json(m) for m in plan_data.get("plan", [])]
        kinds = list(plan_data.get("kinds") or [migration.strategy] * len(plan))
        self._command = plan_data.get("command")
        self._origin = str(plan_data.get("origin", "morph"))
        last = entries[-1] if entries else None
        state = State(last.state) if last else State.PLAN
        ctx_json = next((e.data["ctx"] for e in reversed(entries) if e.data.get("ctx")), None)
        self._state = state
        real = [e for e in entries if not e.data.get("update") and e.data.get("plan") is None]
        self._step_no = sum(1 for e in real if e.state != State.PLAN.value)
        rep.steps = [Step(State(e.state), e.time, replica=int((e.data.get("ctx") or {}).get("replica", 0)))
                     for e in real if e.state != State.PLAN.value]
        with self.ledger.lock(self.p.stack, f"recover {migration.id}"):
            self.p.reopen_command(self._command)
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
            self._revive()
            if state is State.ROLLBACK:
                started = next((e for e in entries if e.state == State.ROLLBACK.value and e.data.get("reason")),
                               None)
                reason = str((started.data if started else {}).get("reason") or
                             f"controller died during ROLLBACK (replica {ctx.replica})")
                self._rollback(ctx, reason, recovered=True)
                return rep
            reason = f"controller died during {state.value} (replica {ctx.replica})"
            if ctx.kind == "blue-green" and committed(state):
                log.warning("morph %s: %s; the shift was under way, so green holds the writes: rolling forward",
                            self.mid, reason)
                spec = self.p.current()[1].spec
                syncer = Syncer(self.p, spec.app.state_sync, command_timeout_s=self.t.step_s)
                try:
                    self._finish_replica(ctx, state)
                    self._run(plan, kinds, spec, syncer, start=ctx.replica + 1)
                except SculptError as e:
                    if rep.result != "running":
                        return rep
                    raise ProviderError(f"could not finish morph {self.mid} after a crash: {e.message}",
                                        "fix the cause and run any sculpt command again to retry") from None
                return rep
            self._rollback(ctx, reason, recovered=True)
            return rep

    def _revive(self) -> None:
        """If nothing runs although the applied fleet has slots (the agent and its instances died too, say
        power was lost), start them again from their data directories before deciding anything."""
        try:
            if self.p.instances():
                return
            version, fleet = self.p.current()
        except SculptError:
            return
        if fleet.slots:
            log.warning("morph %s: no instance of stack '%s' runs; starting the applied fleet again", self.mid,
                        self.p.stack)
            self.p.apply(fleet, f"morph {self.mid}: restart the fleet after a crash")

    # -- strategy -----------------------------------------------------------------------------------------
    def _choose(self, wanted: str, fleet: Fleet, move: Move) -> str:
        if wanted not in STRATEGIES:
            raise ConfigError(f"unknown strategy '{wanted}'", f"use one of: {', '.join(STRATEGIES)}")
        blue = next(s for s in fleet.slots if s.id == move.blue)
        blocker: str | None
        if blue.region != move.region:
            blocker = "the region changes (a live resize cannot move an instance)"
        elif move.replace:
            blocker = "the app's command, environment or health path changes (a new instance must run it)"
        else:
            blocker = self.p.live_resize_blocker()
        if wanted == "in-place":
            if blocker:
                raise ConfigError(f"cannot morph in place: {blocker}", "use --strategy blue-green (or auto)")
            return "in-place"
        if wanted == "blue-green":
            return "blue-green"
        return "in-place" if blocker is None else "blue-green"

    # -- the machine --------------------------------------------------------------------------------------
    def _run(self, plan: list[Move], kinds: list[str], spec: FleetSpec, syncer: Syncer, *, start: int) -> None:
        """Move ``plan[start:]``, one replica at a time (replica numbers are plan indexes)."""
        ctx: _Ctx | None = None
        try:
            for n in range(start, len(plan)):
                mv = plan[n]
                version, fleet = self.p.current()
                fleet = Fleet(spec=spec, slots=fleet.slots)
                blue = next((s for s in fleet.slots if s.id == mv.blue), None)
                if blue is None:
                    continue  # already moved (recovery)
                base = fleet.model_dump(mode="json")
                if kinds[n] == "in-place":
                    ctx = _Ctx(n, version, blue.id, blue.id, mv.shape, mv.region, base_fleet=base,
                               from_shape=blue.shape, from_region=blue.region)
                    self._in_place(ctx, fleet, blue)
                else:
                    used = self._ids_ever_used(fleet)
                    green_id = next_slot_ids(fleet.name, used, 1)[0]
                    ctx = _Ctx(n, version, blue.id, green_id, mv.shape, mv.region, base_fleet=base,
                               from_shape=blue.shape, from_region=blue.region)
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
                        "run any sculpt command again: it finishes the morph from the journal") from None
            if isinstance(e, KeyboardInterrupt):
                raise

    def _in_place(self, ctx: _Ctx, fleet: Fleet, blue: Slot) -> None:
        resized = fleet.with_slots([s.model_copy(update={"shape": ctx.shape}) if s.id == blue.id else s
                                    for s in fleet.slots])
        self._step(State.RESIZE, ctx, lambda: self._apply(resized, f"resize {blue.id} to {ctx.shape}"))
        self._step(State.WAIT_HEALTHY, ctx, lambda: self._wait_healthy(blue.id, ctx.shape))
        self._moved(ctx)

    def _blue_green(self, ctx: _Ctx, fleet: Fleet, blue: Slot, syncer: Syncer) -> None:
        green = Slot(id=ctx.green, shape=ctx.shape, region=ctx.region,
                     colour="green" if blue.colour == "blue" else "blue", weight=0)
        before = serving(fleet)
        after = tuple((ctx.green, w) if sid == blue.id else (sid, w) for sid, w in before)
        ctx.handover = StateHandover({blue.id: ctx.green}, before, after, self.p.keyed_routing())
        with_green = fleet.with_slots([*fleet.slots, green])
        h = ctx.handover

        def provision() -> None:
            syncer.before_provision(h)
            self._apply(with_green, f"add {green.colour} {green.id} ({ctx.shape} in {ctx.region}) at weight 0")

        def final_delta() -> None:
            self._pause(ctx)
            self._wait(lambda: self.p.wait_idle(h.sources(), 0.0), self.t.drain_s, f"requests in flight to {', '.join(h.sources())} did not finish",
                       "raise lb.drain_s in sculpt.yaml")
            self.p.set_readonly(blue.id, True)
            ctx.readonly = [blue.id]
            self._journal_ctx(ctx)
            syncer.final_delta(h)

        self._step(State.PROVISION_GREEN, ctx, provision)
        self._step(State.WAIT_HEALTHY, ctx, lambda: self._wait_healthy(green.id, ctx.shape))
        self._step(State.SYNC_STATE, ctx, lambda: syncer.presync(h))
        self._step(State.PAUSE_FINAL_DELTA, ctx, final_delta)
        self._step(State.SHIFT, ctx, lambda: self._shift(ctx))
        self._step(State.RESUME, ctx, lambda: self._resume(ctx))
        self._finish_replica(ctx, State.RESUME, already_entered=True)

    def _shift(self, ctx: _Ctx) -> None:
        """Blue's weight to green in one stack update (idempotent: a recovery re-runs it)."""
        fleet = self.p.current()[1]
        blue = next((s for s in fleet.slots if s.id == ctx.blue), None)
        green = next((s for s in fleet.slots if s.id == ctx.green), None)
        if green is None:
            raise ProviderError(f"green {ctx.green} is not in the fleet", "see `sculpt status`")
        if blue is not None and (blue.weight > 0 or green.weight == 0):
            weight = blue.weight or next((w for sid, w in (ctx.handover.before if ctx.handover else ())
                                          if sid == ctx.blue), 100)
            shifted = fleet.with_slots([
                *(s.model_copy(update={"weight": 0}) if s.id == ctx.blue else s for s in fleet.slots
                  if s.id != ctx.green),
                green.model_copy(update={"weight": weight}),
            ])
            self._apply(shifted, f"shift traffic {ctx.blue} -> {ctx.green}")

    def _finish_replica(self, ctx: _Ctx, state: State, already_entered: bool = False) -> None:
        """(SHIFT →) RESUME → DRAIN_BLUE → RETIRE_BLUE for a replica whose shift was requested."""
        if not already_entered:
            if state is State.SHIFT:
                self._step(State.SHIFT, ctx, lambda: self._shift(ctx))
                state = State.RESUME
                self._step(State.RESUME, ctx, lambda: self._resume(ctx))
            elif state is State.RESUME:
                self._step(State.RESUME, ctx, lambda: self._resume(ctx))
            else:
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
        self._moved(ctx)

    def _moved(self, ctx: _Ctx) -> None:
        """One record of moves: what ``plan``, ``watch`` and ``policy check`` count against the daily cap."""
        if (ctx.from_shape, ctx.from_region) == (ctx.shape, ctx.region) and ctx.kind == "in-place":
            return
        slot = ctx.blue if ctx.kind == "in-place" else f"{ctx.blue}->{ctx.green}"
        try:
            self.ledger.record_move(self.p.stack, time=self.clock.now(), origin=self._origin, slot=slot,
                                    from_shape=ctx.from_shape, from_region=ctx.from_region, to_shape=ctx.shape,
                                    to_region=ctx.region, version=self._command)
        except SculptError as e:  # the move is done; a record that cannot be written must not undo it
            log.warning("could not record the move of %s: %s", slot, e)

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
        try:
            v = self.p.apply(fleet, f"morph {self.mid}: {what}")
        except AppliedButFailed as e:
            self._count_version(e.version)
            raise
        self._count_version(v)
        return v

    def _count_version(self, v: int) -> None:
        if self.report is not None and v not in self.report.versions:
            self.report.versions.append(v)

    def _pause(self, ctx: _Ctx) -> None:
        """Hold new requests at the LB. The controller keeps the pause for at most ``pause_budget_s`` (its
        own deadline for every wait under the pause); the platform's lease past that is the agent's."""
        ctx.paused = True
        self._journal_ctx(ctx)  # journaled first: a crash right after pausing still resumes
        self.p.pause()
        now = self.clock.monotonic()
        self._pause_started = self._pause_started if self._pause_started is not None else now
        budget = self.pause_budget_s()
        self._pause_deadline = now + budget if budget is not None else None

    def pause_budget_s(self) -> float | None:
        """How long this controller may keep the LB paused: 60 % of the spec's ``lb.pause_lease_s`` on the
        local engine, whose load balancer holds requests; ``None`` where ``pause`` holds nothing (a cloud
        LB cannot hold requests, so there is no pause to bound)."""
        try:
            spec = self.p.current()[1].spec
        except SculptError:
            return None
        if spec.engine != "local":
            return None
        return max(0.5, 0.6 * float(spec.lb.pause_lease_s))

    def _resume(self, ctx: _Ctx) -> None:
        self.p.resume()
        if self._pause_started is not None and self.report is not None:
            held = (self.clock.monotonic() - self._pause_started) * 1000.0
            self.report.pause_ms += held
            self.report.pause_ms_max = max(self.report.pause_ms_max, held)
        self._pause_started = None
        self._pause_deadline = None
        ctx.paused = False

    def _wait(self, cond: Callable[[], bool], timeout_s: float, what: str, fix: str) -> None:
        deadline = self.clock.monotonic() + timeout_s
        paused = self._pause_deadline is not None and self._pause_deadline < deadline
        if paused:
            assert self._pause_deadline is not None
            deadline = self._pause_deadline
        while True:
            if cond():
                return
            if self.clock.monotonic() >= deadline:
                if paused:
                    raise StepTimeout(f"{what} (the load balancer may stay paused", self.pause_budget_s() or 0.0,
                                      f"{fix}; or raise lb.pause_lease_s)")
                raise StepTimeout(what, timeout_s, fix)
            self.clock.sleep(self.t.poll_s)

    def _wait_healthy(self, slot_id: str, shape: str) -> None:
        def ok() -> bool:
            inst = self.p.instances().get(slot_id)
            return inst is not None and inst.shape == shape and self.p.probe(slot_id)

        self._wait(ok, self.t.healthy_s, f"{slot_id} did not become healthy as {shape}",
                   "see its log under the state dir's instances/; raise --timeout if the app starts slowly")

    def _ids_ever_used(self, fleet: Fleet) -> list[str]:
        """Slot ids in the fleet and in every version the ledger holds (a reused id would reuse a data dir)."""
        return [s.id for s in fleet.slots] + sorted(self.ledger.slot_ids_ever_used(self.p.stack))

    # -- rollback -----------------------------------------------------------------------------------------
    def _rollback(self, ctx: _Ctx, reason: str, recovered: bool = False) -> None:
        """Re-apply the fleet this replica started from; blue keeps or resumes serving; green goes.

        Once the shift was requested green may have taken writes: they are copied back to blue first, and
        if that cannot be done (an instance is unreachable) nothing is undone — the migration stays at its
        step and the next recovery rolls forward instead (green is authoritative)."""
        rep = self.report
        failed_in = self._last_real_state() if self._state is State.ROLLBACK else self._state
        h = ctx.handover
        traffic_reached_green = ctx.kind == "blue-green" and (committed(failed_in) or committed(ctx.reached))
        if traffic_reached_green and self._state is State.ROLLBACK and \
                all(s.id != ctx.green for s in self.p.current()[1].slots):
            traffic_reached_green = False  # an earlier try copied green's writes back and removed green
        insts = self.p.instances() if h is not None and traffic_reached_green else {}
        if h is not None and traffic_reached_green and not (ctx.blue in insts and ctx.green in insts):
            missing = ", ".join(s for s in (ctx.blue, ctx.green) if s not in insts)
            raise ProviderError(f"cannot roll back morph {self.mid} ({reason}): green may hold writes and "
                                f"{missing} cannot be reached to copy them back",
                                "run any sculpt command again: recovery rolls the morph forward")
        if self._state is not State.ROLLBACK:
            self._enter(State.ROLLBACK, ctx, {"reason": reason, "recovered": recovered})
        else:
            self._enter(State.ROLLBACK, ctx, {"reason": reason, "recovered": recovered, "retry": True})
        log.warning("morph %s rolling back: %s", self.mid, reason)
        try:
            if h is not None and traffic_reached_green:
                # green took writes: hold traffic, freeze green, hand its keys back before blue serves again.
                self._pause(ctx)  # again even if we think it is paused: a failed resume may have released it
                self._wait(lambda: self.p.wait_idle(h.after_ids(), 0.0), self.t.drain_s,
                           f"requests in flight to {ctx.green} did not finish", "raise lb.drain_s in sculpt.yaml")
                self.p.set_readonly(ctx.green, True)
                Syncer(self.unfaulted, self.p.current()[1].spec.app.state_sync,
                       command_timeout_s=self.t.step_s).reverse(h)
            # Always re-apply: the provider reconciles away a half-started green even if no version says so.
            base = Fleet.model_validate(ctx.base_fleet) if ctx.base_fleet else None
            v = self.p.rollback(ctx.base_version, f"morph {self.mid} rolled back: {reason}", fleet=base)
            if rep is not None and v not in rep.versions:
                rep.versions.append(v)
            # blue can be read-only only once the pause began (journaled before the switch)
            if (ctx.paused or ctx.readonly or traffic_reached_green) and ctx.blue in self.p.instances():
                self.p.set_readonly(ctx.blue, False)
            if hits(self.faults.crash_at, State.ROLLBACK, self._step_no):
                self.crash()  # crash-at:ROLLBACK: die with the rollback not yet recorded as done
        finally:
            self._resume(ctx)
        self._enter(State.ROLLED_BACK, ctx, {"reason": reason})
        self._finish("rolled_back", reason)

    def _last_real_state(self) -> State:
        for e in reversed(self.ledger.journal_entries(self.mid)):
            if e.state not in (State.ROLLBACK.value, State.ROLLED_BACK.value, State.PLAN.value):
                return State(e.state)
        return State.PLAN

    def _finish(self, result: str, reason: str | None) -> MorphReport:
        self.ledger.end_migration(self.mid, result, reason, when=self.clock.now())
        if self._command is not None:
            self.p.end_command(self._command, "succeeded" if result == "done" else "failed", reason)
        rep = self.report
        assert rep is not None
        rep.result = result
        rep.reason = reason
        if rep.steps and rep.steps[-1].ended is None:
            rep.steps[-1].ended = self.clock.now()
        return rep
