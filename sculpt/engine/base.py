"""The StackEngine port: the desired fleet as a stack with numbered, append-only history.

Two engines implement it: ``local`` (embedded, ledger-backed, drives the local/sim providers) and
``pulumi`` (Automation API; the only module allowed to import ``pulumi.automation``).

``diff_fleets`` is the pure comparison both engines use for ``preview``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from sculpt.domain.fleet import Fleet, Slot

Op = Literal["create", "update", "replace", "delete", "same"]


@dataclass(frozen=True)
class SlotChange:
    op: Op
    slot_id: str
    before: Slot | None
    after: Slot | None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.op == "create" and self.after:
            return f"+ {self.slot_id}: {self.after.shape} in {self.after.region} ({self.after.colour}, weight {self.after.weight})"
        if self.op == "delete" and self.before:
            return f"- {self.slot_id}: {self.before.shape} in {self.before.region}"
        if self.op in ("update", "replace") and self.before and self.after:
            parts = [f"{f}: {getattr(self.before, f)} -> {getattr(self.after, f)}" for f in self.fields]
            mark = "~" if self.op == "update" else "+-"
            return f"{mark} {self.slot_id}: " + ", ".join(parts)
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

    def __str__(self) -> str:
        lines = [str(c) for c in self.changes if c.op != "same"]
        if self.spec_changed:
            lines.append("~ spec: " + ", ".join(self.spec_changed))
        return "\n".join(lines) if lines else "no changes"

    def to_json(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "summary": self.summary,
            "changes": [
                {"op": c.op, "slot": c.slot_id, "fields": list(c.fields),
                 "before": c.before.model_dump() if c.before else None,
                 "after": c.after.model_dump() if c.after else None}
                for c in self.changes
            ],
            "spec_changed": list(self.spec_changed),
        }


# Fields whose change needs a new instance (blue/green) rather than a live update.
REPLACE_FIELDS = ("shape", "region")


def diff_fleets(current: Fleet | None, desired: Fleet, *, live_resize: bool = False) -> Diff:
    """Compare two fleets slot by slot.

    A shape change is an ``update`` when the provider can resize live (``live_resize``) and a ``replace``
    otherwise; a region change is always a ``replace``; weight or colour changes are ``update``s.
    """
    before = {s.id: s for s in (current.slots if current else ())}
    after = {s.id: s for s in desired.slots}
    changes: list[SlotChange] = []
    for sid in sorted(before.keys() | after.keys()):
        b, a = before.get(sid), after.get(sid)
        if b is None:
            changes.append(SlotChange("create", sid, None, a))
        elif a is None:
            changes.append(SlotChange("delete", sid, b, None))
        else:
            fields = tuple(f for f in ("shape", "region", "colour", "weight") if getattr(b, f) != getattr(a, f))
            if not fields:
                changes.append(SlotChange("same", sid, b, a))
            elif "region" in fields or ("shape" in fields and not live_resize):
                changes.append(SlotChange("replace", sid, b, a, fields))
            else:
                changes.append(SlotChange("update", sid, b, a, fields))
    spec_changed: tuple[str, ...] = ()
    if current is not None:
        cs, ds = current.spec.model_dump(), desired.spec.model_dump()
        spec_changed = tuple(k for k in ds if k not in ("shape", "region") and cs.get(k) != ds.get(k))
    return Diff(desired.name, tuple(changes), spec_changed)


class StackEngine(Protocol):
    """The desired fleet as a versioned stack."""

    name: str

    def preview(self, fleet: Fleet) -> Diff:
        """What ``up(fleet)`` would change, without changing anything."""
        ...

    def up(self, fleet: Fleet, message: str = "") -> int:
        """Make the fleet real; return the new version number."""
        ...

    def history(self) -> list[object]:
        """Every version, oldest first (ledger ``Version`` records)."""
        ...

    def current(self) -> Fleet | None:
        """The fleet of the latest succeeded version, or ``None`` for a new stack."""
        ...

    def rollback(self, version: int, message: str = "") -> int:
        """Re-apply ``version``'s fleet as a new version (history stays append-only)."""
        ...

    def destroy(self) -> None:
        """Remove every resource of the stack (``sculpt down``); history is kept."""
        ...
