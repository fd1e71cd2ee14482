"""``sculpt demo``: one command that shows sculpt morphing a real local fleet ahead of a load ramp.

Why it exists: it is the README's first command. It must work on a fresh machine, tell a readable story,
clean up after itself, and fail loudly (exit 1) when no morph happened.

What it does:

1. a fresh state directory (a temporary ``SCULPT_HOME`` unless ``--home`` is given) and a one-replica fleet
   of the bundled demo app on ``std-0.5c-512m`` in ``local-a``, brought up through the local engine;
2. a load shape: a window of a real request-count trace (``traces/nab/elb_request_count_8c0756.csv`` under
   ``../shared/data`` or ``$SCULPT_DATA``; the window with the clearest low -> high -> low ramp), rescaled to
   ``base..peak`` cores of CPU work — or, when the data is absent, a built-in synthetic ramp, said plainly;
3. the load is open-loop ``GET /work?ms=20`` requests through the fleet's load balancer, so demand in cores
   is ``rate x 20 ms`` (plus the app's own overhead), measured by the local metric source (psutil);
4. the sculptor in ``auto`` mode on a **time-compressed clock**: one real second is five model minutes
   (``factor`` 300), one tick per real second, and one trace row (5 minutes) plays per tick. The forecast
   horizon (and the cooldown) is 15 model minutes — 3 real seconds — instead of an hour, so the model
   closes a period every 3 ticks and has history within seconds. Because a 90-second demo cannot collect
   the day of history the confidence floor normally asks for, the demo lowers the floor from 0.2 to 0.05
   (documented in docs/sculptor.md); everything else is the live loop unchanged;
5. ``down``, and a check that no process of the stack is left.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.app.sculptor import Action, ScaledClock, TickReport, cost_model_for, open_service
from sculpt.decide.cost import DEFAULT_COST

DEFAULT_TRACE = Path("traces") / "nab" / "elb_request_count_8c0756.csv"
SPEC = """\
fleet: demo
engine: local
provider: local
profile: general
shape: {shape}
region: local-a
families: [local-std]
replicas: {{min: 1, max: 1, desired: 1}}
slo: {{p95_latency_ms: 250, max_utilisation: 0.8}}
aggressiveness: 0.5
tick_s: {tick_s}
app:
  state_sync: {{strategy: http}}
"""


@dataclass(frozen=True)
class DemoConfig:
    duration_s: float = 90.0
    trace: Path | None = None
    home: Path | None = None
    model: str = "river"
    tick_s: float = 1.0
    factor: float = 300.0  # model seconds per real second: 1 s = 5 min
    shape: str = "std-0.5c-512m"
    base_cores: float = 0.08
    peak_cores: float = 0.9
    work_ms: float = 20.0
    confidence_floor: float = 0.05
    horizon_h: float = 0.25  # 15 model minutes = 3 real seconds: a period closes every 3 ticks


@dataclass
class DemoResult:
    source: str
    morphs: list[Action] = field(default_factory=list)
    first_morph_s: float | None = None  # from the start of the load
    first_morph_total_s: float | None = None  # from the start of the command
    ticks: int = 0
    requests: int = 0
    failed: int = 0
    leftovers: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "morphs": [a.to_json() for a in self.morphs],
                "first_morph_s": None if self.first_morph_s is None else round(self.first_morph_s, 2),
                "first_morph_total_s": None if self.first_morph_total_s is None else round(self.first_morph_total_s, 2),
                "ticks": self.ticks, "requests": self.requests, "failed": self.failed,
                "leftover_pids": self.leftovers, "elapsed_s": round(self.elapsed_s, 2)}


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


def load_shape(cfg: DemoConfig, steps: int) -> tuple[np.ndarray, str]:
    """Cores of demand per step and where the shape came from (a trace path or 'synthetic ramp')."""
    path = cfg.trace or data_dir() / DEFAULT_TRACE
    if path.exists():
        shape, source = ramp_window(read_series(path), steps), f"trace {path}"
    elif cfg.trace is not None:
        from sculpt.domain.errors import NotFoundError

        raise NotFoundError(f"trace file {path} does not exist", "give an existing CSV or drop --trace")
    else:
        shape, source = synthetic_ramp(steps), f"built-in synthetic ramp (no trace data at {path})"
    cores = cfg.base_cores + shape * (cfg.peak_cores - cfg.base_cores)
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


# -- the demo -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _home(cfg: DemoConfig) -> Iterator[Path]:
    old = os.environ.get("SCULPT_HOME")
    tmp = None
    if cfg.home is None:
        tmp = Path(tempfile.mkdtemp(prefix="sculpt-demo-"))
        home = tmp
    else:
        home = cfg.home
        home.mkdir(parents=True, exist_ok=True)
    os.environ["SCULPT_HOME"] = str(home / "state")
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("SCULPT_HOME", None)
        else:
            os.environ["SCULPT_HOME"] = old
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pids: Sequence[int]) -> list[int]:
    import psutil

    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo; returns what happened (``morphs`` empty means the demo failed)."""
    from sculpt.app.view import story_line
    from sculpt.app.wiring import wire
    from sculpt.domain.fleet import Fleet
    from sculpt.migrate import Timeouts

    started = time.monotonic()
    steps = max(10, int(round(cfg.duration_s / cfg.tick_s)))
    cores, source = load_shape(cfg, steps)
    result = DemoResult(source=source)
    with _home(cfg) as home:
        spec_path = home / "sculpt.yaml"
        spec_path.write_text(SPEC.format(shape=cfg.shape, tick_s=cfg.tick_s))
        say(f"[demo] state in {os.environ['SCULPT_HOME']}; load shape: {source}")
        say(f"[demo] time is compressed: 1 real second = {cfg.factor / 60:g} model minutes; one tick per "
            f"{cfg.tick_s:g}s; horizon and cooldown {cfg.horizon_h * 60:g} model minutes; model '{cfg.model}'; "
            f"confidence floor {cfg.confidence_floor} (demo only)")
        w = wire(spec_path, apply_timeout_s=60.0)
        pids: list[int] = []
        load: WorkLoad | None = None
        try:
            assert w.spec is not None
            say(f"[demo] bringing up fleet 'demo': 1 x {cfg.shape} (the demo app) in local-a ...")
            w.engine.up(Fleet.from_spec(w.spec), "sculpt demo")
            status = w.engine.provider.status() or {}
            pids = [i["pid"] for i in status.get("instances", []) if i.get("pid")]
            if status.get("agent_pid"):
                pids.append(int(status["agent_pid"]))
            lb = (status.get("lb") or {}).get("address")
            say(f"[demo] serving on http://{lb}; enforcement: {status.get('enforcement', '?')}")
            w.close()
            cost = replace(cost_model_for(w.spec, DEFAULT_COST), confidence_floor=cfg.confidence_floor,
                           horizon_h=cfg.horizon_h, cooldown_s=cfg.horizon_h * 3600.0)
            opened = open_service(spec_path, mode="auto", model=cfg.model, clock=ScaledClock(cfg.factor),
                                  cost=cost, timeouts=Timeouts(healthy_s=30.0, step_s=30.0, drain_s=2.0))
            try:
                svc = opened.service
                peak = float(np.max(cores))
                say(f"[demo] load: {len(cores)} steps of {cfg.tick_s:g}s, {cores[0]:.2f} -> {peak:.2f} cores of "
                    f"CPU work (GET /work?ms={cfg.work_ms:g} at up to {peak / (cfg.work_ms / 1000):.0f} req/s)")
                load = WorkLoad(str(lb), cores, cfg.tick_s, cfg.work_ms)
                svc.prime()
                load.start()
                t_load = time.monotonic()
                last_decision = [""]

                def on_tick(r: TickReport) -> None:
                    k = r.n
                    if r.action is not None:
                        a = r.action
                        if a.result == "done":
                            result.morphs.append(a)
                            if result.first_morph_s is None:
                                result.first_morph_s = time.monotonic() - t_load
                                result.first_morph_total_s = time.monotonic() - started
                        direction = "UP" if _vcpu(svc, a.to_shape) > _vcpu(svc, a.from_shape) else "DOWN"
                        seen = ""
                        if r.instances:
                            i = r.instances[0]
                            seen = (f" [demand {i.cpu_cores:.2f} cores = {i.utilisation:.0%} of {a.from_shape}, "
                                    f"forecast {i.forecast_p50:.2f}..{i.forecast_p95:.2f}, confidence "
                                    f"{i.confidence:.0%}]")
                        say(f"[demo] t={time.monotonic() - t_load:5.1f}s MORPH {direction} {a.from_shape} -> "
                            f"{a.to_shape}: {a.result} in {a.seconds:.2f}s — {r.plan.reason}{seen}")
                    elif k % 5 == 0 or r.plan.decision.value != last_decision[0]:
                        say(f"[demo] t={time.monotonic() - t_load:5.1f}s load {_at(cores, time.monotonic() - t_load, cfg.tick_s):.2f} "
                            f"cores | {story_line(r)}")
                    last_decision[0] = r.plan.decision.value

                result.ticks = svc.run(ticks=len(cores), on_tick=on_tick, tick_s=cfg.tick_s)
            finally:
                if load is not None:
                    load.stop()
                    result.requests, result.failed = load.ok + load.failed, load.failed
                opened.close()
        finally:
            say("[demo] taking the fleet down ...")
            w2 = wire(spec_path)
            try:
                st = w2.engine.provider.status() or {}
                pids += [i["pid"] for i in st.get("instances", []) if i.get("pid")]
                w2.engine.destroy()
            finally:
                w2.close()
            deadline = time.monotonic() + 10.0
            while _alive(pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            result.leftovers = _alive(pids)
    result.elapsed_s = time.monotonic() - started
    ups = sum(1 for a in result.morphs if _cores(a.to_shape) > _cores(a.from_shape))
    say(f"[demo] done in {result.elapsed_s:.0f}s: {len(result.morphs)} morph(s) ({ups} up, "
        f"{len(result.morphs) - ups} down), first after {result.first_morph_s or float('nan'):.1f}s of load "
        f"({result.first_morph_total_s or float('nan'):.1f}s after start); "
        f"{result.requests} requests, {result.failed} failed; "
        + ("no process left" if not result.leftovers else f"LEFT RUNNING: {result.leftovers}"))
    return result


def _at(cores: Sequence[float] | np.ndarray, t: float, step_s: float) -> float:
    i = min(len(cores) - 1, max(0, int(t / step_s)))
    return float(cores[i])


def _vcpu(svc: Any, shape: str) -> float:
    try:
        return float(svc.catalog.shape(shape).vcpu)
    except Exception:  # noqa: BLE001
        return math.nan


def _cores(shape: str) -> float:
    """The vCPU count in a local shape name (``std-0.5c-512m`` -> 0.5)."""
    try:
        return float(shape.split("-")[1].rstrip("c"))
    except (IndexError, ValueError):
        return math.nan
