"""Hysteresis and cooldown state of the decision, as an explicit value passed in and returned.

``decide`` never remembers anything between calls: the caller holds a ``DecisionState`` (per stream: when
it last moved and the times of its recent moves) and gets a new one back. That keeps the decision pure,
replayable and trivially persisted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sculpt.domain.arrays import FloatArray, IntArray

RING = 64  # recent move times kept per stream: enough to count a day's moves under any sane policy cap
DAY_S = 86400.0


@dataclass(frozen=True)
class DecisionState:
    """Per-stream memory of past moves. Arrays have one row per stream; never mutated in place."""

    last_move_t: FloatArray  # seconds since the epoch of the last move; -inf: never moved
    move_times: FloatArray  # (streams, RING) ring of recent move times; -inf: empty

    @classmethod
    def empty(cls, n: int) -> DecisionState:
        return cls(last_move_t=np.full(n, -np.inf), move_times=np.full((n, RING), -np.inf))

    def __len__(self) -> int:
        return len(self.last_move_t)

    def moves_last_day(self, now: float) -> IntArray:
        """How many moves each stream made in the 24 h before ``now``."""
        counts: IntArray = (self.move_times > now - DAY_S).sum(axis=1)
        return counts

    def since_last_move(self, now: float) -> FloatArray:
        return now - self.last_move_t

    def record(self, moved: np.ndarray, now: float) -> DecisionState:
        """A new state where the streams flagged in ``moved`` moved at ``now``."""
        moved = np.asarray(moved, dtype=bool)
        if not moved.any():
            return self
        last = np.where(moved, now, self.last_move_t)
        ring = self.move_times.copy()
        rows = np.flatnonzero(moved)
        oldest = ring[rows].argmin(axis=1)  # overwrite the oldest entry
        ring[rows, oldest] = now
        return DecisionState(last_move_t=last, move_times=ring)

    def select(self, idx: int) -> DecisionState:
        """The state of one stream (for single-instance decisions)."""
        return DecisionState(last_move_t=self.last_move_t[idx:idx + 1].copy(),
                             move_times=self.move_times[idx:idx + 1].copy())
