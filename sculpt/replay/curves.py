"""Cost–risk curves: which policy is cheaper *at equal risk*, from a handful of swept points.

A policy swept over its knob (sculpt's aggressiveness, a baseline's margin) gives points (risk, cost) —
risk the under-provisioned fraction, cost × oracle or $. Comparing two policies at their default settings
is unfair when one runs riskier than the other; comparing their *frontiers* at the same risk is not.

- ``frontier``: the monotone lower frontier — the points no other point beats on both risk and cost
  (Pareto), by increasing risk and strictly decreasing cost.
- ``hull``: its lower convex hull. Any point on a segment between two runs is reachable by running one
  setting on part of the fleet and the other on the rest, so the hull is what a policy *can* reach; the
  frontier (and interpolation along it) is the conservative reading.
- ``cost_at``: the frontier's cost at a risk, linearly interpolated; beyond its riskiest point the cost
  stays flat (more allowed risk never has to cost more); below its safest point it is ``None`` — the
  policy never ran that safe.

Pure functions over plain floats: no numpy, no I/O.

>>> pts = [(0.004, 1.10), (0.001, 1.40), (0.002, 1.60), (0.010, 1.05)]
>>> frontier(pts)
[(0.001, 1.4), (0.004, 1.1), (0.01, 1.05)]
>>> round(cost_at(frontier(pts), 0.0025), 6), cost_at(frontier(pts), 0.02), cost_at(frontier(pts), 0.0005)
(1.25, 1.05, None)
>>> hull([(0.0, 2.0), (0.1, 1.9), (0.2, 1.0)])
[(0.0, 2.0), (0.2, 1.0)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Point = tuple[float, float]  # (risk, cost)


def frontier(points: Iterable[Point]) -> list[Point]:
    """The Pareto points by increasing risk: each strictly cheaper than every point at most as risky.
    Non-finite points are ignored."""
    pts = sorted((float(r), float(c)) for r, c in points if math.isfinite(r) and math.isfinite(c))
    out: list[Point] = []
    for r, c in pts:
        if not out or c < out[-1][1]:  # sorted by (risk, cost): anything else is dominated by out[-1]
            out.append((r, c))
    return out


def hull(points: Iterable[Point]) -> list[Point]:
    """The lower convex hull of the frontier (by increasing risk, decreasing cost)."""
    out: list[Point] = []
    for p in frontier(points):
        while len(out) >= 2 and _cross(out[-2], out[-1], p) <= 0:
            out.pop()  # out[-1] lies on or above the segment out[-2] -> p
        out.append(p)
    return out


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def cost_at(curve: Sequence[Point], risk: float) -> float | None:
    """The cost of ``curve`` (a ``frontier`` or ``hull``) at ``risk``; ``None`` below its safest point."""
    if not curve or not math.isfinite(risk) or risk < curve[0][0]:
        return None
    for (r0, c0), (r1, c1) in zip(curve, curve[1:], strict=False):
        if risk == r1:
            return c1
        if r0 <= risk < r1:
            return c0 + (c1 - c0) * min((risk - r0) / (r1 - r0), 1.0)
    return curve[-1][1]
