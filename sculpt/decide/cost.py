"""The cost model of a decision: breach probabilities from forecast quantiles, and the settings that weigh
money against SLO risk. Pure numpy; every function works on one stream or many (rows) at once.

Demand over the horizon is read as a log-normal fitted to the forecast's p50 and p95 of the horizon's peak:
cheap, always positive, right-skewed like real load. ``breach_probability`` gives P(peak > capacity) for every
(stream, shape) pair; CPU and memory are treated as independent.

>>> import numpy as np
>>> p = breach_probability(np.array([1.0]), np.array([2.0]), np.array([1.0, 2.0, 4.0]))
>>> [round(float(x), 3) for x in p[0]]
[0.5, 0.05, 0.001]
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from sculpt.domain.arrays import FloatArray

if TYPE_CHECKING:
    from sculpt.domain.spec import FleetSpec

Z95 = 1.6448536269514722  # standard normal 95th percentile
SIGMA_MIN = 0.05  # a forecast is never treated as exact: at least ±5 % log-spread
SIGMA_MAX = 1.0  # p95/p50 at most e^1.645 ≈ 5.2: an idle stream's p50 ≈ 0 must not make the tail unbounded
FLOOR = 1e-6  # demand below this (cores, GiB) counts as zero


@dataclass(frozen=True)
class CostModel:
    """The constants of the cost/benefit formula (units in the names). Why each default:

    - ``horizon_h`` 1 h: the forecast horizon the breach probabilities are about (the models' period).
    - ``slo_penalty_x_price`` 2: an hour short of CPU costs what two hours of running the service
      *properly* cost — on the cheapest shape whose breach chance is below 5 % (the stream's reference
      price). Relative, so the trade-off is the same on a $0.08/h and a $8/h instance, on any catalog.
    - ``slo_penalty_usd_per_h`` 0: an absolute floor under that penalty ($/h), for services whose outage
      costs more than their instances.
    - ``oom_weight`` 6: running out of memory kills the process (an outage and a restart), running out of
      CPU only slows it: a memory breach weighs six CPU breaches (12 hours of the service's value).
      On the Bitbrains replay, CPU x1.5-3 with memory at x12 all land between 1.26 and 1.29 x oracle with
      under-provisioning at half the reactive baseline's; an absolute $0.5/h let the 8-core VMs run short
      1 % of the time; x12 on CPU halves under-provisioning again for 15 % more cost.
    - ``payback_h`` 4 h: the rates of the next horizon (price + breach penalty) are assumed to hold this
      long when weighing a move against its one-off cost: a move must pay for itself within 4 h. One
      horizon (1 h) never leaves a slightly-too-big shape; a day chases savings no forecast vouches for.
    - ``overlap_s`` 600 s: blue/green runs both shapes while green boots and syncs; billed at the new price.
    - ``transfer_usd_per_gb`` / ``state_gb``: only across regions (state moved over the network).
    - ``pause_usd``: what the short LB pause costs per move (lost or delayed requests); 0 by default.
    - ``outage_s`` 0: seconds a move leaves the service down, charged at the stream's SLO penalty rate (a
      breach of the whole service for that long). 0 where the LB holds requests; ``cost_model_for`` sets it
      for a cloud ``volume`` hand-over, where an EBS volume attaches to one instance at a time and an ALB
      cannot hold requests (``sculpt.migrate.cloud``).
    - ``risk_usd`` $0.05: charged per move, scaled by (1 - confidence): unsure forecasts must save more.
    - ``aggressiveness`` 0.5: 0 moves only to prevent a breach, 1 chases every saving. The net gain a
      non-urgent move must clear is ``(1 - a) / a * min_gain_fraction`` of the current shape's payback cost
      (5 % at 0.5, none at 1, infinite at 0).
    - ``confidence_floor`` 0.2: below it only urgent upsizes happen.
    - ``cooldown_s`` 3600: at most one non-urgent move per stream per hour (hysteresis against flapping).
    - ``urgent_breach`` 0.10: when the current shape's breach chance exceeds this, upsizing is urgent and
      skips threshold, confidence floor and cooldown (policy still applies).
    - ``utilisation_cap`` 1.0: capacity counted is this share of a shape (the spec's ``slo.max_utilisation``
      live; 1.0 in replay, where under-provisioning means demand above the whole shape).
    """

    horizon_h: float = 1.0
    slo_penalty_x_price: float = 2.0
    slo_penalty_usd_per_h: float = 0.0
    oom_weight: float = 6.0
    payback_h: float = 4.0
    overlap_s: float = 600.0
    transfer_usd_per_gb: float = 0.02
    state_gb: float = 0.0
    pause_usd: float = 0.0
    outage_s: float = 0.0
    risk_usd: float = 0.05
    aggressiveness: float = 0.5
    min_gain_fraction: float = 0.05
    confidence_floor: float = 0.2
    cooldown_s: float = 3600.0
    urgent_breach: float = 0.10
    utilisation_cap: float = 1.0

    def risk_weight(self) -> float:
        """How much a breach weighs against a saving, from the aggressiveness: 1 at 0.5 (the breach penalty
        as set), ``(1 - a) / a`` around it, bounded to [1/8, 8] — so the knob trades cost for risk in the
        choice of shape, not only in whether a saving clears the threshold.

        >>> [round(CostModel(aggressiveness=a).risk_weight(), 3) for a in (0.0, 0.2, 0.5, 0.8, 1.0)]
        [8.0, 4.0, 1.0, 0.25, 0.125]
        """
        a = min(max(self.aggressiveness, 0.0), 1.0)
        if a <= 0.0:
            return RISK_WEIGHT_MAX
        return min(max((1.0 - a) / a, 1.0 / RISK_WEIGHT_MAX), RISK_WEIGHT_MAX)

    def threshold_usd(self, price: np.ndarray) -> np.ndarray:
        """The net gain (USD over the payback window) a non-urgent move away from a shape costing ``price``
        $/h must clear: ``gain_threshold`` of its payback cost (an unknown price counts as 0).

        >>> round(float(CostModel(aggressiveness=0.5).threshold_usd(np.array(0.1))), 6)  # 5 % of 4 h at $0.1/h
        0.02
        """
        p = np.asarray(price, dtype=np.float64)
        out: np.ndarray = self.gain_threshold() * np.where(np.isfinite(p), p, 0.0) * self.payback_h
        return out

    def gain_threshold(self) -> float:
        """Share of the current horizon cost a non-urgent move must save net (inf at aggressiveness 0)."""
        a = min(max(self.aggressiveness, 0.0), 1.0)
        if a <= 0.0:
            return float("inf")
        return (1.0 - a) / a * self.min_gain_fraction


RISK_WEIGHT_MAX = 8.0
DEFAULT_COST = CostModel()


def _norm_sf(z: np.ndarray) -> FloatArray:
    """P(Z > z) for a standard normal (Abramowitz–Stegun 7.1.26 erfc, |error| < 1.5e-7): no scipy needed.

    Computed in float32 (in place, one temporary): probabilities need ~1e-6, and 10,000 streams × 60
    shapes per tick is the hot loop of ``bench tick``.
    """
    x = np.abs(z, dtype=np.float32)
    x *= np.float32(1.0 / np.sqrt(2.0))
    t = np.float32(0.3275911) * x
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = np.float32(1.061405429) * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(x, out=x)
    np.negative(x, out=x)
    np.exp(x, out=x)
    poly *= x
    poly *= np.float32(0.5)
    out: FloatArray = np.where(z >= 0, poly, np.float32(1.0) - poly).astype(np.float64)
    return out


def breach_probability(p50: np.ndarray, p95: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """P(peak demand > capacity) for each stream (rows) and shape (columns), log-normal from p50/p95.

    Non-finite quantiles give probability NaN (the caller holds); zero demand never breaches.
    """
    p50 = np.asarray(p50, dtype=np.float64)
    p95 = np.maximum(np.asarray(p95, dtype=np.float64), p50)
    cap = np.asarray(capacity, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log95 = np.log(np.maximum(p95, FLOOR))
        mu = np.maximum(np.log(np.maximum(p50, FLOOR)), log95 - Z95 * SIGMA_MAX)
        sigma = np.clip((log95 - mu) / Z95, SIGMA_MIN, SIGMA_MAX)
        z = (np.log(np.maximum(cap, FLOOR))[None, :] - mu[:, None]) / sigma[:, None]
    p = _norm_sf(z)
    p = np.where((p95 <= FLOOR)[:, None], 0.0, p)
    bad = ~(np.isfinite(p50) & np.isfinite(p95))
    return np.where(bad[:, None], np.nan, p)


def joint_breach(cpu: np.ndarray, mem: np.ndarray) -> np.ndarray:
    """P(CPU or memory breaches), treating them as independent."""
    return 1.0 - (1.0 - cpu) * (1.0 - mem)


def weighted_breach(cpu: np.ndarray, mem: np.ndarray, oom_weight: float) -> np.ndarray:
    """The breach term of the expected cost: P(CPU breach) + oom_weight·P(memory breach)."""
    return cpu + oom_weight * mem


VOLUME_OUTAGE_S = 120.0
"""A ``volume`` hand-over on a cloud: blue stops, the volume detaches and attaches to green, green mounts it,
starts its app and passes two 10-second health checks — about two minutes without service (an estimate;
not measured on a real cloud)."""


def cost_model_for(spec: FleetSpec, base: CostModel | None = None) -> CostModel:
    """The decision's constants for a live fleet: the spec's aggressiveness and utilisation cap, and the
    outage a cloud ``volume`` hand-over causes (charged to every move at the SLO penalty rate)."""
    cm = replace(base or DEFAULT_COST, aggressiveness=spec.aggressiveness, utilisation_cap=spec.slo.max_utilisation)
    if spec.engine == "pulumi" and spec.app.state_sync.strategy == "volume":
        cm = replace(cm, outage_s=max(cm.outage_s, VOLUME_OUTAGE_S))
    return cm
