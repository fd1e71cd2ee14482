"""Where a shape can actually be launched: availability learned online, and the cross-region ranking using it.

Why it exists: ``decide_many`` picks among one region's shapes as if every shape could always be launched.
Clouds run out of capacity (``InsufficientInstanceCapacity``, ``ZONE_RESOURCE_POOL_EXHAUSTED``), and a plan
that keeps choosing a shape nobody can launch never converges. This module keeps, per (shape, region), a
Beta-Bernoulli estimate of "a launch succeeds", learned from every launch outcome the orchestrator reports,
with old evidence decaying (half-life ``HALF_LIFE_S``) so a shape that ran out yesterday is tried again. Its
outputs are passed *into* the pure decision, never the other way round:

* ``Availability.mask`` — shapes whose availability is below ``MIN_AVAILABILITY`` are discounted (masked
  out of the candidates; the current shape always stays);
* ``fallbacks`` — after a failed launch, the next-best candidates (at least the resources asked for,
  cheapest first, likely to launch);
* ``rank`` — every allowed (shape, region) by availability-weighted expected cost, for the geographic
  choice among the spec's regions::

      effective(c) = a(c)·(expected(c) + migration(c)) + (1 - a(c))·(expected(current) + attempt_usd)

  i.e. with probability ``a(c)`` the move happens; otherwise the fleet stays where it is and the attempt
  cost was paid. Rejected: masking alone (a 51 %-available shape would count as certain) and dividing by
  ``a`` (explodes near 0).

Pure: no clock reads, no I/O; ``now`` is a parameter and every update returns a new value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sculpt.decide.cost import DEFAULT_COST, CostModel, breach_probability, joint_breach, weighted_breach
from sculpt.decide.decision import family_mask, net_gain, slo_penalty
from sculpt.decide.distribution import upper
from sculpt.domain.catalog import Catalog, CatalogArrays
from sculpt.domain.forecast import Forecast
from sculpt.domain.spec import FleetSpec

PRIOR_OK = 9.0  # prior pseudo-launches that succeeded: an unknown shape starts at 90 % available
PRIOR_FAIL = 1.0
HALF_LIFE_S = 6 * 3600.0  # evidence halves every 6 h: capacity shortages are usually hours, not weeks
MIN_AVAILABILITY = 0.5  # below this a shape is not a candidate (it would fail more often than not)
ATTEMPT_USD = 0.01  # what a failed launch costs (API calls, a green that never came up, time)

CAPACITY_MARKERS = ("insufficientinstancecapacity", "insufficient capacity", "capacity", "zone_resource_pool_exhausted",
                    "resource_exhausted", "stockout", "not available in", "quota", "instancelimitexceeded")


def is_capacity_error(message: str) -> bool:
    """Does a launch failure say the cloud (or this machine) had no room for the shape?

    >>> is_capacity_error("InsufficientInstanceCapacity: We currently do not have sufficient m6i.large capacity")
    True
    >>> is_capacity_error("health check failed")
    False
    """
    m = message.lower()
    return any(k in m for k in CAPACITY_MARKERS)


@dataclass(frozen=True)
class Evidence:
    ok: float = 0.0
    fail: float = 0.0
    t: float = 0.0

    def decayed(self, now: float, half_life_s: float) -> Evidence:
        if not math.isfinite(now) or now <= self.t or half_life_s <= 0:
            return self
        f = 0.5 ** ((now - self.t) / half_life_s)
        return Evidence(self.ok * f, self.fail * f, now)


@dataclass(frozen=True)
class Availability:
    """P(a launch of ``shape`` in ``region`` succeeds), learned from outcomes. Immutable."""

    evidence: Mapping[tuple[str, str], Evidence] = field(default_factory=dict)
    half_life_s: float = HALF_LIFE_S

    def p(self, shape: str, region: str, now: float) -> float:
        e = self.evidence.get((shape, region), Evidence(t=now)).decayed(now, self.half_life_s)
        return (PRIOR_OK + e.ok) / (PRIOR_OK + PRIOR_FAIL + e.ok + e.fail)

    def record(self, shape: str, region: str, ok: bool, now: float) -> Availability:
        e = self.evidence.get((shape, region), Evidence(t=now)).decayed(now, self.half_life_s)
        new = Evidence(e.ok + (1.0 if ok else 0.0), e.fail + (0.0 if ok else 1.0), max(e.t, now))
        return Availability({**self.evidence, (shape, region): new}, self.half_life_s)

    def vector(self, arrays: CatalogArrays, region: str, now: float) -> np.ndarray:
        return np.array([self.p(str(n), region, now) for n in arrays.names], dtype=np.float64)

    def mask(self, arrays: CatalogArrays, region: str, now: float, current: int | None = None,
             floor: float = MIN_AVAILABILITY) -> np.ndarray:
        """Candidates likely enough to launch; the running shape always stays a candidate."""
        m = self.vector(arrays, region, now) >= floor
        if current is not None:
            m[current] = True
        return m


def fallbacks(arrays: CatalogArrays, target: int, availability: Availability, region: str, now: float,
              allowed: np.ndarray | None = None, exclude: Sequence[int] = ()) -> list[int]:
    """After ``target`` failed to launch: shapes with at least its CPU and memory, cheapest first, likely to
    launch, never one in ``exclude``."""
    ok = (arrays.vcpu >= arrays.vcpu[target]) & (arrays.memory_gib >= arrays.memory_gib[target])
    ok &= availability.vector(arrays, region, now) >= MIN_AVAILABILITY
    if allowed is not None:
        ok &= np.asarray(allowed, dtype=bool)
    ok[list(exclude) + [target]] = False
    return [int(i) for i in np.flatnonzero(ok)]  # arrays are sorted by price


@dataclass(frozen=True)
class Candidate:
    shape: str
    region: str
    expected_usd: float  # price + breach penalty over the payback window, plus migration if it moves
    availability: float
    effective_usd: float  # availability-weighted (see the module docstring)
    breach: float = 0.0  # the chance the forecast demand breaches this shape (CPU or memory)


def rank(catalog: Catalog, spec: FleetSpec, forecast: Forecast, current_shape: str, current_region: str,
         availability: Availability, now: float, model: CostModel = DEFAULT_COST) -> list[Candidate]:
    """Every (shape, region) the spec allows, best first. Non-finite forecasts or prices rank last."""
    cur_arrays = catalog.arrays(current_region)
    names = [str(n) for n in cur_arrays.names]
    cur = names.index(current_shape)
    c50 = np.array([forecast.cpu_p50])
    c95 = upper(np.array([forecast.cpu_p95]), np.array([forecast.cpu_hi]))
    m50 = np.array([forecast.mem_p50])
    m95 = upper(np.array([forecast.mem_p95]), np.array([forecast.mem_hi]))
    conf = np.array([forecast.confidence])

    def breach(arrays: CatalogArrays) -> tuple[np.ndarray, np.ndarray]:
        cap = model.utilisation_cap
        pc = np.nan_to_num(breach_probability(c50, c95, arrays.vcpu * cap), nan=1.0)
        pm = np.nan_to_num(breach_probability(m50, m95, arrays.memory_gib * cap), nan=0.0)
        return pc, pm

    # a breach costs the same wherever the fleet runs: the home region's reference (its cheapest allowed
    # shape that covers the forecast), as in ``decide_many``
    home_pc, home_pm = breach(cur_arrays)
    home_ok = family_mask(cur_arrays, spec.families)
    penalty = slo_penalty(cur_arrays.price, np.where(home_ok[None, :], joint_breach(home_pc, home_pm), 1.0), model, 1)

    def expected(arrays: CatalogArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pc, pm = breach(arrays)
        exp, _, mig = net_gain(arrays.price, weighted_breach(pc, pm, model.oom_weight), np.array([0]), conf, model,
                               penalty=penalty)
        return exp[0], mig[0], joint_breach(pc, pm)[0]

    cur_exp, _, _ = expected(cur_arrays)
    stay = float(cur_exp[cur])
    out: list[Candidate] = []
    regions = [r for r in spec.allowed_regions if r in catalog.regions()]
    for region in regions:
        arrays = catalog.arrays(region)
        allowed = family_mask(arrays, spec.families)
        exp, mig, p = expected(arrays)
        transfer = model.transfer_usd_per_gb * model.state_gb if region != current_region else 0.0
        for i, name in enumerate(arrays.names):
            if not allowed[i]:
                continue
            here = str(name) == current_shape and region == current_region
            total = float(exp[i]) if here else float(exp[i] + mig[i] + transfer)
            a = 1.0 if here else availability.p(str(name), region, now)
            eff = total if here else a * total + (1.0 - a) * (stay + ATTEMPT_USD)
            if not math.isfinite(eff):
                eff = math.inf
            out.append(Candidate(str(name), region, total, a, eff, float(p[i])))
    out.sort(key=lambda c: (c.effective_usd, c.expected_usd, c.region, c.shape))
    return out
