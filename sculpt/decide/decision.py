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
from sculpt.decide.state import DecisionState
from sculpt.domain.catalog import Catalog, CatalogArrays
from sculpt.domain.fleet import Fleet
from sculpt.domain.forecast import Forecast
from sculpt.domain.plan import Action, Decision, Plan, RuleResult
from sculpt.domain.spec import FleetSpec
from sculpt.rules import RuleContext, evaluate

HOURS_PER_MONTH = 730.0
SAFE_BREACH = 0.05  # a shape "covers" a stream when its breach chance is below this


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
}


class ForecastColumns(Protocol):
    """What ``decide_many`` reads from a forecast batch (``sculpt.forecast.base.ForecastBatch`` fits).

    Read-only members, so frozen dataclasses (``Columns``, ``ForecastBatch``) satisfy it.
    """

    @property
    def cpu_p50(self) -> np.ndarray: ...
    @property
    def cpu_p95(self) -> np.ndarray: ...
    @property
    def cpu_hi(self) -> np.ndarray: ...
    @property
    def mem_p50(self) -> np.ndarray: ...
    @property
    def mem_p95(self) -> np.ndarray: ...
    @property
    def mem_hi(self) -> np.ndarray: ...
    @property
    def confidence(self) -> np.ndarray: ...
    @property
    def samples(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Columns:
    """A plain ``ForecastColumns`` (tests, single-instance decisions)."""

    cpu_p50: np.ndarray
    cpu_p95: np.ndarray
    cpu_hi: np.ndarray
    mem_p50: np.ndarray
    mem_p95: np.ndarray
    mem_hi: np.ndarray
    confidence: np.ndarray
    samples: np.ndarray

    @classmethod
    def of(cls, f: Forecast) -> Columns:
        def a(v: float) -> np.ndarray:
            return np.array([float(v)], dtype=np.float64)

        return cls(a(f.cpu_p50), a(f.cpu_p95), a(f.cpu_hi), a(f.mem_p50), a(f.mem_p95), a(f.mem_hi),
                   a(f.confidence), a(f.samples))


def upper(p95: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The upper quantile the decision trusts: the larger of the model's p95 and its calibrated interval's
    top (a model's own quantile can be overconfident; the conformal bound is checked against outcomes)."""
    return np.fmax(np.asarray(p95, dtype=np.float64), np.asarray(hi, dtype=np.float64))


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
    """$/h a breach costs, per stream: ``max(slo_penalty_usd_per_h, slo_penalty_x_price · reference price)``,
    the reference being the cheapest shape whose breach chance (``p_safe``, (N, S)) is below ``SAFE_BREACH``:
    the value of the service is what running it properly costs."""
    ok_price = np.isfinite(price) & (price >= 0)
    penalty = np.full(n, model.slo_penalty_usd_per_h)
    if model.slo_penalty_x_price > 0 and p_safe is not None:
        safe = (p_safe < SAFE_BREACH) & ok_price[None, :]
        ref = np.where(safe.any(axis=1), price[safe.argmax(axis=1)], np.nanmax(np.where(ok_price, price, np.nan)))
        penalty = np.maximum(penalty, model.slo_penalty_x_price * ref)
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
) -> tuple[BatchDecision, DecisionState]:
    """Decide for N streams at once; returns the decisions and the new state.

    ``current`` indexes ``arrays`` (one region's offerings). ``allowed`` masks candidate shapes (families);
    ``pending`` flags streams with a migration in flight (they hold). Policy: ``max_migrations_per_day``
    is checked vectorised; with ``spec``, each stream that would move is also run through every rule of
    ``sculpt.rules.evaluate`` and holds (``Why.POLICY``) when a mandatory rule fails.
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
    tgt_safe = pick(p <= model.urgent_breach)
    lowers = (p[rows, tgt_any] < p[rows, cur]) & (p[rows, cur] > model.urgent_breach)
    tgt = np.where(lowers, tgt_any, tgt_safe)  # offerings are sorted by price: ties go to the cheapest
    target = cols[tgt]
    b = benefit[rows, tgt]
    m = migration[rows, tgt]
    net = b - m
    pc = p[rows, cur]
    pt = p[rows, tgt]

    h = model.payback_h
    threshold = model.gain_threshold() * np.where(np.isfinite(price[cur]), price[cur], 0.0) * h
    urgent = (pc > model.urgent_breach) & (pt < pc) & (target != current)
    worth = (net > threshold) & (b > 0) & (target != current)

    why = np.full(n, int(Why.MOVE), dtype=np.int64)
    why = np.where(worth, why, int(Why.THRESHOLD))
    why = np.where((target == current) | ~(b > 0), int(Why.BEST), why)
    why = np.where(worth & (conf < model.confidence_floor), int(Why.CONFIDENCE), why)
    why = np.where(worth & (conf >= model.confidence_floor) & (state.since_last_move(now) < model.cooldown_s),
                   int(Why.COOLDOWN), why)
    why = np.where(urgent, int(Why.URGENT), why)
    why = np.where(samples <= 0, int(Why.NO_HISTORY), why)
    why = np.where(bad | ~np.isfinite(b), int(Why.BAD_INPUT), why)
    if pending is not None:
        why = np.where(np.asarray(pending, dtype=bool), int(Why.PENDING), why)
    move = (why == Why.MOVE) | (why == Why.URGENT)
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
        current=current, target=final, candidate=target, move=move, urgent=move & (why == Why.URGENT), why=why,
        benefit_usd=b, migration_cost_usd=m, net_usd=net, breach_current=pc,
        breach_target=np.where(move, pt, pc), confidence=conf, monthly_delta_usd=np.nan_to_num(delta),
        policy=gated,
    )
    return batch, state.record(move, now)


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


def _distribution(arrays: CatalogArrays, p_fit: np.ndarray, allowed: np.ndarray, top: int = 5) -> dict[str, float]:
    """P(shape is the cheapest that fits), shapes sorted by price, fits treated as independent."""
    q = np.where(allowed, p_fit, 0.0)
    none_before = np.concatenate([[1.0], np.cumprod(1.0 - q)[:-1]])
    w = q * none_before
    s = w.sum()
    if not np.isfinite(s) or s <= 0:
        return {}
    order = np.argsort(-w, kind="stable")[:top]
    return {str(arrays.names[i]): float(w[i] / s) for i in order if w[i] > 0}


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
    policy = batch.policy.get(i) or policy_gate(spec, arrays, int(batch.candidate[i]), moves_last_day, now, region)
    if not batch.move[i] and why != Why.POLICY:
        # a hold changes nothing: the rules see the current fleet and no change
        fleet = Fleet.from_spec(spec)
        policy = evaluate(RuleContext(spec=spec, fleet=fleet, hourly_cost=float(np.nan_to_num(arrays.price[cur]))
                                      * len(fleet.slots), families={str(arrays.names[cur]): str(arrays.families[cur])},
                                      migrations_last_day=moves_last_day, is_change=False, now=now, tags=spec.tags))
    dist: dict[str, float] = {}
    if forecast is not None:
        cap = model.utilisation_cap
        c95 = upper(forecast.cpu_p95[i:i + 1], forecast.cpu_hi[i:i + 1])
        m95 = upper(forecast.mem_p95[i:i + 1], forecast.mem_hi[i:i + 1])
        pc = np.nan_to_num(breach_probability(forecast.cpu_p50[i:i + 1], c95, arrays.vcpu * cap), nan=1.0)
        pm = np.nan_to_num(breach_probability(forecast.mem_p50[i:i + 1], m95, arrays.memory_gib * cap), nan=0.0)
        fit = (1.0 - joint_breach(pc, pm))[0]
        dist = _distribution(arrays, fit, allowed if allowed is not None else np.ones(len(arrays), dtype=bool))
    if batch.move[i]:
        decision = Decision.MIGRATE
        actions: tuple[Action, ...] = (Action(kind="resize", slot=slot, from_shape=str(arrays.names[cur]),
                                              to_shape=str(arrays.names[tgt]), from_region=region, to_region=region),)
        reason = f"{REASONS[why]} (net ${float(batch.net_usd[i]):.4f} over the horizon)"
    else:
        decision = Decision.BLOCKED if why == Why.POLICY else Decision.HOLD
        actions = ()
        reason = REASONS[why]
        if why == Why.POLICY:
            failed = [r.rule for r in policy if not r.passed and r.level == "mandatory"]
            reason = f"{reason} to {arrays.names[int(batch.candidate[i])]}: {', '.join(failed) or 'max-migrations-per-day'}"
    risk = float(batch.breach_target[i])
    return Plan(stack=stack, decision=decision, actions=actions, reason=reason,
                expected_monthly_delta_usd=float(batch.monthly_delta_usd[i]),
                risk=min(max(risk if math.isfinite(risk) else 1.0, 0.0), 1.0),
                confidence=min(max(float(batch.confidence[i]), 0.0), 1.0), distribution=dist, policy=policy,
                urgent=bool(batch.urgent[i]))


def family_mask(arrays: CatalogArrays, families: Sequence[str] | None) -> np.ndarray:
    """Boolean mask of the offerings in ``families`` (all when empty)."""
    if not families:
        return np.ones(len(arrays), dtype=bool)
    return np.isin(arrays.families, np.array(list(families), dtype=object))
