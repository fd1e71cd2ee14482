"""The decision, pure: forecast + catalog + current shape + state + policy + now -> what to do.

One named formula, ``net_gain``, for every stream and candidate shape, with P over the forecast horizon and
the rates weighed over the payback window H (hours)::

    expected_cost(x) = price(x)·H + slo_penalty·(P(cpu > capacity(x)) + oom_weight·P(mem > capacity(x)))·H
    benefit(c)       = expected_cost(current) - expected_cost(c)
    migration_cost(c)= overlap·price(c) + transfer·state_gb (other region only) + pause + risk·(1 - confidence)
    net_gain(c)      = benefit(c) - migration_cost(c)

The candidate is the shape of least expected cost among the *safe* shapes (breach chance at most
``urgent_breach``, unless the move is urgent: no downsizing into a shape the next tick would leave
urgently) and, with a ``budget_usd_per_hour``, among the shapes whose fleet fits the cap (an over-budget
shape is the candidate only when nothing within the cap beats staying; the policy gate then blocks it).
It is taken when

- **urgent**: P(breach of current) > ``urgent_breach`` and the candidate lowers it (skips threshold,
  confidence floor and cooldown), or
- **worth it**: net_gain > ``gain_threshold · price(current)·H`` (set by aggressiveness), confidence ≥ floor,
  the cooldown since the last move has passed,

and in both cases the policy rules (``sculpt.rules.evaluate``) allow the resulting fleet. Otherwise hold
(a tie in expected cost is a hold: benefit must be strictly positive). ``decide_many`` does this for N
streams in a handful of numpy operations; ``decide`` is the single-instance form that returns a ``Plan``.
Constants and rejected alternatives: ``CostModel`` and docs/decision.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np

from sculpt.decide.cost import DEFAULT_COST, CostModel, breach_probability, joint_breach, weighted_breach
from sculpt.decide.distribution import Fit, FitColumns, shape_distribution, upper
from sculpt.decide.state import DecisionState
from sculpt.domain.catalog import Catalog, CatalogArrays
from sculpt.domain.fleet import Fleet
from sculpt.domain.forecast import Forecast
from sculpt.domain.plan import Action, Decision, Plan, RuleResult
from sculpt.domain.spec import FleetSpec
from sculpt.rules import RuleContext, evaluate

HOURS_PER_MONTH = 730.0
SAFE_BREACH = 0.05  # a shape "covers" a stream when its breach chance is below this
LATENCY_BUSY = 0.75  # a latency breach is the shape's when CPU is at least this share of what it may use


class Why(IntEnum):
    """Why a stream holds or moves (one code per stream in a batch)."""

    MOVE = 0
    URGENT = 1
    BEST = 2  # the current shape is already the best
    THRESHOLD = 3  # saving too small for the aggressiveness
    CONFIDENCE = 4
    COOLDOWN = 5
    NO_HISTORY = 6
    BAD_INPUT = 7  # NaN forecast or price
    PENDING = 8  # a migration is already in flight
    POLICY = 9  # a mandatory rule blocks it
    REGION = 10  # the whole fleet moves to another allowed region that serves it for less
    ADVISORY = 11  # another region would serve it for less, but this engine does not move regions
    LATENCY = 12  # measured latency above the SLO while the CPU is busy: an urgent move up


REASONS = {
    Why.MOVE: "moving saves more than it costs",
    Why.URGENT: "urgent: the current shape is likely to run short",
    Why.BEST: "the current shape is the best fit",
    Why.THRESHOLD: "the saving does not clear the aggressiveness threshold",
    Why.CONFIDENCE: "the forecast confidence is below its floor",
    Why.COOLDOWN: "cooling down after the last move",
    Why.NO_HISTORY: "no history yet",
    Why.BAD_INPUT: "forecast or prices are not finite",
    Why.PENDING: "a migration is already in flight",
    Why.POLICY: "policy blocks the move",
    Why.REGION: "another region serves the fleet for less, net of the move",
    Why.ADVISORY: "another region would serve the fleet for less (advisory on this engine)",
    Why.LATENCY: "urgent: the measured p95 latency is above the SLO while the CPU is busy",
}


class ForecastColumns(FitColumns, Protocol):
    """What ``decide_many`` reads from a forecast batch (``sculpt.forecast.base.ForecastBatch`` fits): the
    fit's columns (``FitColumns``), its confidence and the periods it has seen.

    Read-only members, so frozen dataclasses (``Columns``, ``ForecastBatch``) satisfy it.
    """

    @property
    def confidence(self) -> np.ndarray: ...
    @property
    def samples(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Columns(Fit):
    """A plain ``ForecastColumns`` (tests, single-instance decisions): a ``Fit`` with its confidence and the
    periods seen."""

    confidence: np.ndarray
    samples: np.ndarray

    @classmethod
    def of(cls, f: Forecast) -> Columns:
        def a(v: float) -> np.ndarray:
            return np.array([float(v)], dtype=np.float64)

        return cls(a(f.cpu_p50), a(f.cpu_p95), a(f.cpu_hi), a(f.mem_p50), a(f.mem_p95), a(f.mem_hi),
                   a(f.confidence), a(f.samples))


@dataclass(frozen=True)
class BatchDecision:
    """Columns of one decision per stream. ``target == current`` where the stream holds."""

    current: np.ndarray
    target: np.ndarray
    candidate: np.ndarray  # the shape of least expected cost (before cooldown, threshold and policy)
    move: np.ndarray
    urgent: np.ndarray
    why: np.ndarray  # Why codes
    benefit_usd: np.ndarray
    migration_cost_usd: np.ndarray
    net_usd: np.ndarray
    breach_current: np.ndarray
    breach_target: np.ndarray
    confidence: np.ndarray
    monthly_delta_usd: np.ndarray  # change in monthly cost if the target were kept; negative = saving
    policy: dict[int, tuple[RuleResult, ...]]  # rule results of the streams that were gated

    def __len__(self) -> int:
        return len(self.current)


def net_gain(
    price: np.ndarray, p_breach: np.ndarray, current: np.ndarray, confidence: np.ndarray, model: CostModel,
    transfer_gb_cost: np.ndarray | None = None, p_safe: np.ndarray | None = None,
    penalty: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The formula. ``price`` (S,), ``p_breach`` (N, S), ``current`` (N,) -> (expected, benefit, migration).

    The SLO penalty ($/h per stream) is ``slo_penalty(price, p_safe, model)`` unless ``penalty`` is given
    (the cross-region ranking prices a breach the same in every region: at the home region's reference).
    Shapes with a non-finite price get an infinite expected cost (never chosen).
    """
    h = model.payback_h
    ok_price = np.isfinite(price) & (price >= 0)
    if penalty is None:
        penalty = slo_penalty(price, p_safe, model, len(current))
    expected = np.where(ok_price[None, :], price[None, :] * h + penalty[:, None] * p_breach * h, np.inf)
    rows = np.arange(len(current))
    with np.errstate(invalid="ignore"):  # inf - inf where the current price is not finite: NaN -> hold
        benefit = expected[rows, current][:, None] - expected
    migration = (model.overlap_s / 3600.0) * np.where(ok_price, price, np.inf)[None, :] + model.pause_usd \
        + model.risk_usd * (1.0 - np.clip(confidence, 0.0, 1.0))[:, None] \
        + penalty[:, None] * (model.outage_s / 3600.0)
    if transfer_gb_cost is not None:
        migration = migration + transfer_gb_cost
    return expected, benefit, migration


def slo_penalty(price: np.ndarray, p_safe: np.ndarray | None, model: CostModel, n: int) -> np.ndarray:
    """$/h a breach costs, per stream: ``max(slo_penalty_usd_per_h, slo_penalty_x_price · risk_weight ·
    reference price)`` (``CostModel.risk_weight``: 1 at aggressiveness 0.5),
    the reference being the cheapest shape whose breach chance (``p_safe``, (N, S)) is below ``SAFE_BREACH``:
    the value of the service is what running it properly costs."""
    ok_price = np.isfinite(price) & (price >= 0)
    penalty = np.full(n, model.slo_penalty_usd_per_h)
    x_price = model.slo_penalty_x_price * model.risk_weight()
    if x_price > 0 and p_safe is not None:
        safe = (p_safe < SAFE_BREACH) & ok_price[None, :]
        ref = np.where(safe.any(axis=1), price[safe.argmax(axis=1)], np.nanmax(np.where(ok_price, price, np.nan)))
        penalty = np.maximum(penalty, x_price * ref)
    return penalty


def decide_many(
    *,
    current: np.ndarray,
    forecast: ForecastColumns,
    arrays: CatalogArrays,
    state: DecisionState,
    now: float,
    model: CostModel = DEFAULT_COST,
    allowed: np.ndarray | None = None,
    pending: np.ndarray | None = None,
    spec: FleetSpec | None = None,
    max_migrations_per_day: int | None = None,
    latency_over: np.ndarray | None = None,
) -> tuple[BatchDecision, DecisionState]:
    """Decide for N streams at once; returns the decisions and the new state.

    ``current`` indexes ``arrays`` (one region's offerings). ``allowed`` masks candidate shapes (families);
    ``pending`` flags streams with a migration in flight (they hold). Policy: ``max_migrations_per_day``
    is checked vectorised; with ``spec``, each stream that would move is also run through every rule of
    ``sculpt.rules.evaluate`` and holds (``Why.POLICY``) when a mandatory rule fails.

    Two cases override the cost formula. When no allowed shape is safe (demand above every one of them), the
    candidate is the largest allowed shape, never the cheapest of equally breached ones. ``latency_over``
    flags streams whose measured p95 latency is above the SLO: while their CPU is at least ``LATENCY_BUSY`` of
    what the shape may use, a breach is in progress and the next larger allowed shape is an urgent move (low CPU says
    the latency is not the shape's: no move). Urgency needs no history: a reading is evidence enough.
    """
    n = len(current)
    current = np.asarray(current, dtype=np.int64)
    allow = np.ones(len(arrays), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    # work on the columns that matter: allowed candidates plus the shapes streams are on now
    cols = np.union1d(np.flatnonzero(allow), current)
    cur = np.searchsorted(cols, current)
    price = arrays.price[cols]
    cap_cpu = arrays.vcpu[cols] * model.utilisation_cap
    cap_mem = arrays.memory_gib[cols] * model.utilisation_cap
    conf = np.asarray(forecast.confidence, dtype=np.float64)
    conf = np.where(np.isfinite(conf), conf, 0.0)
    samples = np.asarray(forecast.samples)

    p_cpu = breach_probability(forecast.cpu_p50, upper(forecast.cpu_p95, forecast.cpu_hi), cap_cpu)
    p_mem = breach_probability(forecast.mem_p50, upper(forecast.mem_p95, forecast.mem_hi), cap_mem)
    p_mem = np.where(np.isnan(p_mem), 0.0, p_mem)  # no memory forecast: no memory constraint
    bad = np.isnan(p_cpu[:, 0]) | ~np.isfinite(price[cur])
    p_cpu = np.where(np.isnan(p_cpu), 1.0, p_cpu)
    p = joint_breach(p_cpu, p_mem)  # the chance of a breach: risk, urgency
    expected, benefit, migration = net_gain(price, weighted_breach(p_cpu, p_mem, model.oom_weight), cur, conf,
                                            model, p_safe=np.where(allow[cols][None, :], p, 1.0))
    expected = np.where(allow[cols][None, :], expected, np.inf)
    rows = np.arange(n)
    # the candidates: a stream that is not in urgent trouble only moves to a shape it would not need to
    # leave urgently at the next tick with the same forecast (no down-then-up flapping); and a shape whose
    # fleet would exceed the budget cap is a candidate only when no other one beats the current shape (so
    # the policy gate then blocks it: a real block, not a missed fallback)
    fits = np.ones((1, len(cols)), dtype=bool)
    if spec is not None and spec.budget_usd_per_hour is not None:
        with np.errstate(invalid="ignore"):
            fits = (price * max(spec.replicas.desired, 1) <= spec.budget_usd_per_hour + 1e-12)[None, :]

    def pick(mask: np.ndarray) -> np.ndarray:  # within the budget when that beats staying, else any in mask
        if fits.all():
            return _pick(expected, mask, cur)
        t = _pick(expected, mask & fits, cur)
        return np.where(t != cur, t, _pick(expected, mask, cur))

    everything = np.ones((1, len(cols)), dtype=bool)
    tgt_any = pick(everything)
    safe = p <= model.urgent_breach
    tgt_safe = pick(safe)
    lowers = (p[rows, tgt_any] < p[rows, cur]) & (p[rows, cur] > model.urgent_breach)
    tgt = np.where(lowers, tgt_any, tgt_safe)  # offerings are sorted by price: ties go to the cheapest
    ok_cols = allow[cols] & np.isfinite(price)
    unsafe = ~(np.where(ok_cols[None, :], p, 1.0) <= model.urgent_breach).any(axis=1)
    big = _largest(arrays.vcpu[cols], arrays.memory_gib[cols], ok_cols)
    if big >= 0:  # demand above every allowed shape: the largest one (a downsize would only breach more)
        tgt = np.where(unsafe & (p[:, big] <= p[rows, cur] + 1e-12), big, np.where(unsafe, cur, tgt))
    lat = np.zeros(n, dtype=bool)
    if latency_over is not None:
        lat = np.asarray(latency_over, dtype=bool) & (np.nan_to_num(np.asarray(forecast.cpu_p50, dtype=np.float64))
                                                       >= LATENCY_BUSY * cap_cpu[cur])
        if lat.any():
            up = _next_larger(arrays.vcpu[cols], arrays.memory_gib[cols], ok_cols, cur[lat])
            tgt[lat] = np.where(up >= 0, up, tgt[lat])
            lat[lat] = up >= 0
    target = cols[tgt]
    b = benefit[rows, tgt]
    m = migration[rows, tgt]
    net = b - m
    pc = p[rows, cur]
    pt = p[rows, tgt]

    threshold = model.threshold_usd(price[cur])
    urgent = (((pc > model.urgent_breach) & ((pt < pc) | unsafe)) | lat) & (target != current)
    worth = (net > threshold) & (b > 0) & (target != current)

    why = np.full(n, int(Why.MOVE), dtype=np.int64)
    why = np.where(worth, why, int(Why.THRESHOLD))
    why = np.where((target == current) | ~(b > 0), int(Why.BEST), why)
    why = np.where(worth & (conf < model.confidence_floor), int(Why.CONFIDENCE), why)
    why = np.where(worth & (conf >= model.confidence_floor) & (state.since_last_move(now) < model.cooldown_s),
                   int(Why.COOLDOWN), why)
    why = np.where(urgent, int(Why.URGENT), why)
    why = np.where(urgent & lat, int(Why.LATENCY), why)
    why = np.where((samples <= 0) & ~urgent, int(Why.NO_HISTORY), why)
    why = np.where(bad | ~np.isfinite(b), int(Why.BAD_INPUT), why)
    if pending is not None:
        why = np.where(np.asarray(pending, dtype=bool), int(Why.PENDING), why)
    move = (why == Why.MOVE) | (why == Why.URGENT) | (why == Why.LATENCY)
    if max_migrations_per_day is not None:
        over = state.moves_last_day(now) + 1 > max_migrations_per_day
        why = np.where(move & over, int(Why.POLICY), why)
        move = move & ~over

    gated: dict[int, tuple[RuleResult, ...]] = {}
    if spec is not None and move.any():
        day = state.moves_last_day(now)
        for i in np.flatnonzero(move):
            res = policy_gate(spec, arrays, int(target[i]), int(day[i]), now)
            gated[int(i)] = res
            if not all(r.passed for r in res if r.level == "mandatory"):
                move[i] = False
                why[i] = int(Why.POLICY)

    final = np.where(move, target, current)
    delta = (arrays.price[final] - arrays.price[current]) * HOURS_PER_MONTH
    batch = BatchDecision(
        current=current, target=final, candidate=target, move=move,
        urgent=move & ((why == Why.URGENT) | (why == Why.LATENCY)), why=why,
        benefit_usd=b, migration_cost_usd=m, net_usd=net, breach_current=pc,
        breach_target=np.where(move, pt, pc), confidence=conf, monthly_delta_usd=np.nan_to_num(delta),
        policy=gated,
    )
    return batch, state.record(move, now)


def _largest(vcpu: np.ndarray, mem: np.ndarray, ok: np.ndarray) -> int:
    """The column of the largest ``ok`` shape (most vCPU, then memory; the cheapest of equals), -1 if none.

    >>> _largest(np.array([1, 4, 4, 2]), np.array([2, 8, 16, 4]), np.array([True, True, True, False]))
    2
    """
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return -1
    order = np.lexsort((idx, -mem[idx], -vcpu[idx]))  # offerings are sorted by price: lower index = cheaper
    return int(idx[order[0]])


def _next_larger(vcpu: np.ndarray, mem: np.ndarray, ok: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Per stream, the cheapest ``ok`` column with more vCPU and no less memory than ``cur``; -1 if none.

    >>> _next_larger(np.array([1, 2, 4]), np.array([2, 4, 8]), np.array([True, True, True]), np.array([0, 2]))
    array([ 1, -1])
    """
    bigger = ok[None, :] & (vcpu[None, :] > vcpu[cur][:, None]) & (mem[None, :] >= mem[cur][:, None])
    first = bigger.argmax(axis=1)
    return np.where(bigger.any(axis=1), first, -1)


def hold_rules(spec: FleetSpec, shape: str, family: str, price: float, now: float, moves_last_day: int = 0
               ) -> tuple[RuleResult, ...]:
    """Every policy rule on the fleet as it runs (``shape`` at ``price`` $/h per slot): a hold changes nothing."""
    fleet = Fleet.from_spec(spec)
    return evaluate(RuleContext(spec=spec, fleet=fleet, hourly_cost=price * len(fleet.slots), families={shape: family},
                                migrations_last_day=moves_last_day, is_change=False, now=now, tags=spec.tags))


def _pick(expected: np.ndarray, mask: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Per row, the column of least expected cost among ``mask`` and the current one; the current one when
    no finite candidate is left (first index on ties: offerings are sorted by price)."""
    rows = np.arange(len(cur))
    keep = np.broadcast_to(mask, expected.shape).copy()
    keep[rows, cur] = True
    e = np.where(keep, expected, np.inf)
    t = e.argmin(axis=1)
    return np.where(np.isfinite(e[rows, t]), t, cur)


def policy_gate(spec: FleetSpec, arrays: CatalogArrays, target: int, moves_last_day: int, now: float,
                region: str | None = None) -> tuple[RuleResult, ...]:
    """Run every policy rule on the fleet the move would produce."""
    shape = str(arrays.names[target])
    fleet = Fleet.from_spec(spec)
    fleet = fleet.with_slots(tuple(s.model_copy(update={"shape": shape, "region": region or s.region})
                                   for s in fleet.slots))
    hourly = float(arrays.price[target]) * len(fleet.slots)
    ctx = RuleContext(spec=spec, fleet=fleet, hourly_cost=hourly if math.isfinite(hourly) else float("inf"),
                      families={shape: str(arrays.families[target])}, migrations_last_day=moves_last_day,
                      is_change=True, now=now, tags=spec.tags)
    return evaluate(ctx)


def decide(
    *,
    stack: str,
    slot: str,
    current_shape: str,
    region: str,
    forecast: Forecast,
    catalog: Catalog,
    spec: FleetSpec,
    state: DecisionState | None = None,
    now: float,
    model: CostModel = DEFAULT_COST,
    pending: bool = False,
) -> tuple[Plan, DecisionState]:
    """The single-instance decision: a ``Plan`` that explains itself, and the new state.

    Candidates are the region's offerings in the spec's families (all when none are listed); every plan it
    returns has been through ``sculpt.rules.evaluate`` (``plan.policy``).
    """
    arrays = catalog.arrays(region)
    names = list(arrays.names)
    if current_shape not in names:
        catalog.offering(current_shape, region)  # raises the NotFoundError with a fix hint
    cur = names.index(current_shape)
    allowed = np.ones(len(arrays), dtype=bool) if not spec.families else \
        np.isin(arrays.families, np.array(spec.families, dtype=object))
    st = state if state is not None else DecisionState.empty(1)
    cols = Columns.of(forecast)
    batch, new_state = decide_many(current=np.array([cur]), forecast=cols, arrays=arrays, state=st, now=now,
                                   model=model, allowed=allowed, pending=np.array([pending]), spec=spec)
    return plan_of(batch, 0, stack=stack, slot=slot, arrays=arrays, spec=spec, region=region, now=now,
                   forecast=cols, allowed=allowed, model=model, moves_last_day=int(st.moves_last_day(now)[0])), \
        new_state


def plan_of(batch: BatchDecision, i: int, *, stack: str, slot: str, arrays: CatalogArrays, spec: FleetSpec,
            region: str, now: float, forecast: ForecastColumns | None = None, allowed: np.ndarray | None = None,
            model: CostModel = DEFAULT_COST, moves_last_day: int = 0) -> Plan:
    """The ``Plan`` of stream ``i`` of a batch (rules evaluated on the fleet it would produce)."""
    cur, tgt = int(batch.current[i]), int(batch.target[i])
    why = Why(int(batch.why[i]))
    if batch.move[i] or why == Why.POLICY:
        policy = batch.policy.get(i) or policy_gate(spec, arrays, int(batch.candidate[i]), moves_last_day, now,
                                                    region)
    else:  # a hold changes nothing: the rules see the current fleet and no change
        policy = hold_rules(spec, str(arrays.names[cur]), str(arrays.families[cur]),
                            float(np.nan_to_num(arrays.price[cur])), now, moves_last_day)
    dist = shape_distribution(arrays, forecast, i, allowed=allowed, cap=model.utilisation_cap) \
        if forecast is not None else {}
    code = why.name.lower()
    if batch.move[i]:
        decision = Decision.MIGRATE
        actions: tuple[Action, ...] = (Action(kind="resize", slot=slot, from_shape=str(arrays.names[cur]),
                                              to_shape=str(arrays.names[tgt]), from_region=region, to_region=region,
                                              why=code),)
        reason = explain(batch, i, arrays, model, why)
    else:
        decision = Decision.BLOCKED if why == Why.POLICY else Decision.HOLD
        actions = ()
        reason = explain(batch, i, arrays, model, why, dist)
        if why == Why.POLICY:
            failed = [r.rule for r in policy if not r.passed and r.level == "mandatory"]
            reason = f"{reason} to {arrays.names[int(batch.candidate[i])]}: {', '.join(failed) or 'max-migrations-per-day'}"
    risk = float(batch.breach_target[i])
    return Plan(stack=stack, decision=decision, actions=actions, reason=reason,
                expected_monthly_delta_usd=float(batch.monthly_delta_usd[i]),
                risk=min(max(risk if math.isfinite(risk) else 1.0, 0.0), 1.0),
                confidence=min(max(float(batch.confidence[i]), 0.0), 1.0), distribution=dist, policy=policy,
                urgent=bool(batch.urgent[i]), why=code, figures=figures_of(batch, i, arrays, model))


def pct(x: float, versus: float | None = None) -> str:
    """``x`` as a percentage, with as many decimals as it takes not to read equal to ``versus``.

    >>> pct(0.0496, 0.05), pct(0.3), pct(0.05, 0.05)
    ('4.96%', '30%', '5%')
    """
    for d in (0, 1, 2, 3):
        text = f"{x:.{d}%}"
        if versus is None or x == versus or text != f"{versus:.{d}%}":
            return text
    return f"{x:.4%}"


def explain(batch: BatchDecision, i: int, arrays: CatalogArrays, model: CostModel, why: Why,
            dist: dict[str, float] | None = None) -> str:
    """The reason of stream ``i``'s decision, naming the numbers that decided it: the current shape's breach
    chance when urgent, the saving against the move's cost and the threshold when a cheaper shape loses, and
    why the likeliest cheapest-fit shape is not taken when the current one is kept."""
    cur, cand = str(arrays.names[int(batch.current[i])]), str(arrays.names[int(batch.candidate[i])])
    pc, pt = float(batch.breach_current[i]), float(batch.breach_target[i])
    b, m, net = float(batch.benefit_usd[i]), float(batch.migration_cost_usd[i]), float(batch.net_usd[i])
    h = model.payback_h
    price = float(arrays.price[int(batch.current[i])])
    thr = float(model.threshold_usd(np.asarray(price)))
    head = REASONS[why]
    if why is Why.URGENT:
        if pt > model.urgent_breach:
            return (f"{head}: demand is above every allowed shape ({cur} breaches with chance {pct(pc)}), so the "
                    f"largest, {cand} ({pct(pt)})")
        return f"{head}: {cur} breaches with chance {pct(pc)}, {cand} with {pct(pt, pc)} (net ${net:.4f} over {h:g} h)"
    if why is Why.LATENCY:
        return f"{head}: {cand} is the next larger shape ({cur}'s CPU breach chance {pct(pc)})"
    if why is Why.MOVE:
        return (f"{head}: {cand} saves ${b:.4f} over {h:g} h against ${m:.4f} to move (net ${net:.4f}, threshold "
                f"${thr:.4f})")
    if why is Why.THRESHOLD:
        return (f"{head}: {cand} would save ${b:.4f} over {h:g} h, less ${m:.4f} to move leaves ${net:.4f}, not "
                f"above ${thr:.4f}")
    if why is Why.BEST and dist:
        mode = max(dist.items(), key=lambda kv: kv[1])[0]
        if mode != cur:
            names = [str(n) for n in arrays.names]
            cheaper = float(arrays.price[names.index(mode)]) < price
            why_not = (f"but a breach on it would cost more than it saves (the current shape breaches with chance "
                       f"{pct(pc)})" if cheaper else f"but {cur}'s breach chance {pct(pc)} costs less than moving up")
            return f"{head}: {mode} is the likeliest cheapest fit ({pct(dist[mode])}), {why_not}"
    return head


def figures_of(batch: BatchDecision, i: int, arrays: CatalogArrays, model: CostModel = DEFAULT_COST
               ) -> dict[str, float]:
    """The numbers behind stream ``i``'s decision (USD over the payback window; breach chances), finite only."""
    cur = int(batch.current[i])
    price = float(arrays.price[cur])
    out = {"net_usd": float(batch.net_usd[i]), "benefit_usd": float(batch.benefit_usd[i]),
           "migration_usd": float(batch.migration_cost_usd[i]),
           "threshold_usd": float(model.threshold_usd(np.asarray(price))),
           "breach_current": float(batch.breach_current[i]), "breach_target": float(batch.breach_target[i])}
    return {k: v for k, v in out.items() if math.isfinite(v)}


def family_mask(arrays: CatalogArrays, families: Sequence[str] | None) -> np.ndarray:
    """Boolean mask of the offerings in ``families`` (all when empty)."""
    if not families:
        return np.ones(len(arrays), dtype=bool)
    return np.isin(arrays.families, np.array(list(families), dtype=object))
