"""Cost–risk curves: the frontier is the undominated points, interpolation never beats a real point's
cost at its risk, more allowed risk never costs more, the hull lies under the frontier and is convex."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sculpt.replay.curves import cost_at, frontier, hull

POINTS = st.lists(st.tuples(st.floats(0, 0.05, allow_nan=False), st.floats(1, 3, allow_nan=False)), min_size=1,
                  max_size=12)


@given(pts=POINTS)
def test_the_frontier_is_exactly_the_undominated_points(pts: list[tuple[float, float]]) -> None:
    f = frontier(pts)
    assert f and set(f) <= set(pts)
    assert all(a[0] < b[0] and a[1] > b[1] for a, b in zip(f, f[1:], strict=False))
    for r, c in f:  # nothing is at most as risky and cheaper
        assert not any(pr <= r and pc < c for pr, pc in pts)
    for r, c in pts:  # every point is matched or beaten by a frontier point at most as risky
        assert any(fr <= r and fc <= c for fr, fc in f)


@given(pts=POINTS, a=st.floats(0, 0.06), b=st.floats(0, 0.06))
def test_more_allowed_risk_never_costs_more(pts: list[tuple[float, float]], a: float, b: float) -> None:
    f = frontier(pts)
    lo, hi = sorted((a, b))
    ca, cb = cost_at(f, lo), cost_at(f, hi)
    if ca is not None:
        assert cb is not None and cb <= ca + 1e-12
    assert (ca is None) == (lo < f[0][0])


@given(pts=POINTS)
def test_the_curve_at_a_point_s_risk_is_no_dearer_than_that_point(pts: list[tuple[float, float]]) -> None:
    f, h = frontier(pts), hull(pts)
    for r, c in pts:
        cf, ch = cost_at(f, r), cost_at(h, r)
        assert cf is not None and ch is not None
        assert ch <= cf + 1e-9 and cf <= c + 1e-12
    for r, c in f:
        assert cost_at(f, r) == c


@given(pts=POINTS)
def test_the_hull_is_convex_and_made_of_frontier_points(pts: list[tuple[float, float]]) -> None:
    f, h = frontier(pts), hull(pts)
    assert set(h) <= set(f) and h[0] == f[0] and h[-1] == f[-1]
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(h, h[1:], strict=False)]
    assert all(s0 < s1 + 1e-9 for s0, s1 in zip(slopes, slopes[1:], strict=False))


def test_empty_and_degenerate_curves() -> None:
    assert frontier([]) == [] and cost_at([], 0.1) is None
    assert frontier([(0.0, 1.0), (0.0, 1.0)]) == [(0.0, 1.0)]
    assert frontier([(float("nan"), 1.0), (0.01, 2.0)]) == [(0.01, 2.0)]
    assert cost_at([(0.0, 1.0)], 0.5) == 1.0 and cost_at([(0.1, 1.0)], 0.05) is None
