"""``sculpt demo``: one command that shows sculpt morphing a real local fleet ahead of a load ramp.

Why it exists: it is the README's first command. It must work on a fresh machine, tell the product's story
(an in-place resize, a blue/green handover with its pause and the state verified, a move to a cheaper
region once the forecast is confident, each with the decision's reason), clean up after itself, and fail
loudly (exit 1) when no morph happened.

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
5. the spec allows ``local-b``, whose local catalog prices are 20 % below ``local-a``'s: the real decision
   (nothing demo-specific in it) moves the fleet there once the forecast is confident and the saving net of
   the move (overlap, risk ``(1 - confidence)``) clears the aggressiveness threshold — a confidence of
   ~10-20 % in runs here (the ranking across regions may pick a smaller shape there, which saves more);
   A region move is always blue/green (an instance cannot be resized into another region); a shape change
   in the same region is in place when the cgroups are writable;
6. besides the CPU load, a writer keeps ``PUT /kv/demo-<n>`` going through the load balancer; after every
   morph the demo reads every acknowledged key back through the load balancer and says how many hold their
   last written value ("keys verified") — the state handed over under load, checked from outside;
7. ``down``, and a check that no process of the stack is left.
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

from sculpt.app.sculptor import (
    Action,
    OrchestratorActuator,
    ScaledClock,
    TickReport,
    cost_model_for,
    open_service,
)
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
regions: [local-b]
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
    keys: int = 100  # distinct keys the writer cycles through
    writes_per_s: float = 20.0


@dataclass
class Move:
    """One morph as the demo tells it: how it was made and what the state looked like after it."""

    kind: str  # "in-place" | "blue-green"
    from_shape: str
    to_shape: str
    from_region: str
    to_region: str
    result: str
    seconds: float
    pause_ms: float = 0.0  # how long the load balancer held requests (blue/green only)
    steps: list[str] = field(default_factory=list)
    keys_checked: int = 0
    keys_verified: int = 0
    reason: str = ""

    @property
    def region_move(self) -> bool:
        return self.from_region != self.to_region

    def how(self) -> str:
        """``in place`` / ``blue/green, pause 41 ms`` plus the keys check, for the story line."""
        how = "in place (same process, cgroup limits changed live)" if self.kind == "in-place" else \
            f"blue/green, pause {self.pause_ms:.0f} ms"
        if self.keys_checked:
            how += f", {self.keys_verified}/{self.keys_checked} keys verified"
        return how

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.from_shape, "to": self.to_shape, "from_region": self.from_region,
                "to_region": self.to_region, "region_move": self.region_move, "result": self.result,
                "seconds": round(self.seconds, 3), "pause_ms": round(self.pause_ms, 1), "steps": self.steps,
                "keys_checked": self.keys_checked, "keys_verified": self.keys_verified, "reason": self.reason}


@dataclass
class DemoResult:
    source: str
    morphs: list[Action] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)  # every morph attempted, told: kind, pause, keys
    first_morph_s: float | None = None  # from the start of the load
    first_morph_total_s: float | None = None  # from the start of the command
    ticks: int = 0
    requests: int = 0
    failed: int = 0
    writes: int = 0
    writes_failed: int = 0
    leftovers: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "morphs": [a.to_json() for a in self.morphs],
                "moves": [m.to_json() for m in self.moves], "shown": self.shown(),
                "first_morph_s": None if self.first_morph_s is None else round(self.first_morph_s, 2),
                "first_morph_total_s": None if self.first_morph_total_s is None else round(self.first_morph_total_s, 2),
                "ticks": self.ticks, "requests": self.requests, "failed": self.failed,
                "writes": self.writes, "writes_failed": self.writes_failed,
                "leftover_pids": self.leftovers, "elapsed_s": round(self.elapsed_s, 2)}

    def shown(self) -> dict[str, bool]:
        """Which parts of the story happened (done morphs only)."""
        done = [m for m in self.moves if m.result == "done"]
        return {"in_place": any(m.kind == "in-place" for m in done),
                "blue_green": any(m.kind == "blue-green" and m.keys_checked and m.keys_verified == m.keys_checked
                                  for m in done),
                "region_move": any(m.region_move for m in done)}


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


class Recording:
    """The auto-mode actuator the live loop uses, keeping each morph's orchestrator report (its strategy,
    the load balancer's pause, its steps) so the demo can say how a move was made. Same calls as
    ``OrchestratorActuator.morph``; the decision is untouched."""

    def __init__(self, inner: OrchestratorActuator) -> None:
        self.inner = inner
        self.reports: list[Any] = []

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> Action:
        from sculpt.domain.clock import SystemClock
        from sculpt.domain.errors import SculptError
        from sculpt.migrate import MorphRequest, Orchestrator

        i = self.inner
        t0 = time.monotonic()
        orch = Orchestrator(i.platform, i.ledger, SystemClock(), timeouts=i.timeouts, progress=i.progress)
        try:
            rep = orch.morph(MorphRequest(shape=shape, region=region, origin="watch",
                                          message=f"demo: morph to {shape} in {region}"))
        except SculptError as e:
            self.reports.append(orch.report)
            return Action(now, shape, from_shape, region, "failed", str(e), orch.mid, time.monotonic() - t0)
        self.reports.append(rep)
        return Action(now, shape, from_shape, region, rep.result, rep.reason or rep.strategy, rep.migration_id,
                      time.monotonic() - t0)


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
        kv: KvWriter | None = None
        try:
            assert w.spec is not None
            say(f"[demo] bringing up fleet 'demo': 1 x {cfg.shape} (the demo app) in local-a; the spec allows "
                f"local-b, {_discount(w.catalog, cfg.shape):.0%} cheaper ...")
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
            # in-flight /work requests must finish inside the blue/green pause: the spec's lb.drain_s (5 s; 2 s
            # rolled region moves back on a busy machine, where a saturated blue answers slowly)
            opened = open_service(spec_path, mode="auto", model=cfg.model, clock=ScaledClock(cfg.factor),
                                  cost=cost, timeouts=Timeouts(healthy_s=30.0, step_s=30.0,
                                                               drain_s=max(w.spec.lb.drain_s, 1.0)))
            try:
                svc = opened.service
                assert isinstance(svc.port.actuator, OrchestratorActuator)  # auto mode
                recorder = Recording(svc.port.actuator)
                svc.port.actuator = recorder
                peak = float(np.max(cores))
                say(f"[demo] load: {len(cores)} steps of {cfg.tick_s:g}s, {cores[0]:.2f} -> {peak:.2f} cores of "
                    f"CPU work (GET /work?ms={cfg.work_ms:g} at up to {peak / (cfg.work_ms / 1000):.0f} req/s), and "
                    f"{cfg.writes_per_s:g} writes/s over {cfg.keys} keys (PUT /kv/demo-<n>), read back after "
                    "every morph")
                load = WorkLoad(str(lb), cores, cfg.tick_s, cfg.work_ms)
                kv = KvWriter(str(lb), cfg.keys, cfg.writes_per_s)
                load.start()
                kv.start()
                t_load = time.monotonic()
                # the first tick's CPU rate is measured from this reading: one tick later, not milliseconds
                # later (a few ms of a 20 ms request read as half a core and forced an "urgent" first upsize)
                svc.prime()
                time.sleep(cfg.tick_s)
                last_decision = [""]
                region = [svc.spec.region]

                def on_tick(r: TickReport) -> None:
                    k = r.n
                    t = time.monotonic() - t_load
                    if r.action is not None:
                        a = r.action
                        rep = recorder.reports[-1] if recorder.reports else None
                        move = _told(a, rep, region[0])
                        if a.result == "done":
                            assert kv is not None
                            move.keys_checked, move.keys_verified = kv.verify()
                            result.morphs.append(a)
                            if result.first_morph_s is None:
                                result.first_morph_s = t
                                result.first_morph_total_s = time.monotonic() - started
                            region[0] = a.region
                        move.reason = r.plan.reason
                        result.moves.append(move)
                        seen = ""
                        if r.instances:
                            i = r.instances[0]
                            seen = (f" [demand {i.cpu_cores:.2f} cores = {i.utilisation:.0%} of {a.from_shape}, "
                                    f"forecast {i.forecast_p50:.2f}..{i.forecast_p95:.2f}, confidence "
                                    f"{i.confidence:.0%}]")
                        if move.region_move:
                            what = f"MOVE REGION {move.from_region} -> {move.to_region} ({a.from_shape} -> {a.to_shape})"
                        else:
                            direction = "UP" if _vcpu(svc, a.to_shape) > _vcpu(svc, a.from_shape) else "DOWN"
                            what = f"MORPH {direction} {a.from_shape} -> {a.to_shape} in {move.from_region}"
                        say(f"[demo] t={t:5.1f}s {what}: {a.result} in {a.seconds:.2f}s, {move.how()}")
                        say(f"[demo]          why: {r.plan.reason}{seen}")
                        if move.steps and move.kind == "blue-green":
                            say(f"[demo]          steps: {' -> '.join(move.steps)}")
                        if a.result != "done":
                            say(f"[demo]          not done: {a.detail}")
                    elif k % 5 == 0 or r.plan.decision.value != last_decision[0]:
                        say(f"[demo] t={t:5.1f}s load {_at(cores, t, cfg.tick_s):.2f} cores | {story_line(r)}")
                    last_decision[0] = r.plan.decision.value

                result.ticks = svc.run(ticks=len(cores), on_tick=on_tick, tick_s=cfg.tick_s)
            finally:
                if load is not None:
                    load.stop()
                    result.requests, result.failed = load.ok + load.failed, load.failed
                if kv is not None:
                    kv.stop()
                    result.writes, result.writes_failed = kv.writes, kv.failed
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
    for line in summary(result):
        say(line)
    return result


def summary(result: DemoResult) -> list[str]:
    """The closing lines: the morphs by kind (each blue/green one told), what was shown and what was not,
    requests and writes, and what is left running."""
    done = [m for m in result.moves if m.result == "done"]
    in_place = [m for m in done if m.kind == "in-place"]
    bg = [m for m in done if m.kind != "in-place"]
    told = f"{len(in_place)} in place, {len(bg)} blue/green" + "".join(
        f"; {m.from_shape}@{m.from_region} -> {m.to_shape}@{m.to_region}"
        f"{' (region move)' if m.region_move else ''}: {m.how()}" for m in bg)
    shown = result.shown()
    parts = (("an in-place resize", shown["in_place"]),
             ("a blue/green handover with every key verified", shown["blue_green"]),
             ("a region move", shown["region_move"]))
    lines = [f"[demo] done in {result.elapsed_s:.0f}s: {len(done)} morph(s): {told}",
             "[demo] shown: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in parts)]
    if result.first_morph_s is not None:
        lines.append(f"[demo] first morph after {result.first_morph_s:.1f}s of load "
                     f"({result.first_morph_total_s or float('nan'):.1f}s after start)")
    lines.append(f"[demo] {result.requests} requests, {result.failed} failed; {result.writes} writes, "
                 f"{result.writes_failed} failed; "
                 + ("no process left" if not result.leftovers else f"LEFT RUNNING: {result.leftovers}"))
    missing = [name for name, ok in parts if not ok]
    if missing:
        lines.append(f"[demo] not shown this run: {', '.join(missing)} (the decision did not call for it in "
                     "time; a longer --duration gives the model more history)")
    return lines


def _told(a: Action, rep: Any, from_region: str) -> Move:
    """A morph as the demo tells it, from the loop's action and the orchestrator's report."""
    kind = getattr(rep, "strategy", None) or ("blue-green" if a.region != from_region else "in-place")
    steps = [f"{s.state.value} {((s.ended or s.started) - s.started) * 1000:.0f} ms"
             for s in getattr(rep, "steps", None) or []]
    return Move(kind=kind, from_shape=a.from_shape, to_shape=a.to_shape, from_region=from_region,
                to_region=a.region, result=a.result, seconds=a.seconds,
                pause_ms=float(getattr(rep, "pause_ms", 0.0) or 0.0), steps=steps)


def _discount(catalog: Any, shape: str, home: str = "local-a", other: str = "local-b") -> float:
    try:
        return 1.0 - float(catalog.price(shape, other)) / float(catalog.price(shape, home))
    except Exception:  # noqa: BLE001 - only the wording of a line depends on it
        return math.nan


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
