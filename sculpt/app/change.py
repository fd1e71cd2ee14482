"""One safe path for every change to a running local fleet: ``sculpt up`` and ``sculpt rollback``.

Why it exists: an instance that holds state may only be replaced by a handover — green started beside it,
the state synced, the load balancer paused for the final delta, the traffic shifted, blue drained and
retired — never by copying its data directory while it still takes writes. ``apply_change`` makes a target
fleet real as *one* user-visible version: what the agent can do live (new slots, removed slots, live
resizes, weights) is one step; every slot that needs a new instance (its app's command, environment or
health path changed, its region changed, or its shape changed where cgroups cannot resize it live) is then
moved by the migration orchestrator, exactly like ``sculpt morph``. A rollback is such a change to an
earlier version's fleet, so it moves the current data to the earlier shapes instead of restarting them
from old data directories.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sculpt.domain.clock import Clock
from sculpt.domain.errors import SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec
from sculpt.engine.base import StepwiseEngine, replacements
from sculpt.ledger import Ledger
from sculpt.migrate import MorphRequest, Orchestrator, Timeouts
from sculpt.migrate.faults import Faults
from sculpt.migrate.orchestrator import next_slot_ids
from sculpt.migrate.port import Platform
from sculpt.migrate.states import MorphReport, Step

log = logging.getLogger("sculpt.change")

APP_REASON = "app"


@dataclass
class ChangeResult:
    """What a change did: its version, the slots it replaced (with why) and the morph's report."""

    version: int
    result: str  # succeeded | failed
    replaced: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    morph: MorphReport | None = None


def align(current: Fleet, target: Fleet, used: list[str]) -> Fleet:
    """``target`` in ``current``'s terms: its serving slots paired in order with the current serving slots
    (each pair keeps the current id, takes the target's shape and region), extra target slots added under
    fresh ids, extra current slots dropped; the target's spec. Weight-0 leftovers are not carried over.

    >>> from sculpt.domain.spec import parse_spec
    >>> spec = parse_spec({"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a"})
    >>> cur = Fleet(spec=spec, slots=(Slot(id="web-3", shape="std-1c-1024m", region="local-a"),))
    >>> old = Fleet(spec=spec, slots=(Slot(id="web-0", shape="std-0.5c-512m", region="local-a"),))
    >>> [(s.id, s.shape) for s in align(cur, old, ["web-0", "web-3"]).slots]
    [('web-3', 'std-0.5c-512m')]
    """
    now = [s for s in current.slots if s.weight > 0]
    want = [s for s in target.slots if s.weight > 0]
    slots = [a.model_copy(update={"shape": b.shape, "region": b.region, "weight": b.weight})
             for a, b in zip(now, want, strict=False)]
    extra = want[len(now):]
    fresh = next_slot_ids(target.name, used, len(extra))
    slots += [Slot(id=sid, shape=b.shape, region=b.region, weight=b.weight) for sid, b in zip(fresh, extra, strict=True)]
    return Fleet(spec=target.spec, slots=tuple(slots))


def apply_change(engine: StepwiseEngine, platform: Platform, ledger: Ledger, clock: Clock, target: Fleet, *,
                 kind: str, message: str, record_spec: FleetSpec | None = None, timeouts: Timeouts | None = None,
                 faults: Faults | None = None, progress: Callable[[Step], None] | None = None) -> ChangeResult:
    """Make ``target`` real on a step-wise engine (``StackEngine.stepwise()``: the local one) as one version of
    ``kind`` (see the module doc).

    ``platform`` is the migration platform over the same engine (``LocalPlatform``); ``record_spec`` the
    spec the version keeps (``up``: the file as written). Raises ``SculptError`` for a change that cannot
    start (nothing applied then); a handover that fails rolls its replica back and the version ends
    ``failed`` with the reason. A ``rollback`` is an event too (``sculpt events``), whatever its result.
    """
    result = _apply_change(engine, platform, ledger, clock, target, kind=kind, message=message,
                           record_spec=record_spec, timeouts=timeouts, faults=faults, progress=progress)
    if kind == "rollback":
        try:
            ledger.append_event(engine.stack, "rollback", f"{message}: {result.result}" +
                                (f" ({result.reason})" if result.reason else ""),
                                {"version": result.version, "result": result.result, "reason": result.reason,
                                 "message": message}, when=clock.now())
        except SculptError as e:
            log.warning("could not record the rollback event: %s", e)
    return result


def _apply_change(engine: StepwiseEngine, platform: Platform, ledger: Ledger, clock: Clock, target: Fleet, *,
                  kind: str, message: str, record_spec: FleetSpec | None, timeouts: Timeouts | None, faults: Faults | None,
                  progress: Callable[[Step], None] | None) -> ChangeResult:
    current = engine.current()
    if current is None or not current.slots:
        with engine.command(kind, message, target, record_spec=record_spec) as cmd:
            try:
                engine.up(target, message)
            except BaseException:
                engine.restore_applied(cmd.version)
                raise
        return ChangeResult(cmd.version, "succeeded")
    with ledger.lock(engine.stack, kind):
        current = engine.current()
        assert current is not None  # it ran a fleet a moment ago; `down` records an empty fleet, not none
        aligned = align(current, target, [*ledger.slot_ids_ever_used(engine.stack), *(s.id for s in target.slots)])
        live = bool(engine.provider.capabilities()["live_resize"])
        replace = replacements(current, aligned, live_resize=live)
        before = {s.id: s for s in current.slots}
        # what the agent does live: new and removed slots, live resizes; replaced slots stay as they are
        first = aligned.with_slots([before[s.id] if s.id in replace and s.id in before else s
                                    for s in aligned.slots])
        result = ChangeResult(0, "succeeded", dict(replace))
        with engine.command(kind, message, aligned, record_spec=record_spec) as cmd:
            result.version = cmd.version
            try:
                engine.up(first, f"{kind}: {message}" if message != kind else kind)
            except BaseException:
                engine.restore_applied(cmd.version)
                raise
            _record_live_moves(ledger, engine.stack, clock.now(), kind, current, first, cmd.version)
            if replace:
                app_changed = [sid for sid, why in replace.items() if why.startswith(APP_REASON)]
                log.info("%s: replacing %s by blue/green handover", engine.stack,
                         ", ".join(f"{sid} ({why})" for sid, why in replace.items()))
                orch = Orchestrator(platform, ledger, clock, timeouts=timeouts, faults=faults, progress=progress)
                rep = orch.morph(MorphRequest(target=aligned, replace=tuple(app_changed), command=cmd.version,
                                              kind=kind, origin=kind, message=message))
                result.morph = rep
                if rep.result == "rolled_back":
                    result.result, result.reason = "failed", rep.reason
                    cmd.fail(rep.reason or "rolled back")
        return result


def _record_live_moves(ledger: Ledger, stack: str, now: float, origin: str, before: Fleet, after: Fleet,
                       version: int) -> None:
    """Shape or region changes the agent made live in one step (the orchestrator records its own)."""
    old = {s.id: s for s in before.slots}
    for s in after.slots:
        b = old.get(s.id)
        if b is not None and (b.shape, b.region) != (s.shape, s.region):
            try:
                ledger.record_move(stack, time=now, origin=origin, slot=s.id, from_shape=b.shape,
                                   from_region=b.region, to_shape=s.shape, to_region=s.region, version=version)
            except SculptError as e:
                log.warning("could not record the move of %s: %s", s.id, e)
