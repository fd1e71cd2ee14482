"""From predicted demand to a probability over the catalog's shapes.

Why it exists: the decision needs "how likely is each shape to be the right one", not a point forecast.
For each stream the forecast's quantiles (5 %, 50 %, 95 % of the next period's CPU and memory demand)
define a piecewise-linear quantile function; ``levels`` evenly spaced quantile levels give equally likely
demand scenarios (CPU and memory taken at the same level: a busy hour is busy in both). Each scenario,
grown by the profile's headroom, picks the cheapest offering that meets it under the spec's constraints
(GPUs, network, storage, families); the share of scenarios won by a shape is its probability. Scenarios
no allowed shape can meet go to the largest allowed shape (the best sculpt can do), so probabilities
always sum to 1. The confidence is the forecast's (interval width, calibration, history length).

All of it is vectorised: a (distinct vCPU × distinct memory) table of cheapest fits is built once per
catalog region and constraint set, then every scenario is two ``searchsorted`` calls and a lookup.

>>> from sculpt.domain.catalog import Catalog, Offering, Shape
>>> offs = [Offering(shape=Shape(name=f"s{c}", family="s", vcpu=c, memory_gib=2 * c), region="r",
...                  price_hour=0.05 * c) for c in (1, 2, 4)]
>>> arr = Catalog("demo", offs).arrays("r")
>>> import numpy as np
>>> from sculpt.forecast.base import ForecastBatch
>>> one = lambda v: np.array([v])
>>> fb = ForecastBatch(["a"], 3600, one(1.0), one(1.5), one(0.5), one(1.5), one(1.0), one(1.0), one(1.0),
...                    one(1.0), one(0.8), one(48))
>>> d = shape_distribution(fb, arr, headroom=0.2)[0]
>>> round(sum(d.probabilities.values()), 6), d.mode()
(1.0, 's2')
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sculpt.domain.arrays import FloatArray
from sculpt.domain.catalog import CatalogArrays
from sculpt.domain.errors import ConfigError
from sculpt.domain.forecast import ShapeDistribution
from sculpt.forecast.base import ForecastBatch

# Extra capacity each profile keeps above the predicted demand (share of demand), CPU and memory.
PROFILE_HEADROOM: dict[str, tuple[float, float]] = {
    "low-latency": (0.5, 0.25),  # latency grows fast near saturation: keep CPU well below it
    "high-throughput": (0.25, 0.15),
    "batch": (0.05, 0.1),  # a slower batch costs little; an OOM still kills it
    "memory-bound": (0.2, 0.35),
    "general": (0.2, 0.2),
}

_Q_KNOTS = np.array([0.05, 0.5, 0.95])


def quantile_grid(lo: np.ndarray, mid: np.ndarray, hi: np.ndarray, levels: np.ndarray) -> FloatArray:
    """Demand at ``levels`` from three quantiles (5 %, 50 %, 95 %), linear between and beyond the knots.

    Non-finite inputs count as 0; the result is non-negative and non-decreasing along the levels.
    """
    lo, mid, hi = (np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=0.0, neginf=0.0) for v in (lo, mid, hi))
    mid = np.maximum(mid, lo)
    hi = np.maximum(hi, mid)
    u = np.asarray(levels, np.float64)[None, :]
    s_lo = ((mid - lo) / (_Q_KNOTS[1] - _Q_KNOTS[0]))[:, None]
    s_hi = ((hi - mid) / (_Q_KNOTS[2] - _Q_KNOTS[1]))[:, None]
    below: FloatArray = mid[:, None] + (u - _Q_KNOTS[1]) * s_lo
    above: FloatArray = mid[:, None] + (u - _Q_KNOTS[1]) * s_hi
    return np.maximum(np.where(u < _Q_KNOTS[1], below, above), 0.0)


def _allowed(arrays: CatalogArrays, gpus: int, network_gbps: float, storage: str | None,
             families: tuple[str, ...] | None) -> np.ndarray:
    ok = arrays.gpus >= gpus
    if network_gbps > 0:
        net = np.array([o.shape.network_gbps or 0.0 for o in arrays.offerings], dtype=np.float64)
        ok &= net >= network_gbps
    if storage and storage != "none":
        ok &= np.array([o.shape.storage == storage for o in arrays.offerings], dtype=bool)
    if families:
        ok &= np.isin(arrays.families, np.array(families, dtype=object))
    return ok


def _fit_table(arrays: CatalogArrays, key: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Cheapest allowed offering for each (vCPU ≥ v_i, memory ≥ m_j) pair, -1 if none; and the largest."""
    cache: dict[tuple[Any, ...], Any] = arrays.__dict__.setdefault("_sculpt_fit_tables", {})
    if key in cache:
        return cache[key]  # type: ignore[no-any-return]
    allowed = _allowed(arrays, *key)
    if not allowed.any():
        raise ConfigError("no shape in this catalog region meets the spec's GPU, network, storage or family "
                          "constraints", "relax the constraints in sculpt.yaml or allow more regions")
    vc = np.unique(arrays.vcpu[allowed])
    mm = np.unique(arrays.memory_gib[allowed])
    ok = (allowed[None, None, :] & (arrays.vcpu[None, None, :] >= vc[:, None, None])
          & (arrays.memory_gib[None, None, :] >= mm[None, :, None]))
    table = np.where(ok.any(axis=2), ok.argmax(axis=2), -1)
    cand = np.flatnonzero(allowed)
    largest = int(cand[np.lexsort((arrays.price[cand], -arrays.memory_gib[cand], -arrays.vcpu[cand]))[0]])
    cache[key] = (vc, mm, table, largest)
    return vc, mm, table, largest


def shape_probabilities(
    fb: ForecastBatch,
    arrays: CatalogArrays,
    *,
    headroom: float | tuple[float, float] = 0.2,
    gpus: int = 0,
    network_gbps: float = 0.0,
    storage: str | None = None,
    families: tuple[str, ...] | None = None,
    levels: int = 64,
) -> np.ndarray:
    """Array ``(len(fb), len(arrays))``: P(offering j is the cheapest meeting stream i's demand); rows sum to 1."""
    h_cpu, h_mem = (headroom, headroom) if isinstance(headroom, int | float) else headroom
    vc, mm, table, largest = _fit_table(arrays, (int(gpus), float(network_gbps), storage,
                                                 tuple(families) if families else None))
    u = (np.arange(levels) + 0.5) / levels
    cpu = quantile_grid(fb.cpu_lo, fb.cpu_p50, fb.cpu_p95, u) * (1.0 + h_cpu)
    mem = quantile_grid(fb.mem_lo, fb.mem_p50, fb.mem_p95, u) * (1.0 + h_mem)
    ic = np.searchsorted(vc, cpu, side="left")
    im = np.searchsorted(mm, mem, side="left")
    fits = (ic < vc.size) & (im < mm.size)
    pick = np.where(fits, table[np.minimum(ic, vc.size - 1), np.minimum(im, mm.size - 1)], -1)
    pick = np.where(pick < 0, largest, pick)
    n = len(fb)
    out = np.zeros((n, len(arrays)))
    np.add.at(out, (np.repeat(np.arange(n), levels), pick.ravel()), 1.0 / levels)
    return out


def shape_distribution(
    fb: ForecastBatch,
    arrays: CatalogArrays,
    *,
    headroom: float | tuple[float, float] = 0.2,
    gpus: int = 0,
    network_gbps: float = 0.0,
    storage: str | None = None,
    families: tuple[str, ...] | None = None,
    levels: int = 64,
) -> list[ShapeDistribution]:
    """One ``ShapeDistribution`` per stream of ``fb`` (shapes with zero probability are left out)."""
    p = shape_probabilities(fb, arrays, headroom=headroom, gpus=gpus, network_gbps=network_gbps,
                            storage=storage, families=families, levels=levels)
    names = arrays.names
    conf = np.clip(np.nan_to_num(np.asarray(fb.confidence, np.float64), nan=0.0), 0.0, 1.0)
    out = []
    for i in range(p.shape[0]):
        nz = np.flatnonzero(p[i])
        probs: dict[str, float] = {}
        for j in nz:  # the same shape name can appear once per region only; sum defensively
            probs[str(names[j])] = probs.get(str(names[j]), 0.0) + float(p[i, j])
        out.append(ShapeDistribution(probabilities=probs, confidence=float(conf[i])))
    return out


def headroom_for(profile: str) -> tuple[float, float]:
    """The (CPU, memory) headroom of a profile; ``general``'s for unknown names."""
    return PROFILE_HEADROOM.get(profile, PROFILE_HEADROOM["general"])
