"""A metric source that asks a Prometheus server (its HTTP API, ``/api/v1/query_range``).

Each sculpt metric (``cpu_cores``, ``mem_gib``, ``rps``, ``latency_p95_ms``) is a PromQL expression
whose result series carry the instance id in a label (``instance`` by default). The defaults fit the
standard process exporter metrics; override them per fleet. A server that is down, an HTTP error or a
malformed answer is a ``ProviderError`` (retryable): the loop holds and warns, it never guesses.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from sculpt.domain.errors import ProviderError
from sculpt.metrics.base import Sample

DEFAULT_QUERIES: dict[str, str] = {
    "cpu_cores": "sum by (instance) (rate(process_cpu_seconds_total[1m]))",
    "mem_gib": "sum by (instance) (process_resident_memory_bytes) / 1073741824",
}


class PrometheusSource:
    def __init__(self, url: str, queries: Mapping[str, str] | None = None, *, label: str = "instance",
                 timeout_s: float = 5.0, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.queries = dict(queries or DEFAULT_QUERIES)
        self.label = label
        self.timeout_s = timeout_s
        self.token = token

    def _query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """The ``result`` series of a range query, as decoded JSON (``{"metric": {...}, "values": [[t, "v"]]}``)."""
        qs = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        req = urllib.request.Request(f"{self.url}/api/v1/query_range?{qs}")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                body = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise ProviderError(f"Prometheus at {self.url} answered HTTP {e.code} to '{expr}'",
                                "check the query and the server's logs") from None
        except (OSError, ValueError) as e:
            raise ProviderError(f"cannot read from Prometheus at {self.url}: {e}",
                                "check that the server is up and the URL is right") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            raise ProviderError(f"Prometheus at {self.url} refused '{expr}': {body.get('error', body) if isinstance(body, dict) else body}",
                                "fix the PromQL expression in the spec")
        data = body.get("data", {})
        if data.get("resultType") != "matrix":
            raise ProviderError(f"Prometheus answered a {data.get('resultType')!r}, not a range matrix, for '{expr}'",
                                "use an expression that yields series")
        return list(data.get("result", []))

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[Sample]]:
        wanted = set(instances)
        merged: dict[str, dict[float, dict[str, float]]] = {i: {} for i in instances}
        for metric, expr in self.queries.items():
            for series in self._query_range(expr, start, end, step):
                labels = series.get("metric", {})
                inst = labels.get(self.label) if isinstance(labels, dict) else None
                if inst not in wanted:
                    continue
                for t, v in series.get("values", []):
                    try:
                        val = float(v)
                    except (TypeError, ValueError):
                        val = math.nan
                    merged[inst].setdefault(float(t), {})[metric] = val
        return {i: [Sample(time=t, values=vals) for t, vals in sorted(by_t.items())] for i, by_t in merged.items()}
