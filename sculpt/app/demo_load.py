"""The load ``sculpt demo`` puts on its fleet: the demand shape, the CPU work, and the key/value writer.

Why it exists: the demo's orchestration (``sculpt.app.demo``) needs a load that follows a real trace's ramp
(``load_shape``: a window of a request-count trace rescaled to cores, or a synthetic ramp), open-loop
``GET /work`` requests at that rate (``WorkLoad``), and writes whose last acknowledged values can be read back
after each morph (``KvWriter``); these are plain HTTP clients with no sculpt decision in them.
"""

from __future__ import annotations

import http.client
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TRACE = Path("traces") / "nab" / "elb_request_count_8c0756.csv"


# -- the load shape -------------------------------------------------------------------------------------------
def data_dir() -> Path:
    env = os.environ.get("SCULPT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def ramp_window(series: np.ndarray, n: int) -> np.ndarray:
    """The ``n``-row window of ``series`` with the clearest low -> high -> low shape, rescaled to 0..1.

    Score: mean of the 25-50 % part minus the larger of the peak of the first 25 % and the mean of the last 40 %,
    over the window's range, so a window that starts quiet, ramps up and calms down early wins (the quiet
    tail gives the model time to see that the peak is over).

    >>> w = ramp_window(np.array([1, 1, 1, 1, 5, 9, 9, 9, 5, 1, 1, 1, 1, 1.0]), 8)
    >>> float(w.min()), float(w.max())
    (0.0, 1.0)
    """
    x = np.asarray(series, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) <= n:
        w = x
    else:
        best, best_i = -np.inf, 0
        a, b, c, d = int(n * 0.25), int(n * 0.25), int(n * 0.5), int(n * 0.6)
        for i in range(0, len(x) - n + 1):
            win = x[i:i + n]
            rng = win.max() - win.min()
            if rng <= 0:
                continue
            s = (win[b:c].mean() - max(win[:a].max(), win[d:].mean())) / rng
            if s > best:
                best, best_i = s, i
        w = x[best_i:best_i + n]
    if len(w) >= 3:  # 5-minute request counts are spiky: a 3-step mean keeps the ramp, not the jitter
        w = np.convolve(np.pad(w, 1, mode="edge"), np.ones(3) / 3.0, mode="valid")
    lo, hi = float(w.min()), float(w.max())
    return (w - lo) / (hi - lo) if hi > lo else np.zeros_like(w)


def read_series(path: Path) -> np.ndarray:
    """The demand column of a trace CSV (``value`` for NAB, ``cpu_usage_mhz`` for Bitbrains, or
    ``cpu_cores``), through the load generator's reader (one value per row)."""
    import csv
    import gzip

    from sculpt.demoapp.loadgen import rate_shape_from_trace

    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        rows = sum(1 for _ in csv.reader(fh)) - 1
    return np.array(rate_shape_from_trace(path, steps=max(rows, 1), peak_rps=1.0, min_rps=0.0))


def synthetic_ramp(n: int) -> np.ndarray:
    """Quiet, a ramp up, a plateau, a ramp down, quiet (0..1)."""
    t = np.linspace(0.0, 1.0, n)
    up = np.clip((t - 0.2) / 0.1, 0.0, 1.0)
    down = np.clip((0.55 - t) / 0.05, 0.0, 1.0)
    return np.minimum(up, down)


def load_shape(trace: Path | None, steps: int, base_cores: float, peak_cores: float) -> tuple[np.ndarray, str]:
    """Cores of demand per step and where the shape came from (a trace path or 'synthetic ramp'):
    the trace's clearest ramp (``trace``, else the bundled one) rescaled to ``base_cores..peak_cores``."""
    path = trace or data_dir() / DEFAULT_TRACE
    if path.exists():
        shape, source = ramp_window(read_series(path), steps), f"trace {path}"
    elif trace is not None:
        from sculpt.domain.errors import NotFoundError

        raise NotFoundError(f"trace file {path} does not exist", "give an existing CSV or drop --trace")
    else:
        shape, source = synthetic_ramp(steps), f"built-in synthetic ramp (no trace data at {path})"
    cores = base_cores + shape * (peak_cores - base_cores)
    return cores, source


# -- the load -------------------------------------------------------------------------------------------------
class WorkLoad:
    """Open-loop ``GET /work?ms=W`` at a rate that follows ``cores`` (one step per ``step_s``)."""

    def __init__(self, address: str, cores: Sequence[float] | np.ndarray, step_s: float, work_ms: float,
                 workers: int = 24) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.cores, self.step_s, self.work_ms = list(cores), step_s, work_ms
        self.workers = workers
        self.sent = self.ok = self.failed = 0
        self._q: queue.SimpleQueue[float | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"demo-load-{i}")
                         for i in range(self.workers)]
        self._threads.append(threading.Thread(target=self._schedule, daemon=True, name="demo-load"))
        for t in self._threads:
            t.start()

    def rate(self, cores: float) -> float:
        return cores / (self.work_ms / 1000.0)

    def _schedule(self) -> None:
        from sculpt.demoapp.loadgen import schedule

        offsets = schedule(0.0, self.step_s * len(self.cores), [self.rate(c) for c in self.cores])
        t0 = time.monotonic()
        for off in offsets:
            if self._stop.wait(max(0.0, t0 + off - time.monotonic())):
                break
            self._q.put(off)
            self.sent += 1
        for _ in range(self.workers):
            self._q.put(None)

    def _work(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while self._q.get() is not None:
            if self._stop.is_set():
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10.0)
                conn.request("GET", f"/work?ms={self.work_ms:g}")
                r = conn.getresponse()
                r.read()
                good = 200 <= r.status < 300
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                good = False
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.ok += good
                self.failed += not good
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        for _ in range(self.workers):
            self._q.put(None)
        for t in self._threads:
            t.join(timeout=15.0)


class KvWriter:
    """``PUT /kv/demo-<n>`` at ``rate`` writes/s through the load balancer, cycling over ``keys`` keys; keeps
    the last acknowledged value of each, so ``verify`` can read them all back through the load balancer."""

    def __init__(self, address: str, keys: int, rate: float) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.keys, self.rate = host, int(port), keys, rate
        self.acked: dict[str, str] = {}
        self.writes = self.failed = 0
        self._lock = threading.Lock()  # held for one write, and for a whole verification
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-kv")

    def start(self) -> None:
        self._thread.start()

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10.0)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        t0 = time.monotonic()
        while not self._stop.wait(max(0.0, t0 + n / self.rate - time.monotonic())):
            key, value = f"demo-{n % self.keys}", f"v{n}"
            n += 1
            with self._lock:
                try:
                    conn = conn or self._conn()
                    conn.request("PUT", f"/kv/{key}", body=value.encode())
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        self.acked[key] = value
                    else:
                        self.failed += 1
                    if r.will_close:
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException):
                    self.failed += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                self.writes += 1
        if conn is not None:
            conn.close()

    def verify(self) -> tuple[int, int]:
        """(keys checked, keys whose read through the load balancer returns the last acknowledged value);
        writes wait meanwhile, so every acknowledged value is the one to expect."""
        with self._lock:
            want = dict(self.acked)
            ok = 0
            conn = self._conn()
            try:
                for key, value in want.items():
                    try:
                        conn.request("GET", f"/kv/{key}")
                        r = conn.getresponse()
                        body = r.read()
                        ok += r.status == 200 and body.decode("utf-8", "replace") == value
                        if r.will_close:
                            conn.close()
                            conn = self._conn()
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        conn = self._conn()
            finally:
                conn.close()
            return len(want), ok

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15.0)
