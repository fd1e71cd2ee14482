"""The narrow port between the morph orchestrator and the platform it runs on.

Why it exists: the state machine must not know about processes, sockets or agents. It needs only to
apply a fleet as a new stack version, hold and release traffic, see instances and their health, resize
live, and move state between two instances. ``local.py`` adapts the local engine + agent to this port in a
few lines per method; ``fake.py`` is an in-memory fake of it for property tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sculpt.domain.fleet import Fleet


@dataclass(frozen=True)
class Instance:
    """What the orchestrator knows about one running instance (by slot id)."""

    slot_id: str
    shape: str
    region: str
    healthy: bool
    weight: int
    address: str | None = None
    pid: int | None = None
    data_dir: Path | None = None


@dataclass(frozen=True)
class Checkpoint:
    """An application's state (or a delta of it): ``items`` written after ``since``, ``deleted`` keys."""

    seq: int
    items: dict[str, str] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "items": dict(self.items), "deleted": list(self.deleted)}

    @staticmethod
    def from_json(data: dict[str, object]) -> Checkpoint:
        items = data.get("items") or {}
        deleted = data.get("deleted") or []
        return Checkpoint(int(data.get("seq", 0)), {str(k): str(v) for k, v in dict(items).items()},  # type: ignore[call-overload]
                          tuple(str(k) for k in deleted))  # type: ignore[attr-defined]

    def only(self, keys: set[str] | None) -> Checkpoint:
        """The part of this checkpoint about ``keys`` (``None``: all of it)."""
        if keys is None:
            return self
        return Checkpoint(self.seq, {k: v for k, v in self.items.items() if k in keys},
                          tuple(k for k in self.deleted if k in keys))


class Platform(Protocol):
    """Everything a morph needs from where the fleet runs."""

    stack: str

    def current(self) -> tuple[int, Fleet]:
        """The latest succeeded stack version and its fleet."""
        ...

    def apply(self, fleet: Fleet, message: str) -> int:
        """Make ``fleet`` real as a new stack version (start new slots healthy, drop removed ones)."""
        ...

    def rollback(self, version: int, message: str, fleet: Fleet | None = None) -> int:
        """Re-apply ``version``'s fleet (or ``fleet``, the exact fleet a replica started from, where the
        platform's history is finer than its versions) as a new stack update."""
        ...

    def begin_command(self, kind: str, message: str, target: Fleet) -> int | None:
        """Open the user-visible version a morph's stack updates belong to (``None``: the platform keeps
        one version per update)."""
        ...

    def reopen_command(self, version: int | None) -> None:
        """Write the next updates into ``version`` (a dead controller's, during recovery)."""
        ...

    def end_command(self, version: int, result: str, reason: str | None) -> None:
        """Close the command version: ``succeeded`` or ``failed`` with ``reason``."""
        ...

    def instances(self) -> dict[str, Instance]:
        """Running instances by slot id."""
        ...

    def probe(self, slot_id: str) -> bool:
        """One health check of the slot's instance, now."""
        ...

    def pause(self) -> None:
        """Hold new requests at the load balancer (in-flight ones finish)."""
        ...

    def resume(self) -> None:
        """Release held requests; idempotent, safe when not paused."""
        ...

    def wait_idle(self, slot_ids: Sequence[str], timeout_s: float) -> bool:
        """Wait until no request is in flight to these slots; False on timeout."""
        ...

    def live_resize_blocker(self) -> str | None:
        """``None`` when a running instance's shape can change live, else why not (one line)."""
        ...

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        """The slot that consistent-hash routing sends ``key`` to, among ``ring``'s (slot id, weight)."""
        ...

    def keyed_routing(self) -> bool:
        """True when the load balancer routes by key (consistent hashing) rather than by weight."""
        ...

    def moves_volume(self) -> bool:
        """True when, with ``state_sync.strategy: volume``, the platform itself moves the data volume to
        green in the shift (and back in a rollback): the state then travels with the volume, so nothing is
        copied (no data directories, no delta). False: the Syncer copies blue's data directory to green."""
        ...

    # -- state transport -------------------------------------------------------------------------------
    def checkpoint(self, slot_id: str, since: int | None = None) -> Checkpoint: ...

    def restore(self, slot_id: str, checkpoint: Checkpoint) -> None: ...

    def set_readonly(self, slot_id: str, on: bool) -> None:
        """While on, the instance refuses writes: one writer during a handover."""
        ...

    def data_dir(self, slot_id: str) -> Path | None:
        """Where the slot's instance keeps (or will keep) its data, if the platform has such a thing."""
        ...

    def instance_url(self, slot_id: str) -> str | None:
        """``http://host:port`` of the slot's instance (for user sync commands)."""
        ...


class VersionPerUpdate:
    """For platforms whose history has one version per stack update (a Pulumi stack): a morph opens no
    command version of its own, so these are no-ops."""

    def begin_command(self, kind: str, message: str, target: Fleet) -> int | None:
        return None

    def reopen_command(self, version: int | None) -> None:
        return None

    def end_command(self, version: int, result: str, reason: str | None) -> None:
        return None
