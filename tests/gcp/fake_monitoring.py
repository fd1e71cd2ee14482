"""A test double of Cloud Monitoring's REST API v3 at the network boundary: ``projects.timeSeries.list``.

``FakeMonitoring`` is a real HTTP server on 127.0.0.1 (a thread) that answers
``GET /v3/projects/{project}/timeSeries`` in the API's JSON shapes, for the one filter form sculpt sends
(``metric.type = "..." AND metric.labels.instance_name = one_of("a", ...)``; anything else is a 400). It
keeps per (project, instance name) raw points (seconds, fraction of the vCPUs) put there by the test and
answers with those inside ``interval``, aligned by ``ALIGN_MEAN`` into ``aggregation.alignmentPeriod``
buckets counted from ``interval.startTime`` (a point at the bucket's end), newest first, one series per
instance, ``page_size`` series per page with ``nextPageToken``. It checks the bearer token (401), can
answer the next requests with given statuses (429 with ``Retry-After: 7``, 503, ...), refuse everything
(403), and refuse filters longer than ``max_filter`` (400). Every request is recorded.

How Google really aligns, pages (by points, not series) and limits filters is not modelled beyond this:
nothing here is Google's code or behaviour.
"""

from __future__ import annotations

import re
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from tests.gcp.fake_compute import TOKEN
from tests.gcp.fake_http import send_json, serve

CPU = "compute.googleapis.com/instance/cpu/utilization"
FILTER = re.compile(r'metric\.type = "([^"]+)" AND metric\.labels\.instance_name = one_of\((.*)\)')


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeMonitoring:
    """The Cloud Monitoring double (see the module docstring). ``url`` is what ``SCULPT_GCP_MONITORING_URL``
    takes."""

    token: str = TOKEN
    page_size: int = 1000
    max_filter: int = 100_000
    forbidden: bool = False
    fail_next: list[int] = field(default_factory=list)
    points: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)  # (project, name)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # path, query (first values)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = serve(lambda h, _method: self._handle(h))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v3"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, project: str, instance: str, points: list[tuple[float, float]]) -> None:
        """Raw CPU points (time, fraction of the vCPUs) of an instance, as the hypervisor would report."""
        with self.lock:
            self.points.setdefault((project, instance), []).extend(points)

    def filters(self) -> list[str]:
        return [q.get("filter", "") for _, q in self.requests]

    # -- the API ------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(h.path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        with self.lock:
            self.requests.append((parsed.path, query))
            status, body, headers = self._reply(parsed.path, query, h.headers.get("Authorization", ""))
        send_json(h, status, body, headers)

    def _reply(self, path: str, query: dict[str, str], auth: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.fail_next:
            code = self.fail_next.pop(0)
            return code, _error(code, "Quota exceeded" if code == 429 else "The service is unavailable"), (
                {"Retry-After": "7"} if code == 429 else {})
        if auth != f"Bearer {self.token}":
            return 401, _error(401, "Request had invalid authentication credentials."), {}
        m = re.fullmatch(r"/v3/projects/([^/]+)/timeSeries", path)
        if m is None:
            return 404, _error(404, f"the fake does not know GET {path}"), {}
        project = unquote(m[1])
        if self.forbidden:
            return 403, _error(403, f"Permission monitoring.timeSeries.list denied (or the resource may not "
                                    f"exist) for 'projects/{project}'"), {}
        flt = query.get("filter", "")
        fm = FILTER.fullmatch(flt)
        if fm is None or len(flt) > self.max_filter:
            return 400, _error(400, f"Field filter had an invalid value of \"{flt[:40]}...\""), {}
        names = re.findall(r'"((?:[^"\\]|\\.)*)"', fm[2])
        try:
            start, end = _time(query["interval.startTime"]), _time(query["interval.endTime"])
            period = float(query.get("aggregation.alignmentPeriod", "60s").rstrip("s"))
        except (KeyError, ValueError):
            return 400, _error(400, "interval.startTime, interval.endTime and a period are required"), {}
        if query.get("aggregation.perSeriesAligner") != "ALIGN_MEAN" or period < 60:
            return 400, _error(400, "the fake aligns only ALIGN_MEAN over at least 60s"), {}
        series = []
        for name in names:
            raw = [(t, v) for t, v in self.points.get((project, name), []) if start <= t <= end]
            if fm[1] != CPU or not raw:
                continue
            buckets: dict[int, list[float]] = {}
            for t, v in raw:
                buckets.setdefault(int((t - start) // period), []).append(v)
            points = [{"interval": {"startTime": _stamp(start + (k + 1) * period),
                                    "endTime": _stamp(start + (k + 1) * period)},
                       "value": {"doubleValue": sum(vs) / len(vs)}}
                      for k, vs in sorted(buckets.items(), reverse=True)]  # newest first, as the API
            series.append({"metric": {"type": fm[1], "labels": {"instance_name": name}},
                           "resource": {"type": "gce_instance", "labels": {
                               "project_id": project, "instance_id": str(zlib.crc32(name.encode())),
                               "zone": "us-central1-a"}},
                           "metricKind": "GAUGE", "valueType": "DOUBLE", "points": points})
        first = int(query.get("pageToken") or 0)
        out: dict[str, Any] = {"timeSeries": series[first:first + self.page_size]} if series else {}
        if first + self.page_size < len(series):
            out["nextPageToken"] = str(first + self.page_size)
        out["unit"] = "10^2.%"
        return 200, out, {}


def _error(code: int, message: str) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              429: "RESOURCE_EXHAUSTED"}.get(code, "UNAVAILABLE")
    return {"error": {"code": code, "message": message, "status": status}}
