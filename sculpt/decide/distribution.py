"""The one shape distribution: how likely each shape is to be the cheapest that fits the forecast.

Why it exists: the Plan (``plan_of``), the API, ``sculpt status`` and the live view all say which shapes
fit; they read it from here, so there is one formula. For stream ``i`` and offering ``j`` of a region
(``CatalogArrays``, sorted by price), with ``cap`` the SLO's utilisation cap (``CostModel.utilisation_cap``)::

    fit[i, j]  = (1 - P(cpu > cap·vcpu_j)) · (1 - P(mem > cap·memory_j))      (``fit_probabilities``)
    dist[i, j] ∝ fit[i, j] · Π_{k cheaper than j} (1 - fit[i, k])            (``shape_distribution``)

The breach chances are ``sculpt.decide.cost.breach_probability`` (a log-normal through the forecast's p50
and the upper quantile the decision trusts, ``upper(p95, hi)``) combined by ``joint_breach`` — the numbers
the decision itself weighs. A NaN CPU forecast fits nowhere, a NaN memory forecast constrains nothing.
``dist`` is P(shape j is the cheapest that fits), fits treated as independent, over the allowed shapes,
normalised to 1 and cut to the ``top`` most likely. ``cheapest_fitting`` gives, per stream, the cheapest
allowed shape that fits with at least a given probability (the ``sculpt status`` bounds: 5 %, 50 %, 95 %).

>>> from sculpt.domain.catalog import Catalog, Offering, Shape
>>> offs = [Offering(shape=Shape(name=f"s{c}", family="s", vcpu=c, memory_gib=2 * c), region="r",
...                  price_hour=0.05 * c) for c in (1, 2, 4)]
>>> arr = Catalog("demo", offs).arrays("r")
>>> one = lambda v: np.array([float(v)])
>>> fc = Fit(one(1.2), one(1.6), one(1.6), one(1.0), one(1.2), one(1.2))  # p50, p95, hi of CPU then memory
>>> fit = fit_probabilities(arr, fc, 0.8)  # s2 at 80 % holds 1.6 cores: the CPU p95
>>> [round(float(p), 2) for p in fit[0]]
[0.01, 0.95, 1.0]
>>> {k: round(v, 2) for k, v in shape_distribution(arr, fc, 0, allowed=None, cap=0.8).items()}
{'s2': 0.94, 's4': 0.05, 's1': 0.01}
>>> [str(arr.names[cheapest_fitting(fit, None, level)[0][0]]) for level in (0.05, 0.5, 0.99)]
['s2', 's2', 's4']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sculpt.decide.cost import breach_probability, joint_breach
from sculpt.domain.catalog import CatalogArrays


class FitColumns(Protocol):
    """The forecast columns a fit reads (``ForecastBatch``, ``decision.Columns`` and the nowcast fit):
    p50, the model's p95 and its calibrated interval's top, of CPU cores and memory GiB; one row a stream."""

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


@dataclass(frozen=True)
class Fit:
    """A plain ``FitColumns`` (examples, tests, a demand typed in by hand)."""

    cpu_p50: np.ndarray
    cpu_p95: np.ndarray
    cpu_hi: np.ndarray
    mem_p50: np.ndarray
    mem_p95: np.ndarray
    mem_hi: np.ndarray


def upper(p95: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The upper quantile the decision trusts: the larger of the model's p95 and its calibrated interval's
    top (a model's own quantile can be overconfident; the conformal bound is checked against outcomes)."""
    return np.fmax(np.asarray(p95, dtype=np.float64), np.asarray(hi, dtype=np.float64))


def fit_probabilities(arrays: CatalogArrays, forecast: FitColumns, cap: float,
                      rows: slice | np.ndarray | None = None) -> np.ndarray:
    """``(N, S)``: P(shape j holds stream i's peak CPU and memory within ``cap`` of its size).

    ``rows`` picks the streams (all by default). Non-increasing when demand scales up, non-decreasing in
    the shape's size; in [0, 1], never NaN.
    """
    r = slice(None) if rows is None else rows

    def col(v: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(v, dtype=np.float64)[r])

    c95 = upper(col(forecast.cpu_p95), col(forecast.cpu_hi))
    m95 = upper(col(forecast.mem_p95), col(forecast.mem_hi))
    pc = np.nan_to_num(breach_probability(col(forecast.cpu_p50), c95, arrays.vcpu * cap), nan=1.0)
    pm = np.nan_to_num(breach_probability(col(forecast.mem_p50), m95, arrays.memory_gib * cap), nan=0.0)
    out: np.ndarray = 1.0 - joint_breach(pc, pm)
    return out


def cheapest_distribution(arrays: CatalogArrays, p_fit: np.ndarray, allowed: np.ndarray | None,
                          top: int = 5) -> dict[str, float]:
    """P(shape is the cheapest that fits) from one stream's ``p_fit`` (S,), shapes in price order, fits
    treated as independent; the ``top`` most likely allowed shapes (``{}`` when none can fit)."""
    q = p_fit if allowed is None else np.where(allowed, p_fit, 0.0)
    none_before = np.concatenate([[1.0], np.cumprod(1.0 - q)[:-1]])
    w = q * none_before
    s = w.sum()
    if not np.isfinite(s) or s <= 0:
        return {}
    order = np.argsort(-w, kind="stable")[:top]
    return {str(arrays.names[i]): float(w[i] / s) for i in order if w[i] > 0}


def shape_distribution(arrays: CatalogArrays, forecast: FitColumns, i: int, *, allowed: np.ndarray | None,
                       cap: float, top: int = 5) -> dict[str, float]:
    """Stream ``i``'s distribution: shape name -> P(it is the cheapest allowed shape that fits)."""
    return cheapest_distribution(arrays, fit_probabilities(arrays, forecast, cap, slice(i, i + 1))[0], allowed,
                                 top)


def cheapest_fitting(p_fit: np.ndarray, allowed: np.ndarray | None, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per stream (row of ``p_fit``, shapes in price order): the index of the cheapest allowed shape whose
    fit probability is at least ``level``, and whether one is. Where none is, the allowed shape most likely
    to fit (the cheapest of those; the dearest when none can fit at all: the most capacity money buys),
    flagged False; -1 when nothing is allowed. A higher ``level`` never gives a cheaper shape."""
    p = np.atleast_2d(np.asarray(p_fit, dtype=np.float64))
    ok_shape = np.ones(p.shape[1], dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if not ok_shape.any():
        return np.full(p.shape[0], -1, dtype=np.int64), np.zeros(p.shape[0], dtype=bool)
    meets = (p >= level) & ok_shape[None, :]
    best = np.where(ok_shape[None, :], p, -1.0).argmax(axis=1)
    dearest = int(np.flatnonzero(ok_shape)[-1])
    best = np.where(p[np.arange(p.shape[0]), best] > 0, best, dearest)
    found = meets.any(axis=1)
    return np.where(found, meets.argmax(axis=1), best).astype(np.int64), found
