"""The river model: online quantile regression of the next period's demand, one model per profile.

Why it exists: it learns from every closed period of every stream of a profile, online, in microseconds,
and needs no pre-training. Design:

* **Residual target on persistence.** The regressors predict ``(y_next - y_last) / scale``: with zero
  weights the model *is* last-value (the strong baseline on VM traces) and learning only ever adds the
  corrections the data supports (mean reversion after a burst, the daily cycle, memory trends).
* **Quantile regression.** ``river.linear_model.LinearRegression`` with ``river.optim.losses.Quantile``
  at 0.5 (the point forecast) and 0.95 (the upper quantile), for CPU and for memory, on the features of
  ``sculpt.forecast.features`` (lags, rolling statistics, slots, network/disk, calendar), already divided
  by the stream's scale (target scaling).
* **Intervals**: the engine's adaptive split-conformal band around the median (per stream, with a profile
  pool for young streams); the profile-wide band comes from ``river.conf.RegressionJackknife`` wrapped
  around a twin of the median regressor and is exposed as ``profile_interval``.
* **Drift.** Page-Hinkley tests on each stream's relative residuals (the test of
  ``river.drift.PageHinkley``, vectorised over streams): two-sided on the residual (the model became
  biased) and upward on its magnitude (the stream became noisier than its scale says). On an alarm the
  stream's scale is reset to its latest level and its per-stream median correction learns 5x faster for
  a day. The threshold is high on purpose: on Bitbrains, reacting often (threshold 4: 1,436 alarms)
  cost 4 % of MAE; at 20 (about 160 alarms in 123k periods) the cost is under 1 %, and the anchor on
  the freshest reading already absorbs plain level shifts within one period.
* **Bounded work.** Learning takes at most ``learn_budget`` rows per tick (a seeded random subset when a
  whole fleet's periods close together); prediction reads the regressors' weights and is one matrix
  product for every closing stream, so a tick costs the same for 60 or 10,000 streams' predictions.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.forecast.engine import PeriodPredictor
from sculpt.forecast.features import NAMES, extract

PH_DELTA = 0.1  # Page-Hinkley tolerance (relative units: 10 % of the stream's level)
PH_LAMBDA = 20.0  # alarm threshold (relative units summed over periods): rare on purpose, see docs
CLEAR_RESIDUALS_ON_DRIFT = False
RESET_ON_DRIFT = True
PH_MIN = 12  # periods a stream's test needs before it may alarm
BOOST_PERIODS = 24  # periods of faster per-stream adaptation after a drift
BIAS_LR = 0.01  # step of the per-stream median correction (relative units)
TARGET_CLIP = 10.0


def _regressor(q: float, lr: float) -> Any:
    from river import linear_model, optim

    return linear_model.LinearRegression(
        optimizer=optim.SGD(lr), loss=optim.losses.Quantile(q), intercept_lr=lr, l2=0.0, clip_gradient=5.0
    )


class RiverQuantile(PeriodPredictor):
    """Shared per-profile river quantile regressors + per-stream scale, bias and drift state."""

    name = "river"
    _model_fields = ("regs", "jack", "X_last", "A_last", "bias", "boost", "ph", "drifts", "learn_budget", "prior",
                     "anchor", "weighted")

    def __init__(self, *, learn_budget: int = 256, lr: float = 1e-4, prior: Any = None, anchor: str = "tail",
                 weighted: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        from river import conf

        self.regs = {k: _regressor(q, lr) for k, q in (("c50", 0.5), ("c95", 0.95), ("m50", 0.5), ("m95", 0.95))}
        self.jack = conf.RegressionJackknife(_regressor(0.5, lr), confidence_level=0.9)
        self.learn_budget = int(learn_budget)
        self.anchor = anchor
        self.weighted = weighted
        if isinstance(prior, str | Path):
            from sculpt.forecast.prior_model import load_prior

            prior = load_prior(prior)
        self.prior = prior  # an optional sculpt.forecast.prior_model.Prior used while a stream is young
        F = len(NAMES)
        self.X_last = np.full((0, F), np.nan)
        self.A_last = np.full((0, 2), np.nan)  # the anchors (cpu, mem) the last forecast was relative to
        self.bias = np.zeros((0, 2))
        self.boost = np.zeros(0)
        self.ph = np.zeros((0, 6))  # count, mean, cum_up, cum_down, mean |x|, cum |x| up
        self.drifts = 0

    def _rows_grow(self) -> None:
        n = len(self.table)
        if self.X_last.shape[0] >= n:
            return
        cap = max(n, 2 * self.X_last.shape[0], 16)
        pad = cap - self.X_last.shape[0]
        self.X_last = np.vstack([self.X_last, np.full((pad, self.X_last.shape[1]), np.nan)])
        self.A_last = np.vstack([self.A_last, np.full((pad, 2), np.nan)])
        self.bias = np.vstack([self.bias, np.zeros((pad, 2))])
        self.boost = np.concatenate([self.boost, np.zeros(pad)])
        self.ph = np.vstack([self.ph, np.zeros((pad, 6))])

    def _weights(self, key: str) -> tuple[np.ndarray, float]:
        reg = self.regs[key]
        w = reg.weights
        return np.array([w.get(n, 0.0) for n in NAMES]), float(reg.intercept)

    def profile_interval(self, x: dict[str, float]) -> tuple[float, float]:
        """The profile-wide 90 % band (relative units) of river.conf's jackknife for one feature row."""
        # river annotates x as the invariant dict[Hashable, object], which no dict[str, float] matches
        iv = self.jack.predict_one(x, with_interval=True)  # type: ignore[call-overload]
        return float(iv.lower), float(iv.upper)

    def _learn(self, rows: np.ndarray) -> None:
        X = self.X_last[rows]
        have = ~np.isnan(X[:, 0])
        if not have.any():
            return
        rows, X = rows[have], X[have]
        if rows.size > self.learn_budget:
            keep = np.sort(self.rng.choice(rows.size, self.learn_budget, replace=False))
            rows, X = rows[keep], X[keep]
        cpu, mem = self.table.last(rows, 1)
        s = self.fc_scale[rows]  # the scale the features were divided by
        a = self.A_last[rows]
        yc = np.clip((cpu[:, 0] - a[:, 0]) / s[:, 0], -TARGET_CLIP, TARGET_CLIP)
        ym = np.clip((mem[:, 0] - a[:, 1]) / s[:, 1], -TARGET_CLIP, TARGET_CLIP)
        ok = np.isfinite(yc) & np.isfinite(ym)
        w = np.clip(s[:, 0] / np.mean(s[:, 0]), 0.05, 20.0) if self.weighted else np.ones(rows.size)
        c50, c95, m50, m95 = (self.regs[k] for k in ("c50", "c95", "m50", "m95"))
        for x_row, a_, b_, w_, good in zip(X.tolist(), yc.tolist(), ym.tolist(), w.tolist(), ok.tolist(),
                                           strict=True):
            if not good:
                continue
            x = dict(zip(NAMES, x_row, strict=True))
            c50.learn_one(x, a_, w_)
            c95.learn_one(x, a_, w_)
            m50.learn_one(x, b_, w_)
            m95.learn_one(x, b_, w_)
        if rows.size:
            xj: dict[Hashable, object] = dict(zip(NAMES, X[-1].tolist(), strict=True))
            self.jack.learn_one(xj, float(yc[-1]) if np.isfinite(yc[-1]) else 0.0)

    def _drift(self, rows: np.ndarray) -> None:
        """Page-Hinkley on each stream's relative residuals: two-sided on the residual (a biased model) and
        upward on its magnitude (noisier than the stream's scale says: a level or regime change)."""
        sc = self.last_scores
        if not sc:
            return
        r = sc["rows"]
        x = np.clip(sc["res_cpu"], -TARGET_CLIP, TARGET_CLIP)  # y - median of the scored forecast, relative
        ax = np.abs(x)
        st = self.ph[r]
        st[:, 0] += 1
        st[:, 1] += (x - st[:, 1]) / st[:, 0]
        st[:, 4] += (ax - st[:, 4]) / st[:, 0]
        st[:, 2] = np.maximum(0.0, st[:, 2] + x - st[:, 1] - PH_DELTA)
        st[:, 3] = np.maximum(0.0, st[:, 3] - x + st[:, 1] - PH_DELTA)
        st[:, 5] = np.maximum(0.0, st[:, 5] + ax - st[:, 4] - PH_DELTA)
        alarm = (st[:, 0] >= PH_MIN) & ((st[:, 2] > PH_LAMBDA) | (st[:, 3] > PH_LAMBDA) | (st[:, 5] > PH_LAMBDA))
        self.ph[r] = st
        if alarm.any():
            d = r[alarm]
            self.drifts += int(d.size)
            self.ph[d] = 0.0
            self.boost[d] = BOOST_PERIODS
            if RESET_ON_DRIFT:
                self.bias[d] = 0.0
                cpu, mem = self.table.last(d, 1)
                self.scale[d] = np.maximum(np.column_stack([cpu[:, 0], mem[:, 0]]), 1e-3)
            if CLEAR_RESIDUALS_ON_DRIFT:
                self.res[d] = np.nan
                self.res_pos[d] = 0

    def _anchors(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        """What the regressors correct: CPU's freshest reading (the period's tail) or last period; memory's last peak."""
        cpu, mem = self.table.last(rows, 1)
        if self.anchor == "tail":
            tail = self.table.gather("tail", rows, 1)[:, 0]
            c = np.where(np.isfinite(tail), tail, cpu[:, 0])
        else:
            c = cpu[:, 0]
        return np.column_stack([c, mem[:, 0]])

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._rows_grow()
        self._drift(rows)
        self._learn(rows)
        # per-stream median correction from the scored residuals (sign SGD tracks the median)
        sc = self.last_scores
        if sc:
            r = sc["rows"]
            lr = BIAS_LR * np.where(self.boost[r] > 0, 5.0, 1.0)
            for j, key in enumerate(("res_cpu", "res_mem")):
                self.bias[r, j] = np.clip(self.bias[r, j] + lr * np.sign(sc[key]), -1.0, 1.0)
        self.boost[rows] = np.maximum(self.boost[rows] - 1, 0)
        s = self.scale[rows]
        X = extract(self.table, rows, s)
        self.X_last[rows] = X
        self.fc_scale[rows] = s
        anchors = self._anchors(rows, X)
        self.A_last[rows] = anchors
        out = []
        for j, (k50, k95) in enumerate((("c50", "c95"), ("m50", "m95"))):
            last = anchors[:, j]
            w50, b50 = self._weights(k50)
            w95, b95 = self._weights(k95)
            med = last + s[:, j] * (X @ w50 + b50 + self.bias[rows, j])
            up = last + s[:, j] * (X @ w95 + b95 + self.bias[rows, j])
            out.append((med, up))
        if self.prior is not None:  # a scikit-learn prior answers for young streams (see sculpt.forecast.prior)
            out = self.prior.blend(self.table.n_periods[rows], anchors, s, X, out)
        return out[0][0], out[1][0], out[0][1], out[1][1]
