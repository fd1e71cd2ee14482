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

This module is the orchestration (the spec, the clock, the steps above, the lines it says); the load shape,
the ``/work`` load and the key/value writer are ``sculpt.app.demo_load``, the moves, the result and the
closing summary ``sculpt.app.demo_report``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.app.demo_load import KvWriter, WorkLoad, load_shape
from sculpt.app.demo_report import DemoResult, move_of, summary
from sculpt.app.service import open_service
from sculpt.decide.cost import DEFAULT_COST, cost_model_for
from sculpt.domain.clock import ScaledClock
from sculpt.loop.report import TickReport
from sculpt.migrate.actuator import MorphOutcome, OrchestratorActuator

# The demo compresses time (one real second is five model minutes) but its requests' latency is real: the
# CPU ramp queues /work requests past a web SLO long before the shape runs short. Its latency SLO is where
# only a stall breaches it, so the story is the CPU's (a latency breach is an urgent move up, see decide).
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
slo: {{p95_latency_ms: 2000, max_utilisation: 0.8}}
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


class Recording:
    """The auto-mode actuator the live loop uses, keeping each morph's orchestrator report (its strategy,
    the load balancer's pause, its steps) so the demo can say how a move was made. Same calls as
    ``OrchestratorActuator.morph``; the decision is untouched."""

    def __init__(self, inner: OrchestratorActuator) -> None:
        self.inner = inner
        self.reports: list[Any] = []

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> MorphOutcome:
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
            return MorphOutcome(now, shape, from_shape, region, "failed", str(e), orch.mid, time.monotonic() - t0)
        self.reports.append(rep)
        return MorphOutcome(now, shape, from_shape, region, rep.result, rep.reason or rep.strategy, rep.migration_id,
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
    cores, source = load_shape(cfg.trace, steps, cfg.base_cores, cfg.peak_cores)
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
            status = w.engine.status() or {}
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
                        move = move_of(a, rep, region[0])
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
                st = w2.engine.status() or {}
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
