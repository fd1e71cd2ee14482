"""The morph state machine's vocabulary: states, allowed transitions, step records and the report.

Why a module of its own: the orchestrator, crash recovery, the CLI and the tests all speak about the same
states; keeping them here (pure, no I/O) lets recovery reason about a journal written by a dead process.

Blue/green::

    PROVISION_GREEN -> WAIT_HEALTHY -> SYNC_STATE -> PAUSE_FINAL_DELTA -> SHIFT -> RESUME
        -> DRAIN_BLUE -> RETIRE_BLUE -> (next replica: PROVISION_GREEN | DONE)

In place (live resize)::

    RESIZE -> WAIT_HEALTHY -> (next replica: RESIZE | DONE)

Any state may go to ``ROLLBACK`` and then ``ROLLED_BACK``.

>>> can_follow(State.SYNC_STATE, State.WAIT_HEALTHY)
True
>>> can_follow(State.SHIFT, State.WAIT_HEALTHY)
False
>>> committed(State.SHIFT), committed(State.PAUSE_FINAL_DELTA)
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    PLAN = "PLAN"
    PROVISION_GREEN = "PROVISION_GREEN"
    WAIT_HEALTHY = "WAIT_HEALTHY"
    SYNC_STATE = "SYNC_STATE"
    PAUSE_FINAL_DELTA = "PAUSE_FINAL_DELTA"
    SHIFT = "SHIFT"
    RESUME = "RESUME"
    DRAIN_BLUE = "DRAIN_BLUE"
    RETIRE_BLUE = "RETIRE_BLUE"
    RESIZE = "RESIZE"
    DONE = "DONE"
    ROLLBACK = "ROLLBACK"
    ROLLED_BACK = "ROLLED_BACK"

    def __str__(self) -> str:
        return self.value


BLUE_GREEN_STEPS: tuple[State, ...] = (
    State.PROVISION_GREEN, State.WAIT_HEALTHY, State.SYNC_STATE, State.PAUSE_FINAL_DELTA, State.SHIFT,
    State.RESUME, State.DRAIN_BLUE, State.RETIRE_BLUE,
)
IN_PLACE_STEPS: tuple[State, ...] = (State.RESIZE, State.WAIT_HEALTHY)
TERMINAL: frozenset[State] = frozenset({State.DONE, State.ROLLED_BACK})

# Which state may follow which (besides ROLLBACK, which may follow any non-terminal state).
_NEXT: dict[State, frozenset[State]] = {
    State.PLAN: frozenset({State.PROVISION_GREEN, State.RESIZE, State.DONE}),
    State.PROVISION_GREEN: frozenset({State.WAIT_HEALTHY}),
    State.WAIT_HEALTHY: frozenset({State.SYNC_STATE, State.RESIZE, State.DONE}),
    State.SYNC_STATE: frozenset({State.PAUSE_FINAL_DELTA}),
    State.PAUSE_FINAL_DELTA: frozenset({State.SHIFT}),
    State.SHIFT: frozenset({State.RESUME}),
    State.RESUME: frozenset({State.DRAIN_BLUE}),
    State.DRAIN_BLUE: frozenset({State.RETIRE_BLUE}),
    State.RETIRE_BLUE: frozenset({State.PROVISION_GREEN, State.DONE}),
    State.RESIZE: frozenset({State.WAIT_HEALTHY}),
    State.ROLLBACK: frozenset({State.ROLLED_BACK}),
}


def can_follow(nxt: State, prev: State) -> bool:
    """Whether the journal may record ``nxt`` right after ``prev``."""
    if prev in TERMINAL:
        return False
    if nxt is State.ROLLBACK:
        return prev is not State.ROLLBACK
    return nxt in _NEXT.get(prev, frozenset())


def committed(state: State) -> bool:
    """True once the shift was requested: green may take writes from then on (the weights may have moved
    and a pause may be released by anyone), so green is authoritative and recovery rolls forward.

    ``SHIFT`` is journaled only after the final delta reached green under the pause (blue read-only), so
    rolling forward from it loses nothing."""
    return state in (State.SHIFT, State.RESUME, State.DRAIN_BLUE, State.RETIRE_BLUE)


def parse_state(name: str) -> State:
    """``"sync_state"``, ``"SYNC_STATE"`` or ``"sync-state"`` → ``State.SYNC_STATE``."""
    key = name.strip().upper().replace("-", "_")
    if key in ("PAUSE", "FINAL_DELTA"):
        key = "PAUSE_FINAL_DELTA"
    return State(key)


@dataclass
class Step:
    """One state the migration went through (times are the injected clock's ``now()``, epoch seconds)."""

    state: State
    started: float
    ended: float | None = None
    replica: int = 0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.value, "started": self.started, "ended": self.ended,
                "replica": self.replica, "detail": self.detail}


@dataclass
class MorphReport:
    """What ``sculpt morph --json`` prints (see docs/migration.md for the stable shape)."""

    migration_id: str
    strategy: str
    source: dict[str, Any]
    target: dict[str, Any]
    result: str = "running"
    reason: str | None = None
    steps: list[Step] = field(default_factory=list)
    pause_ms: float = 0.0
    pause_ms_max: float = 0.0
    versions: list[int] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """From the first step's start to the last step's end (injected clock)."""
        if not self.steps:
            return 0.0
        return max((s.ended or s.started) for s in self.steps) - self.steps[0].started

    def to_json(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "strategy": self.strategy,
            "from": self.source,
            "to": self.target,
            "result": self.result,
            "reason": self.reason,
            "steps": [s.to_json() for s in self.steps],
            "pause_ms": round(self.pause_ms, 3),
            "pause_ms_max": round(self.pause_ms_max, 3),
            "duration_s": round(self.duration_s, 3),
            "versions": list(self.versions),
        }
