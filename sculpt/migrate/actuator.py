"""The loop's actuator: how a planned move becomes a morph of the fleet, and what came of it.

Why it exists: the live loop executes its plan's actions through one port (``Actuator.morph``) whatever the
mode: ``auto`` runs the journaled, rollback-safe ``Orchestrator``; ``recommend`` records the move and changes
nothing (the VPA's *Off* mode). Either way the loop gets a ``MorphOutcome`` to report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sculpt.domain.clock import SystemClock
from sculpt.domain.errors import SculptError

if TYPE_CHECKING:
    from sculpt.ledger import Ledger
    from sculpt.migrate.orchestrator import Progress, Timeouts
    from sculpt.migrate.port import Platform

RESULTS = ("recommended", "done", "rolled_back", "unchanged", "failed")


@dataclass
class MorphOutcome:
    """What the loop asked the fleet to do (``to_shape`` in ``region``), and what came of it (``result``)."""

    t: float
    to_shape: str
    from_shape: str
    region: str
    result: str  # one of RESULTS
    detail: str = ""
    migration_id: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The fleet runs ``to_shape`` now (or already did)."""
        return self.result in ("done", "unchanged")

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "from": self.from_shape, "to": self.to_shape, "region": self.region,
                "result": self.result, "detail": self.detail, "migration_id": self.migration_id,
                "seconds": round(self.seconds, 3)}


class Actuator(Protocol):
    def morph(self, shape: str, region: str, from_shape: str, now: float) -> MorphOutcome: ...


class Recommender:
    """``recommend`` mode: remember what would have been done; change nothing."""

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> MorphOutcome:
        return MorphOutcome(now, shape, from_shape, region, "recommended", "recommend mode: nothing changed")


class OrchestratorActuator:
    """``auto`` mode: a journaled, rollback-safe morph of the whole fleet through ``sculpt.migrate``."""

    def __init__(self, platform: Platform, ledger: Ledger, *, timeouts: Timeouts | None = None,
                 progress: Progress | None = None) -> None:
        self.platform, self.ledger, self.timeouts, self.progress = platform, ledger, timeouts, progress

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> MorphOutcome:
        from sculpt.migrate.orchestrator import MorphRequest, Orchestrator

        t0 = time.monotonic()
        orch = Orchestrator(self.platform, self.ledger, SystemClock(), timeouts=self.timeouts,
                            progress=self.progress)
        try:
            rep = orch.morph(MorphRequest(shape=shape, region=region, origin="watch",
                                          message=f"watch: morph to {shape} in {region}"))
        except SculptError as e:
            return MorphOutcome(now, shape, from_shape, region, "failed", str(e), orch.mid, time.monotonic() - t0)
        return MorphOutcome(now, shape, from_shape, region, rep.result, rep.reason or rep.strategy,
                            rep.migration_id, time.monotonic() - t0)
