"""The narrow port between the morph orchestrator and the platform it runs on.

Why it exists: the state machine must not know about processes, sockets or agents. It needs only to
apply a fleet as a new stack version (``Versions``), see instances and their health (``Instances``), hold
and release traffic (``Traffic``), know who owns a key (``KeyRouting``), and move state between two
instances (``StateTransport``); ``Platform`` is all five, and each caller is typed against the narrowest
one it uses. ``local.py`` adapts the local engine + agent to this port in a few lines per method; ``fake.py``
is an in-memory fake of it for property tests; ``faults.FaultyPlatform`` wraps any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sculpt.domain.errors import ProviderError
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


class AppliedButFailed(ProviderError):
    """``apply`` made ``version`` real, then failed (say an update whose last part did not finish): the
    version exists and counts as one of the morph's, and the step failed."""

    def __init__(self, message: str, fix: str | None, version: int, *, retryable: bool = False) -> None:
        super().__init__(message, fix, retryable=retryable)
        self.version = version


class Versions(Protocol):
    """The stack's history: its current fleet, new versions, and the user-visible command they belong to."""

    stack: str

    def current(self) -> tuple[int, Fleet]:
        """The latest succeeded stack version and its fleet."""
        ...

    def apply(self, fleet: Fleet, message: str) -> int:
        """Make ``fleet`` real as a new stack version (start new slots healthy, drop removed ones); may raise
        ``AppliedButFailed`` once the version exists."""
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


class Instances(Protocol):
    """What runs: instances by slot, their health, and whether a running one can change shape live."""

    def instances(self) -> dict[str, Instance]:
        """Running instances by slot id."""
        ...

    def probe(self, slot_id: str) -> bool:
        """One health check of the slot's instance, now."""
        ...

    def live_resize_blocker(self) -> str | None:
        """``None`` when a running instance's shape can change live, else why not (one line)."""
        ...


class Traffic(Protocol):
    """The load balancer's hold on requests during a handover."""

    def pause(self) -> None:
        """Hold new requests at the load balancer (in-flight ones finish)."""
        ...

    def resume(self) -> None:
        """Release held requests; idempotent, safe when not paused."""
        ...

    def wait_idle(self, slot_ids: Sequence[str], timeout_s: float) -> bool:
        """Wait until no request is in flight to these slots; False on timeout."""
        ...


class KeyRouting(Protocol):
    """Whether requests are routed by key, and to whom (``sculpt.domain.ring`` where they are)."""

    def keyed_routing(self) -> bool:
        """True when the load balancer routes by key (consistent hashing) rather than by weight."""
        ...

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        """The slot that consistent-hash routing sends ``key`` to, among ``ring``'s (slot id, weight), every
        member up."""
        ...


class StateTransport(Protocol):
    """Moving an application's state between instances, and freezing writes while it moves."""

    def checkpoint(self, slot_id: str, since: int | None = None) -> Checkpoint: ...

    def restore(self, slot_id: str, checkpoint: Checkpoint) -> None: ...

    def set_readonly(self, slot_id: str, on: bool) -> None:
        """While on, the instance refuses writes: one writer during a handover."""
        ...

    def moves_volume(self) -> bool:
        """True when, with ``state_sync.strategy: volume``, the platform itself moves the data volume to
        green in the shift (and back in a rollback): the state then travels with the volume, so nothing is
        copied (no data directories, no delta). False: the Syncer copies blue's data directory to green."""
        ...

    def data_dir(self, slot_id: str) -> Path | None:
        """Where the slot's instance keeps (or will keep) its data, if the platform has such a thing."""
        ...

    def instance_url(self, slot_id: str) -> str | None:
        """``http://host:port`` of the slot's instance (for user sync commands)."""
        ...


class SyncPort(StateTransport, KeyRouting, Protocol):
    """What state sync (``sculpt.migrate.sync.Syncer``) needs: move state, and know which keys move where."""


class Platform(Versions, Instances, Traffic, KeyRouting, StateTransport, Protocol):
    """Everything a morph needs from where the fleet runs: the orchestrator (and crash recovery, which
    drives it) uses all of it; state sync only ``SyncPort``."""


class VersionPerUpdate:
    """For platforms whose history has one version per stack update (a Pulumi stack): a morph opens no
    command version of its own, so these are no-ops."""

    def begin_command(self, kind: str, message: str, target: Fleet) -> int | None:
        return None

    def reopen_command(self, version: int | None) -> None:
        return None

    def end_command(self, version: int, result: str, reason: str | None) -> None:
        return None
