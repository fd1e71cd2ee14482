"""The replay harness: run every policy over the same traces on the ``sim`` provider, side by side.

All traces are aligned by step index into (steps, streams) arrays. ``static`` and ``oracle`` are computed in
closed form (a constant shape; the hindsight DP of ``sculpt.replay.oracle``); the baselines (``reactive``,
``percentile``, ``autopilot``: ``sculpt.replay.baselines``) and ``sculpt`` run step by step on their own
``SimCloud`` — ``sculpt`` through ``sculpt.loop.tick.tick``, the same tick ``sculpt watch`` runs live.
Billing and scoring are shared, so the policies compare like for like.

A sweep (``ReplayConfig.sweep_aggressiveness`` / ``sweep_margins``) adds variants scored the same way
(``ReplayResult.sweep``): each on its own ``SimCloud``, the baselines' variants sharing one statistic per
rule and the sculptors one forecast per tick (``sculpt.replay.fanout``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from sculpt.decide.cost import CostModel
from sculpt.decide.decision import family_mask
from sculpt.decide.fleet import Moves
from sculpt.domain.catalog import Catalog, CatalogArrays
from sculpt.domain.clock import FakeClock
from sculpt.domain.errors import ConfigError
from sculpt.forecast.base import Predictor
from sculpt.loop.tick import Observation, Sculptor, tick
from sculpt.providers.sim import SimCloud
from sculpt.replay.baselines import BASELINES, DEFAULT_MARGIN, Need, make_need, static_shapes, with_margin
from sculpt.replay.fanout import Echo, Lead
from sculpt.replay.metrics import Score, score
from sculpt.replay.oracle import oracle
from sculpt.replay.readers import Trace

POLICIES: tuple[str, ...] = ("static", "reactive", "percentile", "autopilot", "sculpt", "oracle")
DEFAULT_POLICIES: tuple[str, ...] = ("static", "reactive", "sculpt", "oracle")  # `sculpt replay` without --policy
DEFAULT_FAMILIES: tuple[str, ...] = ("m5", "c5", "r5", "m6i", "c6i", "r6i", "m7i", "c7i", "r7i")
Progress = Callable[[int, int], None]
# The replay's default forecast model. ``river`` rather than ``ensemble``: on the 57 Bitbrains VMs the
# ensemble (river + LSTM) reaches the same decisions' quality (1.27 x oracle either way, measured 06:25 UTC
# on 2026-11-28) but takes ~180 s for the 3-month replay against a 120 s budget (~40 s with river).
# ``--model ensemble`` runs it.
DEFAULT_MODEL = "river"


@dataclass(frozen=True)
class ReplayConfig:
    region: str = "us-east-1"
    families: tuple[str, ...] = DEFAULT_FAMILIES
    policies: tuple[str, ...] = DEFAULT_POLICIES
    migration_s: float = 600.0
    capacity_error_rate: float = 0.0
    seed: int = 0
    model: str = DEFAULT_MODEL
    cost: CostModel = field(default_factory=CostModel)
    mem_recall_h: int = 24  # memory p95 floored by the peak of the last N hours (0: off)
    margins: Mapping[str, float] = field(default_factory=dict)  # baseline -> margin (default: DEFAULT_MARGIN)
    sweep_aggressiveness: tuple[float, ...] = ()  # extra sculpt runs, one per aggressiveness
    sweep_margins: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # baseline -> extra margins

    def margin(self, baseline: str) -> float:
        return float(self.margins.get(baseline, DEFAULT_MARGIN[baseline]))


@dataclass(frozen=True)
class SweepPoint:
    """One variant of a sweep: ``policy`` run with ``param`` (aggressiveness for sculpt, else the margin)."""

    policy: str
    param: float
    score: Score
    default: bool = False  # the policy's default setting (the same run as ``ReplayResult.scores[policy]``)


@dataclass
class ReplayResult:
    """Scores per policy plus the timelines the report plots."""

    traces: list[Trace]
    arrays: CatalogArrays
    scores: dict[str, Score]
    shapes: dict[str, np.ndarray]  # (steps, streams) serving shape index
    bills: dict[str, np.ndarray]  # (steps, streams) $ billed per step (float32)
    cpu: np.ndarray
    mem: np.ndarray
    valid: np.ndarray
    elapsed_s: float
    model: str = ""
    notes: list[str] = field(default_factory=list)
    shapes_considered: int = 0
    sweep: list[SweepPoint] = field(default_factory=list)

    @property
    def trace_hours(self) -> float:
        return float(sum(t.hours for t in self.traces))

    def to_json(self, per_trace: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "policies": {p: s.total() for p, s in self.scores.items()},
            "traces": len(self.traces),
            "trace_hours": round(self.trace_hours, 2),
            "elapsed_s": round(self.elapsed_s, 3),
        }
        if per_trace:
            out["per_trace"] = {t.name: {p: s.row(i) for p, s in self.scores.items()}
                                for i, t in enumerate(self.traces)}
        if self.sweep:
            out["sweep"] = [{"policy": v.policy, "param": v.param, "default": v.default, **v.score.total()}
                            for v in self.sweep]
        return out


def align(traces: Sequence[Trace]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cpu, mem, t, t_rel, valid), each (steps, streams), padded after each trace's end."""
    k = max(len(t) for t in traces)
    n = len(traces)
    cpu = np.zeros((k, n))
    mem = np.full((k, n), np.nan)
    ts = np.zeros((k, n))
    valid = np.zeros((k, n), dtype=bool)
    for j, tr in enumerate(traces):
        m = len(tr)
        cpu[:m, j] = tr.cpu
        mem[:m, j] = tr.mem
        ts[:m, j] = tr.t
        ts[m:, j] = tr.t[-1] + tr.step_s * np.arange(1, k - m + 1)
        valid[:m, j] = True
    step = np.array([tr.step_s for tr in traces])
    t_rel = np.arange(k)[:, None] * step[None, :]  # replayed time: one nominal step per sample
    return cpu, mem, ts, t_rel, valid


class _SimPort:
    """A ``FleetPort`` over a ``SimCloud`` that serves the traces' samples of the current step."""

    def __init__(self, sim: SimCloud, cpu: np.ndarray, mem: np.ndarray, ts: np.ndarray, valid: np.ndarray) -> None:
        self.sim, self.cpu, self.mem, self.ts, self.valid = sim, cpu, mem, ts, valid
        self.k = 0

    def observe(self, now: float) -> Observation:
        rows = np.flatnonzero(self.valid[self.k])
        return Observation(rows=rows, t=self.ts[self.k, rows], cpu_cores=self.cpu[self.k, rows],
                           mem_gib=self.mem[self.k, rows])

    def current(self) -> np.ndarray:
        # the shape a stream will have once any move in flight lands: what a decision is relative to
        return np.where(self.sim.pending, self.sim.pending_to, self.sim.current)

    def pending(self) -> np.ndarray:
        return self.sim.pending

    def execute(self, moves: Moves, now: float) -> np.ndarray:
        return self.sim.resize(moves.rows, moves.to)


def run_replay(
    traces: Sequence[Trace],
    catalog: Catalog,
    config: ReplayConfig | None = None,
    *,
    predictor_factory: Callable[[], Predictor] | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Replay ``traces`` under each policy of ``config``. ``predictor_factory`` builds the sculpt model
    (default: ``sculpt.forecast.make_predictor(config.model, seed=config.seed)``)."""
    config = config or ReplayConfig()
    if not traces:
        raise ConfigError("no traces to replay", "pass trace files or a directory of traces")
    unknown = [p for p in config.policies if p not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown policy '{unknown[0]}'", f"use some of: {', '.join(POLICIES)}")
    started = time.perf_counter()
    arrays = catalog.arrays(config.region)
    allowed = family_mask(arrays, config.families)
    if not allowed.any():
        raise ConfigError(f"no shapes of families {', '.join(config.families)} in {config.region}",
                          "pass --families that the catalog offers in that region (see `sculpt catalog`)")
    traces = list(traces)
    cpu, mem, ts, t_rel, valid = align(traces)
    k_steps, n = cpu.shape
    step_s = np.array([tr.step_s for tr in traces])
    step_h = step_s / 3600.0
    delay = np.ceil(config.migration_s / step_s - 1e-9).astype(np.int64)
    static = static_shapes(arrays, allowed, [(t.provisioned_cpu, t.provisioned_mem_gib) for t in traces],
                           cpu, mem, t_rel, valid)

    scores: dict[str, Score] = {}
    shapes: dict[str, np.ndarray] = {}
    bills: dict[str, np.ndarray] = {}
    notes: list[str] = []

    if "static" in config.policies:
        tl = np.where(valid, static[None, :], -1)
        bill = np.where(valid, arrays.price[static][None, :] * step_h[None, :], 0.0)
        shapes["static"], bills["static"] = tl, bill.astype(np.float32)
        scores["static"] = score(arrays, tl, bill.sum(axis=0), cpu, mem, valid)
    if "oracle" in config.policies:
        res = oracle(arrays, cpu, mem, valid, step_h, delay, allowed)
        bill = np.where(valid, arrays.price[np.maximum(res.shapes, 0)] * step_h[None, :], 0.0) + res.switch_cost
        shapes["oracle"], bills["oracle"] = res.shapes, bill.astype(np.float32)
        scores["oracle"] = score(arrays, res.shapes, res.cost, cpu, mem, valid)

    runs = _online_runs(config)  # (label, policy, param): the policies first, then the sweep's variants
    sims: dict[str, SimCloud] = {}
    for i, (label, _, _) in enumerate(runs):
        sims[label] = SimCloud(arrays, initial=static, step_s=step_s, migration_s=config.migration_s,
                               capacity_error_rate=config.capacity_error_rate, seed=config.seed + i)
        if label in config.policies:
            shapes[label] = np.full((k_steps, n), -1, dtype=np.int64)
            bills[label] = np.zeros((k_steps, n), dtype=np.float32)
        else:  # a sweep variant: scored, not plotted
            shapes[label] = np.full((k_steps, n), -1, dtype=np.int32)
    needs: dict[str, Need] = {}
    margins: dict[str, list[tuple[str, float]]] = {}
    for label, pol, param in runs:
        if pol in BASELINES:
            if pol not in needs:
                needs[pol] = make_need(pol, arrays, allowed, cpu, mem, step_s)
            margins.setdefault(pol, []).append((label, param))
    sculptors: dict[str, tuple[Sculptor, _SimPort]] = {}
    clock = FakeClock(float(ts[0].min()))
    aggr = [(label, a) for label, pol, a in runs if pol == "sculpt"]
    if aggr:
        if predictor_factory is None:
            from sculpt.forecast import make_predictor

            predictor = make_predictor(config.model, seed=config.seed, horizon_s=config.cost.horizon_h * 3600.0)
        else:
            predictor = predictor_factory()
        notes.extend(predictor.notes)
        from sculpt.domain.spec import FleetSpec

        spec = FleetSpec(fleet="replay", engine="local", provider="sim", shape=str(arrays.names[static[0]]),
                         region=config.region, families=list(config.families))
        lead = Lead(predictor) if len(aggr) > 1 else None
        for i, (label, a) in enumerate(aggr):
            model = predictor if lead is None else (lead if i == 0 else Echo(lead))
            cost = config.cost if label == "sculpt" else replace(config.cost, aggressiveness=a)
            sculptors[label] = (Sculptor(model, arrays, [t.name for t in traces], model=cost, allowed=allowed,
                                         spec=spec, max_migrations_per_day=spec.policy.max_migrations_per_day,
                                         mem_recall_h=config.mem_recall_h),
                                _SimPort(sims[label], cpu, mem, ts, valid))

    every = max(1, k_steps // 200)
    for k in range(k_steps if runs else 0):
        live = valid[k]
        for label, sim in sims.items():
            shapes[label][k] = np.where(live, sim.step(live), -1)
            if label in bills:
                bills[label][k] = np.where(live, sim.last_bill(), 0.0)
        for pol, need in needs.items():
            due, need_cpu, need_mem = need.step(k, t_rel[k], cpu[k], mem[k], live)
            if not due.any():
                continue
            for label, margin in margins[pol]:
                sim = sims[label]
                target = with_margin(arrays, allowed, need_cpu, need_mem, margin)
                want = due & (target != sim.current) & ~sim.pending
                if want.any():
                    rows = np.flatnonzero(want)
                    sim.resize(rows, target[rows])
        if sculptors:
            clock.advance(float(step_s.min()))
            for sculptor, port in sculptors.values():  # the lead first: the echoes reuse its forecast
                port.k = k
                tick(sculptor, port, clock)
        if progress is not None and (k % every == 0 or k == k_steps - 1):
            progress(k + 1, k_steps)
    sweep: list[SweepPoint] = []
    for label, pol, param in runs:
        sc = score(arrays, shapes[label], sims[label].cost, cpu, mem, valid)
        if label in config.policies:
            scores[label] = sc
        else:
            del shapes[label]
        if label not in config.policies or _swept(config, pol):
            sweep.append(SweepPoint(policy=pol, param=param, score=sc, default=label in config.policies))
    sweep.sort(key=lambda v: (POLICIES.index(v.policy), v.param))

    ordered = {p: scores[p] for p in POLICIES if p in scores}
    return ReplayResult(traces=traces, arrays=arrays, scores=ordered, shapes=shapes, bills=bills, cpu=cpu, mem=mem,
                        valid=valid, elapsed_s=time.perf_counter() - started,
                        model=predictor.name if aggr else "", notes=notes,
                        shapes_considered=int(allowed.sum()), sweep=sweep)


def _default_param(config: ReplayConfig, policy: str) -> float:
    return config.cost.aggressiveness if policy == "sculpt" else config.margin(policy)


def _swept(config: ReplayConfig, policy: str) -> bool:
    return bool(config.sweep_aggressiveness) if policy == "sculpt" else bool(config.sweep_margins.get(policy))


def _online_runs(config: ReplayConfig) -> list[tuple[str, str, float]]:
    """(label, policy, param) of every step-by-step run: the online policies asked for (label = the policy),
    then each swept value that is not already a policy's default (label ``policy@value``)."""
    online = [p for p in POLICIES if p in config.policies and (p in BASELINES or p == "sculpt")]
    runs = [(p, p, _default_param(config, p)) for p in online]
    bad = [p for p in config.sweep_margins if p not in BASELINES]
    if bad:
        raise ConfigError(f"cannot sweep the margin of '{bad[0]}'", f"sweep margins of {', '.join(BASELINES)}")
    swept = [("sculpt", float(a)) for a in config.sweep_aggressiveness]
    swept += [(p, float(m)) for p in BASELINES for m in config.sweep_margins.get(p, ())]
    for pol, v in swept:
        if not (pol in online and abs(v - _default_param(config, pol)) < 1e-12):
            label = f"{pol}@{v:g}"
            if label not in {r[0] for r in runs}:
                runs.append((label, pol, v))
    return runs
