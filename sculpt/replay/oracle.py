"""The hindsight oracle: the cheapest shape schedule that never under-provisions, migrations included.

A dynamic programme over steps with the shapes as states, vectorised across shapes *and* streams (one numpy
pass per step for the whole fleet). With V_i[s] the least cost of serving steps 0..i ending on shape s::

    V_i[s] = c_i[s] + min(V_{i-1}[s], min_j V_{i-1}[j] + d·h·price[s])     (inf where s cannot cover step i)

where c_i[s] = price[s]·h (h = step hours) and d·h·price[s] is the boot overlap billed when moving to s (the
same d as ``sculpt.providers.sim``: d steps before s serves). Moving into s costs the same from every j, so
the inner minimum is the row minimum: O(steps × shapes). The first shape is free (chosen with hindsight)
and the first move can serve at step d+1 at the earliest, as for the online policies. Demand above the
largest shape is clipped to it (nothing could serve it; it still counts as under-provisioned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sculpt.domain.catalog import CatalogArrays


@dataclass(frozen=True)
class OracleResult:
    shapes: np.ndarray  # (steps, streams) shape index serving each step (-1 past a stream's end)
    switch_cost: np.ndarray  # (steps, streams) $ of boot overlap billed at that step
    cost: np.ndarray  # (streams,) total $


def oracle(
    arrays: CatalogArrays,
    cpu: np.ndarray,
    mem: np.ndarray,
    valid: np.ndarray,
    step_h: np.ndarray,
    delay: np.ndarray,
    allowed: np.ndarray | None = None,
) -> OracleResult:
    """Optimal schedules for N streams. ``cpu``/``mem``/``valid`` are (steps, streams); NaN memory = none."""
    k_steps, n = cpu.shape
    allow = np.ones(len(arrays), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    cols = np.flatnonzero(allow)
    vcpu, gib, price = arrays.vcpu[cols], arrays.memory_gib[cols], arrays.price[cols]
    s = len(cols)
    need_cpu = np.minimum(np.nan_to_num(cpu, nan=0.0), vcpu.max())
    need_mem = np.minimum(np.nan_to_num(mem, nan=0.0), gib.max())
    step_h = np.asarray(step_h, dtype=np.float64)
    delay = np.asarray(delay, dtype=np.int64)
    run = price[None, :] * step_h[:, None]  # (n, s) $ per step
    move = run * delay[:, None]  # (n, s) overlap $ of a move into s

    came_by_move = np.zeros((k_steps, n, s), dtype=bool)
    best_prev = np.zeros((k_steps, n), dtype=np.int64)
    v = np.where((vcpu[None, :] >= need_cpu[0][:, None]) & (gib[None, :] >= need_mem[0][:, None]), run, np.inf)
    for i in range(1, k_steps):
        fits = (vcpu[None, :] >= need_cpu[i][:, None]) & (gib[None, :] >= need_mem[i][:, None])
        j = v.argmin(axis=1)
        vmin = v[np.arange(n), j]
        moved = vmin[:, None] + move
        can_move = (i >= delay + 1)[:, None]
        take_move = can_move & (moved < v)
        nv = np.where(take_move, moved, v) + run
        live = valid[i][:, None]
        came_by_move[i] = take_move & live
        best_prev[i] = j
        v = np.where(live, np.where(fits, nv, np.inf), v)
    # backtrack
    cur = v.argmin(axis=1)
    total = v[np.arange(n), cur]
    shapes = np.full((k_steps, n), -1, dtype=np.int64)
    switch = np.zeros((k_steps, n))
    rows = np.arange(n)
    for i in range(k_steps - 1, -1, -1):
        live = valid[i]
        shapes[i] = np.where(live, cur, -1)
        if i == 0:
            break
        mv = came_by_move[i, rows, cur] & live
        if mv.any():
            # the overlap is billed during the d steps before the move serves; book it on the first of them
            at = np.maximum(i - delay, 0)
            switch[at[mv], rows[mv]] += move[rows[mv], cur[mv]]
            cur = np.where(mv, best_prev[i], cur)
    return OracleResult(shapes=np.where(shapes >= 0, cols[np.maximum(shapes, 0)], -1), switch_cost=switch,
                        cost=total)
