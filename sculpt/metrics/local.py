"""The local metric source: what each instance process uses (psutil) and what the app says (``/metrics``).

For each instance of the local provider it measures CPU cores in use (CPU-time delta over wall-time delta
of the process and its children), resident memory in GiB, and from the app's Prometheus endpoint the
request rate and the p95 latency over the last interval. A value it cannot measure is NaN ("not
measured"), never a guess: the learners skip NaN.

Each ``poll()`` returns one ``MetricPoint`` per live instance with the keys ``cpu_cores``, ``mem_gib``, ``rps``
and ``latency_p95_ms``; ``read()`` (the ``MetricSource`` port) answers from the polls it has kept.
"""

from __future__ import annotations

import math
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sculpt.domain.clock import Clock, SystemClock
from sculpt.metrics import promtext
from sculpt.metrics.base import MetricPoint

GIB = 1024.0**3
REQUEST_COUNTERS = ("demoapp_requests_total", "http_requests_total", "http_server_requests_total")
LATENCY_HISTOGRAMS = ("demoapp_request_duration_seconds", "http_request_duration_seconds",
                      "http_server_request_duration_seconds")


@dataclass(frozen=True)
class Target:
    """An instance to measure: its id, its process id and its ``host:port`` (for ``/metrics``)."""

    id: str
    pid: int | None
    address: str | None


@dataclass
class _Prev:
    t: float
    cpu_s: float
    requests: float
    buckets: list[tuple[float, float]]


def _process_cpu_and_rss(pid: int) -> tuple[float, float]:
    """CPU seconds (user+system, process and children) and RSS bytes; NaN when the process is gone."""
    import psutil

    try:
        p = psutil.Process(pid)
        with p.oneshot():
            cpu = p.cpu_times()
            rss = float(p.memory_info().rss)
            total = cpu.user + cpu.system + cpu.children_user + cpu.children_system
        for child in p.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
                rss += float(child.memory_info().rss)
            except psutil.Error:
                continue
        return total, rss
    except psutil.Error:
        return math.nan, math.nan


def _scrape(address: str, timeout_s: float) -> dict[str, list[promtext.Point]] | None:
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout_s) as resp:  # noqa: S310
            return promtext.parse(resp.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def _bucket_delta(now: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, max(0.0, n - old.get(le, 0.0))) for le, n in now]


class LocalSource:
    """Measures local instances on demand. ``targets`` is called at each poll (instances come and go)."""

    def __init__(self, targets: Callable[[], Sequence[Target]], *, clock: Clock | None = None,
                 timeout_s: float = 1.0, keep: int = 8640) -> None:
        self._targets = targets
        self._clock = clock or SystemClock()
        self._timeout = timeout_s
        self._prev: dict[str, _Prev] = {}
        self._history: dict[str, deque[MetricPoint]] = {}
        self._keep = keep

    def poll(self) -> dict[str, MetricPoint]:
        out: dict[str, MetricPoint] = {}
        now = self._clock.monotonic()
        wall = self._clock.now()
        seen = set()
        for tgt in self._targets():
            seen.add(tgt.id)
            cpu_s, rss = _process_cpu_and_rss(tgt.pid) if tgt.pid else (math.nan, math.nan)
            fams = _scrape(tgt.address, self._timeout) if tgt.address else None
            requests = math.nan
            buckets: list[tuple[float, float]] = []
            if fams is not None:
                for name in REQUEST_COUNTERS:
                    requests = promtext.total(fams, name)
                    if not math.isnan(requests):
                        break
                for name in LATENCY_HISTOGRAMS:
                    buckets = promtext.buckets_of(fams, name)
                    if buckets:
                        break
                if math.isnan(rss):
                    rss = promtext.total(fams, "process_resident_memory_bytes")
            prev = self._prev.get(tgt.id)
            cores = rps = p95_ms = math.nan
            if prev is not None and now > prev.t:
                dt = now - prev.t
                if not (math.isnan(cpu_s) or math.isnan(prev.cpu_s)) and cpu_s >= prev.cpu_s:
                    cores = (cpu_s - prev.cpu_s) / dt
                if not (math.isnan(requests) or math.isnan(prev.requests)) and requests >= prev.requests:
                    rps = (requests - prev.requests) / dt
                if buckets and prev.buckets:
                    p95 = promtext.histogram_quantile(0.95, _bucket_delta(buckets, prev.buckets))
                    p95_ms = p95 * 1000.0 if not math.isnan(p95) else math.nan
            self._prev[tgt.id] = _Prev(now, cpu_s, requests, buckets)
            sample = MetricPoint(time=wall, values={"cpu_cores": cores, "mem_gib": rss / GIB if rss == rss else math.nan,
                                               "rps": rps, "latency_p95_ms": p95_ms})
            out[tgt.id] = sample
            self._history.setdefault(tgt.id, deque(maxlen=self._keep)).append(sample)
        for gone in set(self._prev) - seen:
            del self._prev[gone]
        return out

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        """Kept samples in [start, end]; ``step`` is ignored (samples are as polled)."""
        return {i: [s for s in self._history.get(i, ()) if start <= s.time <= end] for i in instances}
