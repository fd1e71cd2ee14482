"""A small parser for the Prometheus text exposition format (0.0.4), enough for counters, gauges and
histograms an application exposes on ``/metrics``.

>>> fams = parse('a_total{code="200"} 3\\na_total{code="500"} 1\\nb 2.5\\n')
>>> total(fams, "a_total"), fams["b"][0].value
(4.0, 2.5)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Point:
    labels: dict[str, str]
    value: float


def parse(text: str) -> dict[str, list[Point]]:
    """Metric name -> points. Comment and malformed lines are skipped."""
    out: dict[str, list[Point]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        out.setdefault(m.group(1), []).append(Point(labels, value))
    return out


def total(fams: dict[str, list[Point]], name: str, **match: str) -> float:
    """Sum of a metric's points whose labels include ``match``; NaN when the metric is absent."""
    pts = [p for p in fams.get(name, []) if all(p.labels.get(k) == v for k, v in match.items())]
    return sum(p.value for p in pts) if pts else math.nan


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative (upper bound, count) buckets, linear within a
    bucket. NaN when there are no observations.

    >>> histogram_quantile(0.5, [(0.1, 5.0), (0.2, 10.0), (math.inf, 10.0)])
    0.1
    """
    bs = sorted(buckets)
    if not bs or bs[-1][1] <= 0:
        return math.nan
    rank = q * bs[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in bs:
        if n >= rank:
            if math.isinf(le):
                return prev_le
            if n == prev_n:
                return le
            return prev_le + (le - prev_le) * (rank - prev_n) / (n - prev_n)
        prev_le, prev_n = le, n
    return prev_le


def buckets_of(fams: dict[str, list[Point]], name: str) -> list[tuple[float, float]]:
    """Cumulative buckets of histogram ``name`` (without the ``_bucket`` suffix), summed over labels."""
    acc: dict[float, float] = {}
    for p in fams.get(f"{name}_bucket", []):
        le = p.labels.get("le")
        if le is None:
            continue
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
        acc[bound] = acc.get(bound, 0.0) + p.value
    return sorted(acc.items())
