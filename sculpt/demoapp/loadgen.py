"""The load generator: an open-loop mix of reads and writes against the demo app, with write verification.

Why it exists: a morph is only proven safe under load. This drives a steady (or trace-shaped) request
rate through the LB while a migration runs, remembers every *acknowledged* write, and afterwards reads each
acknowledged key back (:func:`verify`) to count lost writes. Open loop means requests are issued on a
schedule whether or not earlier ones have answered, so a pause or a slow shape shows up as latency and
backlog instead of silently lowering the offered load; latency is measured from each request's *scheduled*
send time (no coordinated omission).

Keys are partitioned among the worker threads (a key always goes to the same worker), so writes to one key
are sequential and "the last acknowledged value" of a key is well defined; a read of a key whose last write
was acknowledged must return that value (else it counts as ``stale_reads``). Each worker keeps one
persistent keep-alive connection (``http.client``) and reconnects after an error.

Failures (``failed``): any non-2xx answer except a 404 read of a key with no acknowledged write yet, and
any connection error or timeout.

CLI: ``python -m sculpt.demoapp.loadgen URL --rate 200 --duration 10 [--write-ratio 0.5] [--keys 1000]
[--trace PATH --steps 60 --peak-rps 400] [--verify] [--json]``; the JSON is :meth:`LoadResult.to_dict`
(plus ``"lost_writes"`` with ``--verify``).
"""

from __future__ import annotations

import gzip
import http.client
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["LoadGen", "LoadResult", "RequestRecord", "rate_shape_from_trace", "verify", "main"]

_TRACE_COLUMNS = ("cpu_usage_mhz", "value", "cpu_cores")


@dataclass
class LoadResult:
    """What a run did. Latencies in milliseconds, from the scheduled send time to the full answer."""

    requests: int = 0
    failed: int = 0
    acked_writes: dict[str, str] = field(default_factory=dict)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    duration_s: float = 0.0
    achieved_rps: float = 0.0
    reads: int = 0
    writes: int = 0
    not_found: int = 0
    stale_reads: int = 0
    offered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stable ``--json`` shape (``acked_writes`` as a count)."""
        return {"requests": self.requests, "failed": self.failed, "acked_writes": len(self.acked_writes),
                "p50_ms": self.p50_ms, "p95_ms": self.p95_ms, "p99_ms": self.p99_ms,
                "duration_s": self.duration_s, "achieved_rps": self.achieved_rps, "offered": self.offered,
                "reads": self.reads, "writes": self.writes, "not_found": self.not_found,
                "stale_reads": self.stale_reads, "errors": dict(self.errors), "codes": dict(self.codes)}


@dataclass(frozen=True)
class RequestRecord:
    """One answered (or failed) request, for callers that want the whole timeline (``LoadGen(on_request=)``).

    ``index`` is the request's number in the schedule (a write's value is ``v<seed>-<index>-<key no>``, so it
    also orders the writes to one key); ``due`` and ``done`` are ``time.perf_counter()`` readings: the
    scheduled send time and the time the answer (or the error) arrived. ``status`` is 0 on a connection
    error or timeout, and ``error`` then names the exception type; ``body`` is the answer's body.
    """

    index: int
    due: float
    done: float
    method: str
    key: str
    value: str | None
    status: int
    error: str | None
    body: bytes = b""

    @property
    def ok(self) -> bool:
        """2xx, or a 404 read (a key nobody wrote yet is an answer, not a failure)."""
        return self.error is None and (200 <= self.status < 300 or (self.method == "GET" and self.status == 404))


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return round(sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))], 3)


def schedule(rate_rps: float, duration_s: float, rate_shape: Sequence[float] | None) -> list[float]:
    """Send offsets (seconds from start), evenly spaced at the rate in force at each moment.

    >>> schedule(4, 1.0, None)
    [0.0, 0.25, 0.5, 0.75]
    >>> schedule(0, 2.0, [2, 4])
    [0.0, 0.5, 1.0, 1.25, 1.5, 1.75]
    >>> len(schedule(0, 4.0, [0.5, 0.5, 0.5, 0.5]))  # fractions carry over between steps
    2
    """
    return list(iter_schedule(rate_rps, duration_s, rate_shape))


def iter_schedule(rate_rps: float, duration_s: float, rate_shape: Sequence[float] | None) -> Iterator[float]:
    """:func:`schedule`, lazily (a long run does not hold every send time in memory)."""
    steps = list(rate_shape) if rate_shape else [rate_rps]
    step_s = duration_s / len(steps)
    carry = 0.0   # requests owed by earlier steps' fractions, so low rates are not rounded away
    for j, r in enumerate(steps):
        if r <= 0:
            continue
        want = r * step_s + carry
        n = int(want + 1e-9)
        carry = want - n
        t0 = j * step_s
        for i in range(n):
            yield t0 + i / r


def rate_shape_from_trace(path: str | Path, steps: int, peak_rps: float, *, column: str | None = None,
                          offset: int = 0, rows: int | None = None, min_rps: float = 1.0) -> list[float]:
    """Read a trace CSV (gz or plain) and scale it to ``steps`` request rates peaking at ``peak_rps``.

    The column is ``column`` or the first present of ``cpu_usage_mhz`` (Bitbrains), ``value`` (NAB) and
    ``cpu_cores`` (generic ``timestamp,cpu_cores``). ``offset``/``rows`` pick a window of the trace; the
    window is averaged into ``steps`` equal buckets, so a 5-minute trace plays back time-compressed.
    """
    import csv

    import numpy as np

    p = Path(path)
    if not p.exists():
        from sculpt.domain.errors import NotFoundError

        raise NotFoundError(f"trace file {p} does not exist", "give the path of a trace CSV (.csv or .csv.gz)")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        col = column or next((c for c in _TRACE_COLUMNS if c in fields), None)
        if col is None or col not in fields:
            from sculpt.domain.errors import ConfigError

            raise ConfigError(f"trace {p.name} has none of the columns {column or ', '.join(_TRACE_COLUMNS)}",
                              "pass column= with one of: " + ", ".join(fields))
        vals = []
        for row in reader:
            try:
                vals.append(float(row[col]))
            except (TypeError, ValueError):
                continue
    arr = np.asarray(vals[offset: None if rows is None else offset + rows], dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0 or steps <= 0:
        from sculpt.domain.errors import ConfigError

        raise ConfigError(f"trace {p.name} has no numeric values in the chosen window",
                          "check offset/rows and the column")
    buckets = [b.mean() for b in np.array_split(arr, min(steps, arr.size))]
    if len(buckets) < steps:  # fewer rows than steps: stretch
        buckets = [buckets[int(i * len(buckets) / steps)] for i in range(steps)]
    peak = max(buckets)
    scale = peak_rps / peak if peak > 0 else 0.0
    return [round(max(min_rps, b * scale), 3) for b in buckets]


class _Conn:
    """One keep-alive connection; reconnects lazily after an error."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.c: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.c is None:
            self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self.c.request(method, path, body=body)
            r = self.c.getresponse()
            data = r.read()
            if r.will_close:
                self.close()
            return r.status, data
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.c is not None:
            self.c.close()
            self.c = None


def _split(url: str) -> tuple[str, int]:
    u = urlsplit(url if "://" in url else f"http://{url}")
    return u.hostname or "127.0.0.1", u.port or 80


class LoadGen:
    """Open-loop load: ``run()`` blocks and returns a :class:`LoadResult`; ``start()``/``stop()`` run it in
    the background (:meth:`wait` lets it finish its schedule). ``rate_shape`` (rps per step, steps spread evenly over ``duration_s``) overrides
    ``rate_rps``. ``concurrency`` worker threads each own a keep-alive connection and a share of the keys.
    ``on_request``, if given, is called (from the worker threads, so it must be thread-safe) with a
    :class:`RequestRecord` for every request once it is answered or failed.
    """

    def __init__(self, url: str, rate_rps: float, write_ratio: float = 0.5, keys: int = 1000,
                 duration_s: float = 10.0, seed: int = 0, rate_shape: Sequence[float] | None = None,
                 timeout_s: float = 5.0, concurrency: int = 16,
                 on_request: Callable[[RequestRecord], None] | None = None) -> None:
        self.host, self.port = _split(url)
        self.rate_rps, self.write_ratio, self.keys = rate_rps, write_ratio, keys
        self.duration_s, self.seed, self.timeout_s = duration_s, seed, timeout_s
        self.rate_shape = list(rate_shape) if rate_shape else None
        self.concurrency = max(1, concurrency)
        self.on_request = on_request
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._result: LoadResult | None = None
        self._lock = threading.Lock()
        self._sent = 0

    @property
    def sent(self) -> int:
        """Requests dispatched so far (for progress lines)."""
        return self._sent

    def start(self) -> None:
        """Run in a background thread until the schedule ends or :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._bg, daemon=True, name="loadgen")
        self._thread.start()

    def _bg(self) -> None:
        self._result = self.run()

    def wait(self, timeout_s: float | None = None) -> LoadResult | None:
        """Wait for a background run to finish its schedule; its result, or None if still running."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return None
            self._thread = None
        return self._result

    def stop(self) -> LoadResult:
        """Stop issuing requests, wait for those in flight, and return the result."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self._result if self._result is not None else LoadResult()

    def run(self) -> LoadResult:
        rng = random.Random(self.seed)
        offsets = iter_schedule(self.rate_rps, self.duration_s, self.rate_shape)
        queues: list[queue.SimpleQueue[tuple[int, float, str, str, str | None] | None]] = [
            queue.SimpleQueue() for _ in range(self.concurrency)]
        res = LoadResult()
        lat: list[float] = []
        acked: dict[str, str] = {}
        workers = [threading.Thread(target=self._worker, args=(q, res, lat, acked), daemon=True,
                                    name=f"loadgen-{i}") for i, q in enumerate(queues)]
        for w in workers:
            w.start()
        t0 = time.perf_counter()
        for i, off in enumerate(offsets):
            if self._stop.is_set():
                break
            n = rng.randrange(self.keys)
            key = f"k{n}"
            value = f"v{self.seed}-{i}-{n}" if rng.random() < self.write_ratio else None
            delay = t0 + off - time.perf_counter()
            if delay > 0:
                if self._stop.wait(delay):
                    break
            queues[n % self.concurrency].put((i, t0 + off, "PUT" if value else "GET", key, value))
            self._sent = i + 1
        for q in queues:
            q.put(None)
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        lat.sort()
        res.offered = self._sent
        res.acked_writes = acked
        res.p50_ms, res.p95_ms, res.p99_ms = (_percentile(lat, q) for q in (0.5, 0.95, 0.99))
        res.duration_s = round(elapsed, 3)
        res.achieved_rps = round(res.requests / elapsed, 1) if elapsed > 0 else 0.0
        return res

    def _worker(self, q: queue.SimpleQueue[tuple[int, float, str, str, str | None] | None], res: LoadResult,
                lat: list[float], acked: dict[str, str]) -> None:
        conn = _Conn(self.host, self.port, self.timeout_s)
        try:
            while (job := q.get()) is not None:
                index, due, method, key, value = job
                path = "/kv/" + quote(key, safe="")
                had = acked.get(key)  # only this worker writes this key: no race
                err, status, data = None, 0, b""
                try:
                    status, data = conn.request(method, path, value.encode() if value is not None else None)
                except (OSError, http.client.HTTPException) as e:
                    err = type(e).__name__
                done = time.perf_counter()
                ms = (done - due) * 1000.0
                if self.on_request is not None:
                    self.on_request(RequestRecord(index, due, done, method, key, value, status, err, data))
                with self._lock:
                    res.requests += 1
                    lat.append(ms)
                    if method == "PUT":
                        res.writes += 1
                    else:
                        res.reads += 1
                    if err is not None:
                        res.failed += 1
                        res.errors[err] = res.errors.get(err, 0) + 1
                        continue
                    res.codes[str(status)] = res.codes.get(str(status), 0) + 1
                    if method == "PUT":
                        if 200 <= status < 300:
                            assert value is not None
                            acked[key] = value
                        else:
                            res.failed += 1
                    elif status == 404:
                        res.not_found += 1
                        if had is not None:
                            res.failed += 1
                    elif not 200 <= status < 300:
                        res.failed += 1
                    elif had is not None and data.decode("utf-8", "replace") != had:
                        res.stale_reads += 1
        finally:
            conn.close()


def verify(url: str, result: LoadResult, timeout_s: float = 5.0) -> int:
    """Read every acknowledged key (through ``url``, usually the LB) and count the ones whose value is not
    the last acknowledged one: the lost writes. A read that fails after one retry counts as lost."""
    host, port = _split(url)
    conn = _Conn(host, port, timeout_s)
    lost = 0
    try:
        for key, value in result.acked_writes.items():
            path = "/kv/" + quote(key, safe="")
            for attempt in (0, 1):
                try:
                    status, data = conn.request("GET", path)
                    break
                except (OSError, http.client.HTTPException):
                    if attempt:
                        status, data = 0, b""
            if status != 200 or data.decode("utf-8", "replace") != value:
                lost += 1
    finally:
        conn.close()
    return lost


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m sculpt.demoapp.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="http://host:port of the LB (or one app)")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (open loop)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--write-ratio", type=float, default=0.5)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=16, help="worker threads (one connection each)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    p.add_argument("--trace", default=None, help="trace CSV whose shape sets the rate (needs --peak-rps)")
    p.add_argument("--steps", type=int, default=60, help="rate steps taken from the trace")
    p.add_argument("--peak-rps", type=float, default=None, help="the trace's peak maps to this rate")
    p.add_argument("--verify", action="store_true", help="read back every acknowledged write afterwards")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    shape = None
    if a.trace:
        from sculpt.domain.errors import SculptError

        try:
            shape = rate_shape_from_trace(a.trace, a.steps, a.peak_rps or a.rate)
        except SculptError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    gen = LoadGen(a.url, a.rate, a.write_ratio, a.keys, a.duration, a.seed, shape, a.timeout, a.concurrency)
    gen.start()
    t0 = time.monotonic()
    tty = sys.stderr.isatty()
    while gen._thread is not None and gen._thread.is_alive():
        gen._thread.join(timeout=1.0)
        if tty:
            print(f"\rloadgen: {gen.sent} sent, {time.monotonic() - t0:.0f}/{a.duration:.0f} s", end="",
                  file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)
    res = gen.stop()
    out = res.to_dict()
    if a.verify:
        out["lost_writes"] = verify(a.url, res, a.timeout)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{res.requests} requests ({res.achieved_rps} req/s), {res.failed} failed, "
              f"p50 {res.p50_ms} ms, p95 {res.p95_ms} ms, p99 {res.p99_ms} ms, "
              f"{len(res.acked_writes)} keys acknowledged" +
              (f", {out['lost_writes']} lost" if a.verify else ""))
    return 0 if res.failed == 0 and not out.get("lost_writes") else 1


if __name__ == "__main__":
    raise SystemExit(main())
