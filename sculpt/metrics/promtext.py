"""Reading the Prometheus text exposition format (0.0.4) an application serves on ``/metrics``: samples by
name (through ``prometheus_client``'s parser), counters summed, histogram quantiles.

>>> fams = parse('a_total{code="200"} 3\\na_total{code="500"} 1\\nb 2.5\\n')
>>> total(fams, "a_total"), fams["b"][0].value
(4.0, 2.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    labels: dict[str, str]
    value: float


def parse(text: str) -> dict[str, list[Point]]:
    """Sample name -> points, read by ``prometheus_client``'s text parser (label values unescaped: ``\\"``,
    ``\\\\``, ``\\n``). An exposition it refuses is read line by line, each sample line on its own, so one
    malformed line (skipped) does not lose the others."""
    from prometheus_client.parser import text_string_to_metric_families

    def read(chunk: str, out: dict[str, list[Point]]) -> None:
        for fam in text_string_to_metric_families(chunk):
            for s in fam.samples:
                out.setdefault(s.name, []).append(Point(dict(s.labels), float(s.value)))

    out: dict[str, list[Point]] = {}
    try:
        read(text, out)
        return out
    except (ValueError, TypeError, IndexError, KeyError):
        out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            read(line + "\n", out)
        except (ValueError, TypeError, IndexError, KeyError):
            continue
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
    """Cumulative buckets of histogram ``name`` (without the ``_bucket`` suffix), summed over labels; a
    bucket whose ``le`` is not a number is skipped (an app's typo must not stop the reading)."""
    acc: dict[float, float] = {}
    for p in fams.get(f"{name}_bucket", []):
        le = p.labels.get("le")
        if le is None:
            continue
        try:
            bound = math.inf if le in ("+Inf", "Inf") else float(le)
        except ValueError:
            continue  # a malformed bucket bound is skipped like a malformed line
        if math.isnan(bound) or math.isnan(p.value):
            continue
        acc[bound] = acc.get(bound, 0.0) + p.value
    return sorted(acc.items())
