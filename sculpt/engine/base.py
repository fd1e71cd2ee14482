"""The StackEngine port: the desired fleet as a stack with numbered, append-only history.

Two engines implement it: ``local`` (embedded, ledger-backed, drives the local/sim providers) and
``pulumi`` (Automation API; the only module allowed to import ``pulumi.automation``).

``diff_fleets`` is the pure comparison both engines use for ``preview``.

Callers never ask which engine they hold: what differs between engines is a method or a capability of the
port (``status``/``reports_health``, ``running``, ``adopt``, ``outputs``, ``stepwise``). Engines are built
by ``sculpt.engine.registry.engine_for``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec
from sculpt.ledger import Ledger, Version
from sculpt.providers.base import Provider

Op = Literal["create", "update", "replace", "delete", "same"]


@dataclass(frozen=True)
class SlotChange:
    """What happens to one slot. ``reason`` says why a ``replace`` needs a new instance (a blue/green
    handover with state sync); ``kept`` says which shape/region chosen by a morph or the sculptor the slot
    keeps although the spec names another (``up`` keeps it unless the user changed that field)."""

    op: Op
    slot_id: str
    before: Slot | None
    after: Slot | None
    fields: tuple[str, ...] = ()
    reason: str = ""
    kept: str = ""

    def __str__(self) -> str:
        if self.op == "create" and self.after:
            return f"+ {self.slot_id}: {self.after.shape} in {self.after.region} ({self.after.colour}, weight {self.after.weight})"
        if self.op == "delete" and self.before:
            return f"- {self.slot_id}: {self.before.shape} in {self.before.region}"
        if self.op in ("update", "replace") and self.before and self.after:
            parts = [f"{f}: {getattr(self.before, f)} -> {getattr(self.after, f)}" for f in self.fields]
            if self.op == "replace":
                parts.append(f"replace (blue/green: {self.reason})" if self.reason else "replace")
            if self.kept:
                parts.append(self.kept)
            mark = "~" if self.op == "update" else "+-"
            return f"{mark} {self.slot_id}: " + "; ".join(parts)
        if self.kept:
            return f"= {self.slot_id}: {self.kept}"
        return f"  {self.slot_id}"


@dataclass(frozen=True)
class Diff:
    stack: str
    changes: tuple[SlotChange, ...]
    spec_changed: tuple[str, ...] = field(default=())

    @property
    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            out[c.op] = out.get(c.op, 0) + 1
        return out

    @property
    def empty(self) -> bool:
        return all(c.op == "same" for c in self.changes) and not self.spec_changed

    @property
    def replacements(self) -> dict[str, str]:
        """Slot id -> why it is replaced by a blue/green handover."""
        return {c.slot_id: c.reason for c in self.changes if c.op == "replace"}

    @property
    def kept(self) -> tuple[SlotChange, ...]:
        """The slots that keep a morph-chosen shape or region."""
        return tuple(c for c in self.changes if c.kept)

    def __str__(self) -> str:
        lines = [str(c) for c in self.changes if c.op != "same"]
        if self.spec_changed:
            lines.append("~ spec: " + ", ".join(self.spec_changed))
        kept = [str(c) for c in self.changes if c.op == "same" and c.kept]
        return "\n".join((lines or ["no changes"]) + kept)

    def to_json(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "summary": self.summary,
            "changes": [
                {"op": c.op, "slot": c.slot_id, "fields": list(c.fields),
                 "before": c.before.model_dump() if c.before else None,
                 "after": c.after.model_dump() if c.after else None,
                 "reason": c.reason or None, "kept": c.kept or None}
                for c in self.changes
            ],
            "spec_changed": list(self.spec_changed),
            "replacements": self.replacements,
            "kept": [{"slot": c.slot_id, "shape": c.after.shape if c.after else None,
                      "region": c.after.region if c.after else None, "note": c.kept} for c in self.kept],
        }


# Fields whose change needs a new instance (blue/green) rather than a live update.
REPLACE_FIELDS = ("shape", "region")
APP_FIELDS = ("command", "env", "health_path")
"""The app settings an instance is started with: changing one needs a new instance."""


def replacements(current: Fleet | None, desired: Fleet, *, live_resize: bool) -> dict[str, str]:
    """The slots of ``desired`` that must be replaced by a blue/green handover (a new instance, state
    synced, traffic shifted), with why: the app's command, env or health path changed (every running
    instance was started with the old ones), the slot's region changed, or its shape changed and the
    provider cannot resize live. New and removed slots are not replacements.

    >>> from sculpt.domain.spec import parse_spec
    >>> spec = parse_spec({"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a"})
    >>> old = Fleet.from_spec(spec)
    >>> new = Fleet.from_spec(spec.with_changes(shape="std-1c-1024m", app={"env": {"MODE": "fast"}}))
    >>> replacements(old, new, live_resize=True)
    {'web-0': 'app.env changed'}
    >>> replacements(old, Fleet.from_spec(spec.with_changes(shape="std-1c-1024m")), live_resize=False)
    {'web-0': 'shape changed without live resize'}
    """
    if current is None:
        return {}
    app = [f"app.{f}" for f in APP_FIELDS
           if getattr(current.spec.app, f) != getattr(desired.spec.app, f)]
    before = {s.id: s for s in current.slots}
    out: dict[str, str] = {}
    for a in desired.slots:
        b = before.get(a.id)
        if b is None:
            continue
        why = list(app)
        if a.region != b.region:
            why.append("region changed")
        elif a.shape != b.shape and not live_resize:
            why.append("shape changed without live resize")
        if why:
            out[a.id] = ", ".join(f"{w} changed" if w.startswith("app.") else w for w in why)
    return out


def kept_choice(slot: Slot, spec_shape: str, spec_region: str) -> str:
    """How ``slot`` differs from the shape and region its spec names: what a morph or the sculptor chose
    and ``up`` keeps (empty when it runs what the spec says).

    >>> kept_choice(Slot(id="web-0", shape="std-1c-1024m", region="local-a"), "std-0.5c-512m", "local-a")
    'keeps morph-chosen std-1c-1024m'
    >>> kept_choice(Slot(id="web-0", shape="std-0.5c-512m", region="local-b"), "std-0.5c-512m", "local-a")
    'keeps morph-chosen region local-b'
    """
    shape, region = slot.shape != spec_shape, slot.region != spec_region
    if shape and region:
        return f"keeps morph-chosen {slot.shape} in {slot.region}"
    if shape:
        return f"keeps morph-chosen {slot.shape}"
    if region:
        return f"keeps morph-chosen region {slot.region}"
    return ""


def diff_fleets(current: Fleet | None, desired: Fleet, *, live_resize: bool = False) -> Diff:
    """Compare two fleets slot by slot.

    A slot that needs a new instance (``replacements``: app command/env/health path, region, or a shape
    change without live resize) is a ``replace`` with its reason; other shape, weight or colour changes
    are ``update``s. A kept slot whose shape or region differs from the desired spec's says so (``kept``):
    it keeps what a morph or the sculptor chose.
    """
    before = {s.id: s for s in (current.slots if current else ())}
    after = {s.id: s for s in desired.slots}
    replace = replacements(current, desired, live_resize=live_resize)
    shape, region = desired.spec.shape, desired.spec.region
    changes: list[SlotChange] = []
    for sid in sorted(before.keys() | after.keys()):
        b, a = before.get(sid), after.get(sid)
        if b is None:
            changes.append(SlotChange("create", sid, None, a))
        elif a is None:
            changes.append(SlotChange("delete", sid, b, None))
        else:
            fields = tuple(f for f in ("shape", "region", "colour", "weight") if getattr(b, f) != getattr(a, f))
            kept = kept_choice(a, shape, region) if a.shape == b.shape and a.region == b.region else ""
            if sid in replace:
                changes.append(SlotChange("replace", sid, b, a, fields, replace[sid], kept))
            elif not fields:
                changes.append(SlotChange("same", sid, b, a, kept=kept))
            else:
                changes.append(SlotChange("update", sid, b, a, fields, kept=kept))
    spec_changed: tuple[str, ...] = ()
    if current is not None:
        cs, ds = current.spec.model_dump(), desired.spec.model_dump()
        spec_changed = tuple(k for k in ds if k not in ("shape", "region") and cs.get(k) != ds.get(k)
                             # a morph to another region swaps home and allowed regions: the same set
                             and not (k == "regions" and set(current.spec.allowed_regions) ==
                                      set(desired.spec.allowed_regions)))
    return Diff(desired.name, tuple(changes), spec_changed)


@dataclass
class Command:
    """An open command version (see ``StepwiseEngine.command``): ``fail(reason)`` ends it failed without an
    exception (a morph that rolled back)."""

    version: int
    message: str
    keep_spec: bool = False
    reason: str | None = None

    def fail(self, reason: str) -> None:
        self.reason = reason


class StackEngine(Protocol):
    """The desired fleet as a versioned stack."""

    name: str  # the engine's name in sculpt.yaml (``local``, ``pulumi``): for messages, never for branching
    stack: str

    def preview(self, fleet: Fleet) -> Diff:
        """What ``up(fleet)`` would change, without changing anything."""
        ...

    def up(self, fleet: Fleet, message: str = "") -> int:
        """Make the fleet real; return the new version number."""
        ...

    def history(self) -> Sequence[Version]:
        """Every version, oldest first (ledger ``Version`` records)."""
        ...

    def current(self) -> Fleet | None:
        """The fleet of the latest succeeded version, or ``None`` for a new stack."""
        ...

    def current_version(self) -> int | None:
        """The version whose fleet runs (``None`` for a new stack)."""
        ...

    def previous_succeeded(self) -> int | None:
        """The succeeded version before the current one: what ``sculpt rollback`` goes back to."""
        ...

    def rollback(self, version: int, message: str = "") -> int:
        """Re-apply ``version``'s fleet as a new version (history stays append-only)."""
        ...

    def destroy(self) -> None:
        """Remove every resource of the stack (``sculpt down``); history is kept."""
        ...

    def adopt(self) -> int:
        """Bring the ledger up to a stack history kept elsewhere (a shared Pulumi backend); returns the
        versions adopted (0 where the ledger is the only record)."""
        ...

    def outputs(self) -> dict[str, Any]:
        """The stack outputs of the last update as plain JSON values (``{}`` where a stack has none)."""
        ...

    def status(self) -> dict[str, Any] | None:
        """What runs now, as the engine can tell (``{"lb": {"address"}, "instances": [...], ...}``, the keys
        ``sculpt status`` prints), or ``None`` when nothing runs. ``healthy`` is ``None`` per instance unless
        ``reports_health``."""
        ...

    def running(self) -> bool:
        """Whether anything of the stack may run (an engine that cannot tell cheaply says ``True``)."""
        ...

    @property
    def reports_health(self) -> bool:
        """Whether ``status()`` carries each instance's health (the local agent's checks); else the caller
        reads it from the cloud's own health checks (the morph platform)."""
        ...

    @property
    def moves_regions(self) -> bool:
        """Whether a morph may move the fleet to another region inside this stack (the local load balancer
        spans regions); else a region move is advisory (a cloud load balancer is regional: a new stack)."""
        ...

    def stepwise(self) -> StepwiseEngine | None:
        """This engine's step-wise command API, or ``None``.

        Step-wise: one user command is one version made of several stack updates, so ``up`` and
        ``rollback`` run as a change that hands stateful slots over blue/green (``sculpt.app.change``)
        and morphs drive the engine through the local migration platform. ``None``: each command is one
        engine update and the engine orders replacements itself (Pulumi)."""
        ...


class StepwiseEngine(StackEngine, Protocol):
    """A ``StackEngine`` whose user commands are versions of several steps (the local engine)."""

    ledger: Ledger
    provider: Provider

    def up(self, fleet: Fleet, message: str = "", *, kind: str = "up") -> int:
        """Apply ``fleet``: a step of the open command, else a command of its own (``kind``)."""
        ...

    def command(self, kind: str, message: str, target: Fleet, *, resume: int | None = None,
                record_spec: FleetSpec | None = None) -> AbstractContextManager[Command]:
        """Run one user-visible command: a pending version, its stack updates as steps, then its result."""
        ...

    def begin(self, kind: str, message: str, target: Fleet) -> int:
        """Open a command version by hand (the orchestrator's morphs); close it with ``end``."""
        ...

    def reopen(self, version: int | None) -> None:
        """Write the next steps into ``version`` (a dead command's, during crash recovery)."""
        ...

    def end(self, version: int, result: str, message: str | None = None, *, keep_spec: bool = False) -> None:
        """Close a command version once (later calls are no-ops)."""
        ...

    def restore_applied(self, failed: int) -> None:
        """After a failed step, make the processes match the applied fleet again."""
        ...

    def sweep_dead(self, keep: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Close the versions a dead command left pending (but for ``keep``); returns them."""
        ...
