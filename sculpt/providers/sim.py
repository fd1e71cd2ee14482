"""The ``sim`` provider: a simulated cloud on a simulated clock, for replays and scale tests.

It runs N instances (one per stream) in steps of a trace's sampling interval. It bills catalog prices per
step, boots a new shape for ``migration_s`` before it serves (blue/green: the old shape keeps serving and
both are billed meanwhile), and can fail a resize with a seeded capacity error. Everything is columnar so a
replay of thousands of instances costs a few numpy operations per step.

Step semantics (shared with the hindsight oracle, so costs compare exactly): a resize requested after
step k is observed boots during steps k+1 … k+d (d = ceil(migration_s / step_s)), billed at the new price
on top of the old one, and serves from step k+d+1.

>>> import numpy as np
>>> from sculpt.domain.catalog import Catalog, Offering, Shape
>>> cat = Catalog("demo", [Offering(shape=Shape(name=f"s{c}", family="s", vcpu=c, memory_gib=c), region="r",
...                                 price_hour=0.1 * c) for c in (1, 2)])
>>> sim = SimCloud(cat.arrays("r"), initial=np.array([0]), step_s=np.array([600.0]), migration_s=600)
>>> _ = sim.step(np.array([True])); bool(sim.resize(np.array([0]), np.array([1]))[0])
True
>>> _ = sim.step(np.array([True])); _ = sim.step(np.array([True])); sim.current.tolist(), round(float(sim.cost[0]), 4)
([1], 0.1)
"""

from __future__ import annotations

import math

import numpy as np

from sculpt.domain.arrays import BoolArray
from sculpt.domain.catalog import CatalogArrays


class SimCloud:
    """N simulated instances. ``step`` advances one step (bills, completes boots); ``resize`` requests moves."""

    def __init__(
        self,
        arrays: CatalogArrays,
        *,
        initial: np.ndarray,
        step_s: np.ndarray,
        migration_s: float = 600.0,
        capacity_error_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.arrays = arrays
        n = len(initial)
        self.current = np.asarray(initial, dtype=np.int64).copy()
        self.step_s = np.broadcast_to(np.asarray(step_s, dtype=np.float64), (n,)).copy()
        self.delay = np.ceil(migration_s / self.step_s - 1e-9).astype(np.int64)
        self.pending_to = np.full(n, -1, dtype=np.int64)
        self.boot_left = np.zeros(n, dtype=np.int64)  # steps of booting still to bill
        self.cost = np.zeros(n)
        self.migrations = np.zeros(n, dtype=np.int64)
        self.failed = np.zeros(n, dtype=np.int64)
        self.capacity_error_rate = float(capacity_error_rate)
        self._rng = np.random.default_rng(seed)
        self.k = 0

    def __len__(self) -> int:
        return len(self.current)

    @property
    def pending(self) -> np.ndarray:
        return self.pending_to >= 0

    def step(self, active: np.ndarray) -> np.ndarray:
        """Run one step for the ``active`` instances: the shape each serves this step; bills the step."""
        done = self.pending & (self.boot_left <= 0)
        self.current = np.where(done, self.pending_to, self.current)
        self.migrations += done
        self.pending_to = np.where(done, -1, self.pending_to)
        hours = self.step_s / 3600.0
        price = self.arrays.price
        booting = self.pending
        bill = price[self.current] * hours + np.where(booting, price[np.maximum(self.pending_to, 0)] * hours, 0.0)
        self.cost += np.where(active, bill, 0.0)
        self.boot_left = np.where(booting, self.boot_left - 1, 0)
        self.k += 1
        return self.current

    def last_bill(self) -> np.ndarray:
        """$ of the step just run per instance (for timelines)."""
        hours = self.step_s / 3600.0
        price = self.arrays.price
        return price[self.current] * hours + np.where(self.pending, price[np.maximum(self.pending_to, 0)] * hours, 0.0)

    def resize(self, rows: np.ndarray, to: np.ndarray) -> BoolArray:
        """Request moves of instances ``rows`` to shapes ``to``; returns which were accepted.

        Refused: a move already in flight, a move to the current shape, or a (seeded) capacity error.
        """
        rows = np.asarray(rows, dtype=np.int64)
        to = np.asarray(to, dtype=np.int64)
        ok: BoolArray = (self.pending_to[rows] < 0) & (to != self.current[rows])
        if self.capacity_error_rate > 0 and len(rows):
            err = self._rng.random(len(rows)) < self.capacity_error_rate
            self.failed[rows[ok & err]] += 1
            ok &= ~err
        r = rows[ok]
        self.pending_to[r] = to[ok]
        self.boot_left[r] = self.delay[r]
        return ok


def migration_steps(migration_s: float, step_s: float) -> int:
    """Steps a move boots before it serves (the ``d`` of the module docstring)."""
    return int(math.ceil(migration_s / step_s - 1e-9))
