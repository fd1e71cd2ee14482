"""The metric-source port: per-instance samples over a time range, whatever the backend.

Sources (local processes, CloudWatch, Prometheus, trace files) all answer one question — what did these
instances report between ``start`` and ``end`` at ``step`` seconds — so the learner does not care where the
numbers come from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class MetricPoint:
    """One instance's metrics at one time (seconds since the epoch); names are the source's, e.g.
    ``cpu_pct``, ``network_in_bytes``."""

    time: float
    values: Mapping[str, float] = field(default_factory=dict)


class MetricSource(Protocol):
    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        """Samples per instance id, oldest first; an instance with no data maps to an empty list."""
        ...
