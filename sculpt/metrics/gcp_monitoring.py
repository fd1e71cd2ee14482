"""Cloud Monitoring as a metric source: Compute Engine CPU for many instances by name, batched.

Why it exists: on GCP (``engine: pulumi``, provider ``gcp``) the instances' CPU is in Cloud Monitoring, not
in a Prometheus sculpt could be pointed at. One ``projects.timeSeries.list`` request
(``GET {endpoint}/projects/{project}/timeSeries``) reads one metric type for many instances:

- ``filter``: ``metric.type = "compute.googleapis.com/instance/cpu/utilization" AND
  metric.labels.instance_name = one_of("a", "b", ...)``. Instances are batched so that the filter stays
  under ``MAX_FILTER_CHARS`` (a conservative bound: sculpt does not know Google's exact limit) and at most
  ``MAX_NAMES`` names;
- ``interval.startTime``/``interval.endTime`` in RFC 3339; ``aggregation.alignmentPeriod`` is the step
  (whole minutes, at least 60 s: the metric is sampled once a minute) with ``ALIGN_MEAN``;
- pages are followed through ``pageToken``/``nextPageToken``;
- each series' points come newest first; samples are returned oldest first, per instance.

``cpu/utilization`` is the fraction of the instance's vCPUs in use: ``cpu_pct`` = 100 x value. Memory is
not read: the Ops Agent's ``agent.googleapis.com/memory/percent_used`` is keyed by ``instance_id``, not
``instance_name``, so it would need a second mapping.

This module speaks no HTTP itself (``sculpt.metrics`` sits beside, not above, ``sculpt.providers``): it is
given a :class:`JsonGet`, in practice ``sculpt.providers.gcp.MonitoringClient`` (token, retries with
backoff on 429/5xx, one-line errors), wired in ``sculpt.app.cloud``. MIG instances have no slot identity;
:class:`SlotMonitoringSource` answers by slot id given a slot -> (project, instance name, vCPUs) map.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sculpt.domain.errors import ProviderError
from sculpt.metrics.aws_ids import with_cores
from sculpt.metrics.base import MetricPoint, MetricSource

CPU_UTILIZATION = "compute.googleapis.com/instance/cpu/utilization"
MAX_FILTER_CHARS = 2000  # a conservative bound on one filter's length (an assumption, not Google's number)
MAX_NAMES = 100  # instances per request
MAX_PAGES = 1000  # a guard against a server that keeps answering with a nextPageToken


class JsonGet(Protocol):
    """A GET of a Google REST API that answers JSON (``sculpt.providers.gcp.MonitoringClient``)."""

    def get(self, path: str, query: dict[str, str], *, what: str) -> dict[str, Any]: ...


def rfc3339(t: float) -> str:
    """Seconds since the epoch as an RFC 3339 UTC timestamp.

    >>> rfc3339(1_700_000_000.5)
    '2023-11-14T22:13:20.500000Z'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (``Z`` or an offset, up to nanoseconds) as seconds since the epoch.

    >>> parse_time("2023-11-14T22:13:20Z"), parse_time("2023-11-14T22:13:20.123456789Z")
    (1700000000.0, 1700000000.123456)
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def alignment_s(step: float) -> int:
    """The alignment period for a step: whole minutes, at least one.

    >>> alignment_s(15), alignment_s(60), alignment_s(299), alignment_s(300)
    (60, 60, 240, 300)
    """
    return max(60, int(step) // 60 * 60)


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def name_filter(metric_type: str, names: Sequence[str]) -> str:
    """The filter for ``metric_type`` of the instances named ``names``.

    >>> name_filter("m/t", ["web-a", "web-b"])
    'metric.type = "m/t" AND metric.labels.instance_name = one_of("web-a", "web-b")'
    """
    return (f"metric.type = {_quote(metric_type)} AND metric.labels.instance_name = "
            f"one_of({', '.join(_quote(n) for n in names)})")


def batches(names: Sequence[str], metric_type: str, *, max_chars: int = MAX_FILTER_CHARS,
            max_names: int = MAX_NAMES) -> Iterator[list[str]]:
    """``names`` in order, cut so that each batch's filter fits ``max_chars`` and ``max_names``.

    >>> [len(b) for b in batches([f"web-{i:03d}" for i in range(10)], "m/t", max_chars=120)]
    [5, 5]
    >>> [len(b) for b in batches([f"web-{i:03d}" for i in range(10)], "m/t", max_names=4)]
    [4, 4, 2]
    """
    batch: list[str] = []
    for name in names:
        if batch and (len(batch) >= max_names or len(name_filter(metric_type, [*batch, name])) > max_chars):
            yield batch
            batch = []
        batch.append(name)
    if batch:
        yield batch


def _value(v: Mapping[str, Any]) -> float | None:
    """A point's ``TypedValue`` as a float (``doubleValue``; ``int64Value`` is a string in JSON)."""
    for key in ("doubleValue", "int64Value"):
        if key in v:
            try:
                return float(v[key])
            except (TypeError, ValueError):
                return None
    return None


class MonitoringSource:
    """``MetricSource`` over Cloud Monitoring's ``timeSeries.list`` (instances are GCE instance names)."""

    def __init__(self, project: str, api: JsonGet, *, metric_type: str = CPU_UTILIZATION,
                 max_filter_chars: int = MAX_FILTER_CHARS, max_names: int = MAX_NAMES) -> None:
        self.project = project
        self.api = api
        self.metric_type = metric_type
        self.max_filter_chars = max_filter_chars
        self.max_names = max_names
        self.calls = 0  # timeSeries.list requests made (pages included)

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        names = list(dict.fromkeys(instances))
        points: dict[str, dict[float, dict[str, float]]] = {n: {} for n in names}
        cut = batches(names, self.metric_type, max_chars=self.max_filter_chars, max_names=self.max_names)
        for batch in cut:
            for series in self._series(batch, start, end, step):
                name = ((series.get("metric") or {}).get("labels") or {}).get("instance_name")
                if name not in points:
                    continue
                for p in series.get("points") or ():
                    t, v = (p.get("interval") or {}).get("endTime"), _value(p.get("value") or {})
                    if t is None or v is None:
                        continue
                    points[name].setdefault(parse_time(str(t)), {})["cpu_pct"] = 100.0 * v
        return {n: [MetricPoint(t, vals) for t, vals in sorted(points[n].items())] for n in names}

    def _series(self, names: list[str], start: float, end: float, step: float) -> Iterator[dict[str, Any]]:
        query = {"filter": name_filter(self.metric_type, names), "interval.startTime": rfc3339(start),
                 "interval.endTime": rfc3339(end), "aggregation.alignmentPeriod": f"{alignment_s(step)}s",
                 "aggregation.perSeriesAligner": "ALIGN_MEAN", "view": "FULL"}
        path = f"projects/{urllib.parse.quote(self.project, safe='')}/timeSeries"
        what = f"reading {self.metric_type} of {len(names)} instance(s) in {self.project}"
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = self.api.get(path, {**query, "pageToken": token} if token else query, what=what)
            self.calls += 1
            yield from page.get("timeSeries") or ()
            token = page.get("nextPageToken") or None
            if token is None:
                return
        raise ProviderError(f"reading {self.metric_type} did not end after {MAX_PAGES} pages",
                            "check SCULPT_GCP_MONITORING_URL: the endpoint keeps sending nextPageToken")


@dataclass(frozen=True)
class GceTarget:
    """What reading one slot needs on GCP: its instance's project and name, and its shape's vCPUs."""

    project: str
    instance_name: str
    vcpus: float | None = None


class SlotMonitoringSource:
    """A ``MetricSource`` by slot id over Cloud Monitoring by instance name, one source per project.

    ``resolve`` is asked once per ``read`` (MIG instances change with every blue/green step); a slot it does
    not name (no instance yet) maps to an empty list, so the loop holds it. ``cpu_cores`` is added from the
    slot's vCPUs. ``source_for(project)`` gives the by-name source of a project.
    """

    def __init__(self, source_for: Callable[[str], MetricSource],
                 resolve: Callable[[], Mapping[str, GceTarget]]) -> None:
        self.source_for = source_for
        self.resolve = resolve

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        targets = self.resolve()
        by_project: dict[str, list[str]] = {}
        for slot in instances:
            t = targets.get(slot)
            if t is not None:
                by_project.setdefault(t.project, []).append(t.instance_name)
        got = {(project, name): samples for project, names in by_project.items()
               for name, samples in self.source_for(project).read(names, start, end, step).items()}
        out: dict[str, list[MetricPoint]] = {}
        for slot in instances:
            t = targets.get(slot)
            samples = got.get((t.project, t.instance_name), []) if t is not None else []
            out[slot] = [with_cores(s, t.vcpus if t is not None else None) for s in samples]
        return out
