"""The whole fleet's plan of one tick: what the loop executes, and why (pure).

Why it exists: a live fleet's replicas run one shape in one region (the orchestrator morphs the whole
fleet), while the decision (``decide_many``) weighs each replica's demand on its own. This module turns the
replicas' decisions into **one** ``Plan`` — a shape move of every serving slot to the largest shape any
replica needs, or a region move of the whole fleet when another allowed region serves it for less, or a
hold — and into the ``Moves`` the loop executes: exactly the plan's actions, by stream row. ``sculpt plan``
prints that plan; ``sculpt watch --mode auto`` executes it; nothing in between decides again.

Replay's fleets are independent streams (one VM each): ``per_stream`` is their plan, the batch's own moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sculpt.decide.availability import Availability, Candidate, rank
from sculpt.decide.cost import CostModel
from sculpt.decide.decision import (
    HOURS_PER_MONTH,
    REASONS,
    BatchDecision,
    ForecastColumns,
    Why,
    hold_rules,
    pct,
    plan_of,
    policy_gate,
)
from sculpt.decide.state import DecisionState
from sculpt.domain.catalog import Catalog, CatalogArrays, Shape
from sculpt.domain.fleet import SlotInfo
from sculpt.domain.forecast import Forecast
from sculpt.domain.plan import Action, Decision, Plan, RuleResult
from sculpt.domain.spec import FleetSpec


@dataclass(frozen=True)
class Moves:
    """The actions of a plan by stream: row ``rows[i]`` goes to offering ``to[i]`` of ``region`` (``None``:
    the home region, whose offerings the indexes refer to).

    >>> m = Moves(np.array([0, 2]), np.array([3, 3]))
    >>> len(m), bool(Moves.none())
    (2, False)
    """

    rows: np.ndarray
    to: np.ndarray
    region: str | None = None

    @staticmethod
    def none() -> Moves:
        return Moves(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return len(self.rows) > 0


def per_stream(rows: np.ndarray, batch: BatchDecision) -> Moves:
    """Independent streams (replay's VMs): each stream that should move moves to its own target."""
    return Moves(rows[batch.move], batch.target[batch.move])


@dataclass(frozen=True)
class FleetPlan:
    """One tick's plan of a live fleet: ``plan`` (what ``sculpt plan`` shows), ``moves`` (exactly its
    actions, what the loop executes) and the per-replica plans it was made from."""

    plan: Plan
    moves: Moves
    replicas: tuple[Plan, ...]


@dataclass(frozen=True)
class FleetInputs:
    """What the fleet's plan is made from (all known at the tick; nothing here is read from a port)."""

    spec: FleetSpec
    catalog: Catalog
    arrays: CatalogArrays  # the home region's offerings; ``batch`` indexes them
    rows: np.ndarray  # the streams decided on (one per serving replica with a reading)
    slots: Sequence[SlotInfo]  # every serving slot (all of them move together)
    slot_of: Sequence[str]  # the slot id of each decided row
    batch: BatchDecision
    forecast: ForecastColumns  # the floored forecast the decision used, one row per decided row
    state: DecisionState  # the decision state before this tick (cooldown, moves of the last day)
    availability: Availability
    cost: CostModel
    allowed: np.ndarray | None
    now: float
    busy: bool = False  # a morph is in flight: nothing new starts
    moves_regions: bool = True  # the platform can move the fleet to another region (a local stack can; a
    # cloud stack's load balancer is regional, so there a region move is a new stack: advisory only)


NO_METRICS = "no usable metrics this tick, so nothing to decide on: holding"


def plan_fleet(x: FleetInputs) -> FleetPlan:
    """The fleet's plan: the replicas' decisions merged (blocked > migrate > hold), a shape move sized for
    the replica that needs the most, else a region move when one pays and passes every gate."""
    replicas = tuple(_replica_plan(x, i) for i in range(len(x.rows)))
    if not replicas:
        hold = Plan(stack=x.spec.fleet, decision=Decision.HOLD, reason=NO_METRICS, policy=hold_policy(x))
        return FleetPlan(hold, Moves.none(), ())
    merged = merge_plans(x.spec.fleet, replicas, NO_METRICS)
    if merged.decision is Decision.MIGRATE:
        move = _shape_move(x, merged, replicas)
        return _move_elsewhere(x, move) or move
    if merged.decision is Decision.HOLD:
        plan, moves = region_plan(x, merged)
        return FleetPlan(plan, moves, replicas)
    return FleetPlan(merged, Moves.none(), replicas)


def _replica_plan(x: FleetInputs, i: int) -> Plan:
    row = int(x.rows[i])
    plan = plan_of(x.batch, i, stack=x.spec.fleet, slot=x.slot_of[i], arrays=x.arrays, spec=x.spec,
                   region=x.spec.region, now=x.now, forecast=x.forecast, allowed=x.allowed, model=x.cost,
                   moves_last_day=int(x.state.moves_last_day(x.now)[row]))
    why = Why(int(x.batch.why[i]))
    if why is Why.NO_HISTORY:
        return plan.model_copy(update={"reason": f"{REASONS[Why.NO_HISTORY]}: the model has seen no complete "
                                       f"{x.cost.horizon_h * 60:g}-minute period of this fleet's demand, so "
                                       "confidence is 0 and sculpt holds (keep `sculpt watch` running)"})
    if plan.decision is Decision.HOLD and plan.confidence < x.cost.confidence_floor:
        n = int(np.asarray(x.forecast.samples)[i])
        floor = x.cost.confidence_floor
        return plan.model_copy(update={"reason": f"{plan.reason}; little history: {n} period(s) seen, "
                                       f"confidence {pct(plan.confidence, floor)} is below the {pct(floor)} floor, "
                                       "so only urgent moves are made"})
    return plan


def _shape_move(x: FleetInputs, merged: Plan, replicas: Sequence[Plan]) -> FleetPlan:
    """Every serving slot moves to the largest target any replica needs (none is left short)."""
    a = x.arrays
    moving = np.flatnonzero(x.batch.move)
    big = max((int(x.batch.target[i]) for i in moving), key=lambda t: (a.vcpu[t], a.memory_gib[t], t))
    shape = str(a.names[big])
    lead = min(moving, key=lambda i: (0 if x.batch.urgent[i] else 1, -float(x.batch.net_usd[i])))
    code = Why(int(x.batch.why[lead])).name.lower()
    slots = list(x.slots) or [SlotInfo(x.slot_of[i], str(a.names[int(x.batch.current[i])]), x.spec.region)
                              for i in range(len(x.rows))]
    actions = tuple(Action(kind="resize", slot=s.id, from_shape=s.shape, to_shape=shape, from_region=s.region,
                           to_region=s.region, why=code) for s in slots)
    names = [str(n) for n in a.names]
    price = float(a.price[big])
    delta = sum(price - float(a.price[names.index(s.shape)]) if s.shape in names else 0.0 for s in slots)
    reason = replicas[int(lead)].reason
    if any(int(x.batch.target[i]) != big for i in moving) or len(moving) < len(x.rows):
        reason += f"; every replica moves to {shape}, the largest shape a replica needs"
    plan = merged.model_copy(update={"actions": actions, "reason": reason, "why": code,
                                     "expected_monthly_delta_usd": delta * HOURS_PER_MONTH if math.isfinite(delta)
                                     else 0.0, "figures": replicas[int(lead)].figures,
                                     "policy": replicas[int(lead)].policy})
    return FleetPlan(plan, Moves(np.asarray(x.rows, dtype=np.int64), np.full(len(x.rows), big)), tuple(replicas))


def _move_elsewhere(x: FleetInputs, move: FleetPlan) -> FleetPlan | None:
    """The fleet moves anyway: to a shape at least as large as the planned one in another allowed region,
    when that serves it for less (availability weighted, net of the move). One blue/green move instead of a
    resize now and a region move later; no cooldown or threshold gate (the move is decided, only where is
    asked), but the confidence floor and every mandatory policy rule on the fleet it produces."""
    if not x.moves_regions or x.busy or not move.plan.actions:
        return None
    ranked = _ranked(x)
    if ranked is None:
        return None
    want = x.catalog.shape(str(move.plan.actions[0].to_shape))
    home = next((c for c in ranked if c.shape == want.name and c.region == x.spec.region), None)
    best = next((c for c in ranked if c.region != x.spec.region and _as_large(x, c.shape, want)), None)
    if home is None or best is None or not best.effective_usd < home.effective_usd - 1e-9:
        return None
    target, policy = _gate(x, best)
    if not all(r.passed for r in policy if r.level == "mandatory"):
        return None
    actions, delta, moves = _moves_to(x, best, target)
    gain = home.effective_usd - best.effective_usd
    reason = (f"{move.plan.reason}; {best.shape} in {best.region} serves it for ${gain:.4f} less over "
              f"{x.cost.payback_h:g} h than {want.name} in {x.spec.region} (net of the move, launch availability "
              f"{best.availability:.0%}): one blue/green move")
    plan = move.plan.model_copy(update={"actions": actions, "reason": reason, "why": "region", "policy": policy,
                                        "expected_monthly_delta_usd": delta,
                                        "figures": {**move.plan.figures, "region_gain_usd": gain}})
    return FleetPlan(plan, moves, move.replicas)


def merge_plans(stack: str, plans: Sequence[Plan], fallback_reason: str) -> Plan:
    """One fleet plan from per-replica plans: blocked > migrate > hold; money adds up, confidence is the
    weakest replica's, the distribution is the replicas' average."""
    if not plans:
        return Plan(stack=stack, decision=Decision.HOLD, reason=fallback_reason)
    order = {Decision.BLOCKED: 0, Decision.MIGRATE: 1, Decision.SCALE: 1, Decision.HOLD: 2}
    lead = min(plans, key=lambda p: order[p.decision])
    dist: dict[str, float] = {}
    for p in plans:
        for k, v in p.distribution.items():
            dist[k] = dist.get(k, 0.0) + v / len(plans)
    actions = tuple(a for p in plans for a in p.actions) if lead.decision is Decision.MIGRATE else ()
    return Plan(stack=stack, decision=lead.decision, actions=actions, reason=lead.reason,
                expected_monthly_delta_usd=sum(p.expected_monthly_delta_usd for p in plans)
                if lead.decision is Decision.MIGRATE else 0.0,
                risk=max(p.risk for p in plans), confidence=min(p.confidence for p in plans),
                distribution=dict(sorted(dist.items(), key=lambda kv: -kv[1])), policy=lead.policy,
                urgent=any(p.urgent for p in plans), why=lead.why, figures=lead.figures)


def hold_policy(x: FleetInputs) -> tuple[RuleResult, ...]:
    """The rules on the fleet as it is (a hold changes nothing)."""
    shape = x.spec.shape
    return hold_rules(x.spec, shape, x.catalog.shape(shape).family, x.catalog.price(shape, x.spec.region), x.now)


# -- region moves ---------------------------------------------------------------------------------------------
def busiest(x: FleetInputs) -> Forecast | None:
    """The forecast of the replica with the highest CPU p95 (the one a region's offerings must serve)."""
    if len(x.rows) == 0:
        return None
    p95 = np.asarray(x.forecast.cpu_p95, dtype=np.float64)
    i = int(np.nanargmax(p95)) if np.isfinite(p95).any() else 0

    def g(col: np.ndarray) -> float:
        v = float(np.asarray(col)[i])
        return v if math.isfinite(v) else 0.0

    f = x.forecast
    return Forecast(horizon_s=x.cost.horizon_h * 3600.0, cpu_p50=g(f.cpu_p50), cpu_p95=g(f.cpu_p95), cpu_lo=0.0,
                    cpu_hi=g(f.cpu_hi), mem_p50=g(f.mem_p50), mem_p95=g(f.mem_p95), mem_hi=g(f.mem_hi),
                    confidence=min(max(g(f.confidence), 0.0), 1.0), samples=int(g(f.samples)))


def region_choice(x: FleetInputs) -> tuple[Candidate, Candidate] | None:
    """(best, stay) when another allowed region would serve the busiest replica for less, availability-
    weighted and net of the move's cost (overlap, transfer of ``state_gb``, risk;
    ``sculpt.decide.availability.rank``); None otherwise or with too little history."""
    ranked = _ranked(x)
    if ranked is None:
        return None
    stay = next((c for c in ranked if c.shape == x.spec.shape and c.region == x.spec.region), None)
    if stay is None:
        return None
    # only to a safe shape (as a shape move: breach chance within ``urgent_breach``) or one at least as
    # large as today's: demand above every shape is no reason to pick the cheapest one elsewhere
    now_shape = x.catalog.shape(x.spec.shape)

    def eligible(c: Candidate) -> bool:
        return c.breach <= x.cost.urgent_breach or (_as_large(x, c.shape, now_shape)
                                                     and c.breach <= stay.breach + 1e-9)

    best = next((c for c in ranked if eligible(c)), None)
    if best is None or best.region == x.spec.region \
            or not best.effective_usd < stay.effective_usd - 1e-9:
        return None
    return best, stay


def elsewhere(x: FleetInputs, choice: tuple[Candidate, Candidate]) -> str:
    """The note a holding plan carries when another allowed region would be cheaper."""
    best, stay = choice
    return (f"elsewhere: {best.shape} in {best.region} would cost ${stay.effective_usd - best.effective_usd:.4f} "
            f"less over {x.cost.payback_h:g} h (launch availability {best.availability:.0%}); a region move is "
            f"blue/green: `sculpt morph --region {best.region} --shape {best.shape}`")


def region_plan(x: FleetInputs, hold: Plan) -> tuple[Plan, Moves]:
    """A holding plan, or a region move when one pays and passes the gates of any non-urgent move:
    confidence floor (in ``region_choice``), cooldown since the last move of any replica, the aggressiveness
    threshold on the availability-weighted net gain, and every mandatory policy rule on the fleet it would
    produce. A move that fails a gate stays a note on the hold that says which gate (and its ``why``)."""
    choice = None if x.busy else region_choice(x)
    if choice is None:
        return hold, Moves.none()
    best, stay = choice
    note = elsewhere(x, choice)
    gain = stay.effective_usd - best.effective_usd
    threshold = float(x.cost.threshold_usd(np.asarray(x.catalog.price(x.spec.shape, x.spec.region))))
    figures = {**hold.figures, "region_gain_usd": gain, "region_threshold_usd": threshold}

    def gated(why: Why, what: str) -> tuple[Plan, Moves]:
        return hold.model_copy(update={"reason": f"{hold.reason}; {note} ({what})", "why": why.name.lower(),
                                       "figures": figures}), Moves.none()

    if not x.moves_regions:
        return gated(Why.ADVISORY, f"advisory on engine '{x.spec.engine}'")
    st = x.state
    waited = float(np.min(st.since_last_move(x.now))) if len(st) else math.inf
    if waited < x.cost.cooldown_s:
        return gated(Why.COOLDOWN, "not now: cooling down after the last move")
    if not gain > threshold:
        return gated(Why.THRESHOLD, "not now: the saving does not clear the aggressiveness threshold")
    target, policy = _gate(x, best)
    failed = [r.rule for r in policy if not r.passed and r.level == "mandatory"]
    if failed:
        return gated(Why.POLICY, f"not now: policy blocks it: {', '.join(failed)}")
    actions, delta, moves = _moves_to(x, best, target)
    reason = (f"moving to {best.region} saves ${gain:.4f} per instance over {x.cost.payback_h:g} h net of the "
              f"move (overlap, transfer, risk; launch availability {best.availability:.0%}); blue/green: "
              f"{x.spec.shape} in {x.spec.region} -> {best.shape} in {best.region}")
    plan = Plan(stack=x.spec.fleet, decision=Decision.MIGRATE, actions=actions, reason=reason,
                expected_monthly_delta_usd=delta, risk=hold.risk, confidence=hold.confidence,
                distribution=hold.distribution, policy=policy, urgent=False, why="region", figures=figures)
    return plan, moves


def _ranked(x: FleetInputs) -> list[Candidate] | None:
    """Every (shape, region) the spec allows, ranked for the busiest replica (``rank``); None with a single
    allowed region or too little history to send anyone elsewhere (the confidence floor)."""
    if len(x.spec.allowed_regions) < 2:
        return None
    fc = busiest(x)
    if fc is None or fc.confidence < x.cost.confidence_floor:
        return None
    return rank(x.catalog, x.spec, fc, x.spec.shape, x.spec.region, x.availability, x.now, x.cost)


def _as_large(x: FleetInputs, shape: str, than: Shape) -> bool:
    """``shape`` has at least the vCPUs and the memory of ``than``."""
    s = x.catalog.shape(shape)
    return s.vcpu >= than.vcpu and s.memory_gib >= than.memory_gib


def _gate(x: FleetInputs, best: Candidate) -> tuple[int, tuple[RuleResult, ...]]:
    """``best``'s index in its region's offerings, and every policy rule on the fleet moved there."""
    arrays = x.catalog.arrays(best.region)
    target = [str(n) for n in arrays.names].index(best.shape)
    day = int(np.max(x.state.moves_last_day(x.now))) if len(x.state) else 0
    return target, policy_gate(x.spec, arrays, target, day, x.now, region=best.region)


def _moves_to(x: FleetInputs, best: Candidate, target: int) -> tuple[tuple[Action, ...], float, Moves]:
    """The region move of the whole fleet to ``best``: one action per serving slot, the fleet's monthly
    cost change, and the moves by row (``target`` indexes ``best.region``'s offerings)."""
    slots = list(x.slots) or [SlotInfo(x.spec.fleet, x.spec.shape, x.spec.region)]
    actions = tuple(Action(kind="move", slot=s.id, from_shape=s.shape, to_shape=best.shape, from_region=s.region,
                           to_region=best.region, why="region") for s in slots)
    delta = (float(x.catalog.arrays(best.region).price[target]) - x.catalog.price(x.spec.shape, x.spec.region)) \
        * HOURS_PER_MONTH * len(slots)
    moves = Moves(np.asarray(x.rows, dtype=np.int64), np.full(len(x.rows), target), best.region)
    return actions, delta if math.isfinite(delta) else 0.0, moves
