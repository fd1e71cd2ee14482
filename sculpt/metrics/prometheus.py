"""A metric source that asks a Prometheus server (its HTTP API, ``/api/v1/query_range``).

Each sculpt metric (``cpu_cores``, ``mem_gib``, ``rps``, ``latency_p95_ms``) is a PromQL expression
whose result series carry the instance id in a label (``instance`` by default). The defaults fit the
standard process exporter metrics; override them per fleet. A server that is down, an HTTP error or a
malformed answer (not JSON, ``data`` not an object, a series that is not ``{"metric": {...}, "values":
[[t, "v"], ...]}``, a timestamp that is not a finite number) is a one-line ``ProviderError`` naming what
was wrong: the loop holds and warns, it never guesses from half an answer. A sample *value* that is not a
number (Prometheus writes ``"NaN"``, ``"+Inf"``) is NaN: "no reading" for that instance at that time.
"""

from __future__ import annotations

import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.metrics.base import MetricPoint

MAX_BODY_BYTES = 64 * 1024 * 1024  # a range answer larger than this is a runaway query, not a reading


def _brief(value: Any, limit: int = 120) -> str:
    """``value`` for a one-line message: control characters escaped, cut at ``limit``."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _timestamp(t: Any) -> float | None:
    """A sample time as seconds since the epoch; ``None`` when it is not a finite number (``true`` is not)."""
    if isinstance(t, bool) or not isinstance(t, int | float | str):
        return None
    try:
        v = float(t)
    except (ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None

DEFAULT_QUERIES: dict[str, str] = {
    "cpu_cores": "sum by (instance) (rate(process_cpu_seconds_total[1m]))",
    "mem_gib": "sum by (instance) (process_resident_memory_bytes) / 1073741824",
}


class PrometheusSource:
    def __init__(self, url: str, queries: Mapping[str, str] | None = None, *, label: str = "instance",
                 timeout_s: float = 5.0, token: str | None = None) -> None:
        try:
            scheme = urllib.parse.urlsplit(url).scheme if url.isprintable() else ""
        except ValueError:  # e.g. an unclosed IPv6 bracket
            scheme = ""
        if scheme not in ("http", "https"):
            raise ConfigError(f"the Prometheus URL '{_brief(url)}' is not an http(s) URL",
                              "pass --source prometheus=http://host:9090")
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
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - http(s) only
                raw = resp.read(MAX_BODY_BYTES + 1)
                short = len(raw) <= MAX_BODY_BYTES and bool(getattr(resp, "length", None))
        except urllib.error.HTTPError as e:
            raise ProviderError(f"Prometheus at {self.url} answered HTTP {e.code} to '{_brief(expr)}'"
                                f"{self._error_of(e)}", "check the query and the server's logs") from None
        except (OSError, ValueError, http.client.HTTPException) as e:  # HTTPException: a garbled HTTP answer
            raise ProviderError(f"cannot read from Prometheus at {self.url}: {_brief(str(e) or type(e).__name__)}",
                                "check that the server is up and the URL is right") from None
        if len(raw) > MAX_BODY_BYTES:
            raise ProviderError(f"Prometheus at {self.url} answered more than {MAX_BODY_BYTES >> 20} MB to "
                                f"'{_brief(expr)}'", "use a coarser step or a query with fewer series")
        if short:  # the connection closed before Content-Length bytes came
            raise ProviderError(f"Prometheus at {self.url} answered a truncated body to '{_brief(expr)}'",
                                "check the server (or the proxy in front of it)")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ProviderError(f"Prometheus at {self.url} answered something that is not JSON to '{_brief(expr)}'",
                                "check that the URL is the Prometheus server (not a proxy's error page)") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            why = body.get("error", body) if isinstance(body, dict) else body
            raise ProviderError(f"Prometheus at {self.url} refused '{_brief(expr)}': {_brief(why)}",
                                "fix the PromQL expression in the spec")
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderError(f"Prometheus at {self.url} answered 'data': {_brief(data)} (not an object) to "
                                f"'{_brief(expr)}'", "check that the URL is a Prometheus query API")
        if data.get("resultType") != "matrix":
            raise ProviderError(f"Prometheus answered a {_brief(data.get('resultType'))}, not a range matrix, for "
                                f"'{_brief(expr)}'", "use an expression that yields series")
        result = data.get("result", [])
        if not isinstance(result, list):
            raise ProviderError(f"Prometheus at {self.url} answered a 'result' that is not a list to '{_brief(expr)}'",
                                "check that the URL is a Prometheus query API")
        for i, series in enumerate(result):
            problem = self._malformed(series)
            if problem:
                raise ProviderError(f"Prometheus at {self.url} answered a malformed series {i} to "
                                    f"'{_brief(expr)}': {problem}", "check the server (or the proxy in front of it)")
        return result

    @staticmethod
    def _error_of(e: urllib.error.HTTPError) -> str:
        """Prometheus' own reason for an HTTP error (``{"error": "..."}``), when the body says one."""
        try:
            body = json.loads(e.read(64 * 1024))
        except Exception:  # noqa: BLE001 - the status alone is the message then
            return ""
        finally:
            e.close()
        why = body.get("error") if isinstance(body, dict) else None
        return f" ({_brief(why)})" if isinstance(why, str) and why else ""

    @staticmethod
    def _malformed(series: Any) -> str | None:
        """Why ``series`` is not ``{"metric": {...}, "values": [[t, v], ...]}``; ``None`` when it is."""
        if not isinstance(series, dict):
            return f"{_brief(repr(series), 40)} is not an object"
        if not isinstance(series.get("metric", {}), dict):
            return "'metric' is not an object"
        values = series.get("values", [])
        if not isinstance(values, list):
            return f"'values' is {_brief(repr(values), 40)}, not a list"
        for point in values:
            if not isinstance(point, list) or len(point) != 2:
                return f"the point {_brief(repr(point), 40)} is not [time, value]"
            if _timestamp(point[0]) is None:
                return f"the timestamp {_brief(repr(point[0]), 40)} is not a finite number"
        return None

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        wanted = set(instances)
        merged: dict[str, dict[float, dict[str, float]]] = {i: {} for i in instances}
        for metric, expr in self.queries.items():
            for series in self._query_range(expr, start, end, step):
                labels = series.get("metric", {})
                inst = labels.get(self.label) if isinstance(labels, dict) else None
                if not isinstance(inst, str) or inst not in wanted:
                    continue
                for t, v in series.get("values", []):
                    try:
                        val = float(v) if not isinstance(v, bool) else math.nan
                    except (TypeError, ValueError, OverflowError):
                        val = math.nan
                    merged[inst].setdefault(float(t), {})[metric] = val  # t checked by _malformed
        return {i: [MetricPoint(time=t, values=vals) for t, vals in sorted(by_t.items())] for i, by_t in merged.items()}
