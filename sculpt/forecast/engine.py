"""The shared machinery behind every predictor: ingest, per-stream conformal intervals, confidence, persistence.

Why it exists: the models differ only in one step — "given the closed periods of these streams, what is
the median (and maybe upper quantile) of the next period's CPU and memory demand?". Everything around that
step is the same for all of them and lives here, vectorised over streams:

* ingest through ``StreamTable`` (validation, slots, period close) on every tick;
* when periods close (at most ``close_budget`` streams per tick, the rest on the next ticks): score the
  previous forecast (residuals, coverage, pinball loss), update the stream's
  scale (an EWMA of its level, the target scaling every model uses), ask the model for the next period,
  and cache the forecast, so ``forecast_many`` is a gather, not a model call;
* intervals by *adaptive split conformal prediction* per stream: relative residuals ``(y - median)/scale``
  of the last ``RING`` periods give the 5 % and 95 % bounds, and each stream's miscoverage steers its own
  level (adaptive conformal inference, Gibbs & Candès 2021) so that 90 % intervals stay near 90 % on
  traces the model has never seen; streams with little history borrow a profile-wide residual pool;
* the upper quantile (``p95``): for models with their own (river, LSTM, ensemble), a loss-weighted blend
  of it and the conformal bound, weighted per stream by their recent pinball-95 losses (``loss**-8``) (half each at
  first: the quantile regressor needs history the conformal bound does not);
* confidence in [0, 1] from interval width, recent calibration and history length (see ``confidence``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from sculpt.domain.arrays import FloatArray, IntArray
from sculpt.domain.errors import SculptError
from sculpt.domain.forecast import Forecast
from sculpt.forecast.base import ForecastBatch, Sample, SampleBatch
from sculpt.forecast.state import EXTRA_CHANNELS, StreamTable

RING = 96  # residuals kept per stream (4 days of hourly periods)
POOL = 2048  # profile-wide residual pool for streams with short history
MIN_OWN = 16  # residuals a stream needs before its own quantiles are trusted
UP_POWER = 8.0  # weights proportional to loss**-8: the clearly better estimate takes nearly all the weight
UP_DECAY = 0.95  # EWMA of the two upper estimates' pinball-95 losses (about a day of hourly periods)
RES_CLIP = 10.0  # relative residuals are clipped to +-10 levels before they enter the rings and the pool
ALPHA = 0.10  # target miscoverage of the 90 % interval
ACI_GAMMA = 0.01  # step of adaptive conformal inference
HISTORY_HALF = 24  # periods of history at which the history factor of confidence is 0.5
FORMAT = 1


class ModelLoadError(SculptError):
    """A checkpoint blob could not be restored (corrupt, other model, other format)."""


def row_quantile(values: FloatArray, q: FloatArray) -> FloatArray:
    """Per-row quantile ``q[i]`` of ``values[i]`` ignoring NaN (linear interpolation); NaN for empty rows."""
    v = np.sort(np.where(np.isnan(values), np.inf, values), axis=1)
    n = np.isfinite(v).sum(axis=1)
    pos = np.clip(q, 0.0, 1.0) * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    r = np.arange(v.shape[0])
    a, b = v[r, lo], v[r, hi]
    with np.errstate(invalid="ignore"):
        out = np.where(hi > lo, a + (b - a) * (pos - lo), a)
    return np.where(n > 0, out, np.nan)


def pinball(y: FloatArray, q: FloatArray, tau: float) -> FloatArray:
    """Pinball (quantile) loss of predicting ``q`` for the ``tau`` quantile when ``y`` happened."""
    d = y - q
    return np.maximum(tau * d, (tau - 1.0) * d)


def confidence(width_rel: FloatArray, coverage: FloatArray, periods: IntArray | FloatArray) -> FloatArray:
    """Confidence in [0, 1]: narrow intervals, calibrated recent coverage and long history raise it.

    * width factor ``1 / (1 + w)`` with ``w = (hi - lo) / median``: an interval as wide as the median halves it;
    * calibration factor ``1 - |coverage - 0.9| / 0.4``: a stream whose 90 % intervals held 90 % of the time
      keeps it all, 50 % coverage leaves nothing;
    * history factor ``n / (n + 24)`` over periods of own history (like VPA's history-length multiplier):
      no history means no confidence, one day of hourly periods gives half.
    """
    w = 1.0 / (1.0 + np.maximum(np.nan_to_num(width_rel, nan=np.inf, posinf=np.inf), 0.0))
    c = np.clip(1.0 - np.abs(np.nan_to_num(coverage, nan=0.9) - 0.9) / 0.4, 0.0, 1.0)
    n = np.maximum(periods, 0).astype(np.float64)
    h = n / (n + HISTORY_HALF)
    return np.clip(w * c * h, 0.0, 1.0)


class PeriodPredictor:
    """Base class implementing the ``Predictor`` protocol; subclasses implement ``_next``.

    ``_next(rows)`` is called with the rows whose period just closed (the table already holds the new
    period) and returns ``(cpu_median, mem_median, cpu_upper, mem_upper)`` for the next period in cores and
    GiB; the uppers may be ``None`` (the conformal bound is used). Subclasses keep their own state in
    attributes listed in ``_model_fields`` so that ``dumps``/``loads`` round-trip them.

    The horizon is the period: a predictor built with ``horizon_s`` closes periods of that length and
    forecasts the next one, so ``forecast_many`` for another horizon raises (it has no such forecast to
    give), and ``loads`` refuses a checkpoint of another period.
    """

    name = "base"
    has_interval = True
    _model_fields: tuple[str, ...] = ()

    # per-stream engine arrays, allocated (and grown) by ``_grow`` from ``_ARRAYS``; first axis is the table row
    scale: FloatArray  # (rows, 2) EWMA level of cpu cores, mem GiB
    fc: FloatArray  # (rows, 8) cached forecast of the next period
    fc_scale: FloatArray  # (rows, 2) the scale the cached forecast was made with
    conf: FloatArray  # (rows,) confidence in [0, 1]
    res: FloatArray  # (rows, 2, RING) relative residuals, cpu and mem
    res_pos: FloatArray  # (rows,) residuals written so far (float: one array type for all of them)
    alpha: FloatArray  # (rows, 2) adaptive miscoverage level
    cov: FloatArray  # (rows,) EWMA of cpu interval coverage
    seen: FloatArray  # (rows,) scored forecasts
    up_raw: FloatArray  # (rows, 2) the model's own upper quantile of the cached forecast
    up_loss: FloatArray  # (rows, 2, 2) EWMA pinball-95 of (model upper, conformal bound), cpu and mem

    def __init__(self, *, profile: str = "general", seed: int = 0, horizon_s: float = 3600.0,
                 history: int = 192, close_budget: int = 1000) -> None:
        self.profile = profile
        self.seed = int(seed)
        self.horizon_s = float(horizon_s)
        self.notes: list[str] = []
        self.table = StreamTable(period_s=horizon_s, history=history)
        self.rng = np.random.default_rng(seed)
        self._cap = 0
        self._grow(16)
        self.pool = np.full((2, POOL), np.nan)  # relative residuals, cpu and mem
        self.pool_pos = 0
        self.last_scores: dict[str, np.ndarray] = {}
        self.close_budget = int(close_budget)
        self.pending = np.empty(0, np.int64)  # closed periods not yet handed to the model (bounded work)

    # -- per-stream engine arrays --------------------------------------------------------------------------
    _ARRAYS: dict[str, tuple[tuple[int, ...], float]] = {
        "scale": ((2,), np.nan),  # EWMA level of cpu, mem (target scaling)
        "fc": ((8,), np.nan),  # cpu m, p95, lo, hi, mem m, p95, lo, hi of the next period
        "fc_scale": ((2,), np.nan),
        "conf": ((), 0.0),
        "res": ((2, RING), np.nan),
        "res_pos": ((), 0.0),
        "alpha": ((2,), ALPHA),
        "cov": ((), np.nan),  # EWMA of cpu interval coverage
        "seen": ((), 0.0),  # scored forecasts
        "up_raw": ((2,), np.nan),  # the model's own upper quantile (cpu, mem) of the cached forecast
        "up_loss": ((2, 2), np.nan),  # EWMA pinball-95 of (model upper, conformal bound), cpu and mem
    }

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap, 16)
        for name, (shape, fill) in self._ARRAYS.items():
            new = np.full((cap, *shape), fill)
            if self._cap:
                new[: self._cap] = getattr(self, name)
            setattr(self, name, new)
        self._cap = cap

    # -- Predictor protocol --------------------------------------------------------------------------------
    def learn_one(self, stream: str, sample: Sample) -> None:
        extra = np.array([[getattr(sample, c, np.nan) for c in EXTRA_CHANNELS]], dtype=np.float64)
        self._ingest([stream], np.array([sample.t]), np.array([sample.cpu_cores]), np.array([sample.mem_gib]), extra)

    def learn_many(self, batch: SampleBatch) -> None:
        extra = None
        cols = [getattr(batch, c, None) for c in EXTRA_CHANNELS]
        if any(c is not None for c in cols):
            extra = np.column_stack([np.full(len(batch), np.nan) if c is None else np.asarray(c, np.float64)
                                     for c in cols])
        self._ingest(batch.streams, batch.t, batch.cpu_cores, batch.mem_gib, extra)

    def _ingest(self, streams: Sequence[str], t: Any, cpu: Any, mem: Any, extra: np.ndarray | None) -> None:
        idx = self.table.indices(streams)
        closed = self.table.push(idx, np.asarray(t, np.float64), np.asarray(cpu, np.float64),
                                 np.asarray(mem, np.float64), extra)
        self._closed(closed)

    def _closed(self, closed: np.ndarray) -> None:
        """Hand closed periods to the model, at most ``close_budget`` rows per tick, oldest first."""
        self.last_scores = {}
        self._grow(len(self.table))
        if closed.size or self.pending.size:
            rows = closed
            if self.pending.size:
                rows = np.concatenate([self.pending, np.setdiff1d(closed, self.pending, assume_unique=True)])
            now, self.pending = rows[: self.close_budget], rows[self.close_budget:]
            self._on_close(np.sort(now))

    def forecast(self, stream: str, horizon_s: float) -> Forecast:
        return self.forecast_many([stream], horizon_s).get(0)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        if float(horizon_s) != self.horizon_s:
            raise ValueError(f"the {self.name} model forecasts {self.horizon_s:g}-second periods, not "
                             f"{float(horizon_s):g}: build it with make_predictor(..., horizon_s={float(horizon_s):g})")
        idx = self.table.indices(streams, create=False)
        known = idx >= 0
        safe = np.where(known, idx, 0)
        fc = np.where(known[:, None], self.fc[safe], np.nan) if self._cap else np.full((len(idx), 8), np.nan)
        # streams with samples but no closed period yet: the last reading, a wide band, no confidence
        if np.isnan(fc[:, 0]).any():
            last = np.where(known, self.table.last_cpu[safe] if len(self.table) else 0.0, 0.0)
            lastm = np.where(known, self.table.last_mem[safe] if len(self.table) else 0.0, 0.0)
            cold = np.column_stack([last, 2 * last, np.zeros_like(last), 2 * last,
                                    lastm, 2 * lastm, np.zeros_like(lastm), 2 * lastm])
            fc = np.where(np.isnan(fc[:, :1]), cold, fc)
        conf = np.where(known, self.conf[safe], 0.0)
        periods = np.where(known, self.table.n_periods[safe], 0) if len(self.table) else np.zeros(len(idx))
        return ForecastBatch(
            streams=list(streams), horizon_s=float(horizon_s),
            cpu_p50=fc[:, 0].copy(), cpu_p95=fc[:, 1].copy(), cpu_lo=fc[:, 2].copy(), cpu_hi=fc[:, 3].copy(),
            mem_p50=fc[:, 4].copy(), mem_p95=fc[:, 5].copy(), mem_lo=fc[:, 6].copy(), mem_hi=fc[:, 7].copy(),
            confidence=conf.astype(np.float64), samples=periods.astype(np.int64), model=self.name,
        )

    # -- period close ----------------------------------------------------------------------------------------
    def _on_close(self, rows: np.ndarray) -> None:
        cpu, mem = self.table.last(rows, 1)
        y = np.column_stack([cpu[:, 0], mem[:, 0]])  # (n, 2)
        self._score(rows, y)
        # target scaling: an EWMA of the level, floored so idle streams do not divide by ~0
        old = self.scale[rows]
        fresh = np.isnan(old)
        floor = np.array([1e-3, 1e-3])
        self.scale[rows] = np.maximum(np.where(fresh, y, 0.9 * old + 0.1 * y), floor)
        med_c, med_m, up_c, up_m = self._next(rows)
        med = np.maximum(np.column_stack([med_c, med_m]), 0.0)
        med = np.where(np.isfinite(med), med, y)
        up = None
        if up_c is not None and up_m is not None:
            up = np.maximum(np.column_stack([up_c, up_m]), med)
            up = np.where(np.isfinite(up), up, med)
        self._set_forecast(rows, med, up)

    def _score(self, rows: np.ndarray, y: np.ndarray) -> None:
        fc = self.fc[rows]
        have = ~np.isnan(fc[:, 0])
        if not have.any():
            self.last_scores = {}
            return
        r, f, yy = rows[have], fc[have], y[have]
        s = self.fc_scale[r]
        med = f[:, [0, 4]]
        rel = np.clip((yy - med) / s, -RES_CLIP, RES_CLIP)  # one absurd reading must not blow up every band
        pos = self.res_pos[r].astype(np.int64) % RING
        self.res[r, 0, pos] = rel[:, 0]
        self.res[r, 1, pos] = rel[:, 1]
        self.res_pos[r] += 1
        k = rel.shape[0]
        at = (self.pool_pos + np.arange(k)) % POOL
        self.pool[:, at] = rel.T
        self.pool_pos = (self.pool_pos + k) % POOL
        inside = (yy >= f[:, [2, 6]]) & (yy <= f[:, [3, 7]])
        self.alpha[r] = np.clip(self.alpha[r] + ACI_GAMMA * (ALPHA - (~inside)), 0.005, 0.4)
        # which upper estimate has been better on this stream: the model's own or the conformal bound
        lu = pinball(yy, self.up_raw[r], 0.95)
        lh = pinball(yy, f[:, [3, 7]], 0.95)
        both = np.stack([lu, lh], axis=2)  # (n, 2 targets, 2 candidates)
        oldL = self.up_loss[r]
        self.up_loss[r] = np.where(np.isnan(oldL), both, UP_DECAY * oldL + (1 - UP_DECAY) * both)
        prev = self.cov[r]
        self.cov[r] = np.where(np.isnan(prev), inside[:, 0], 0.95 * prev + 0.05 * inside[:, 0])
        self.seen[r] += 1
        self.last_scores = {
            "rows": r, "y_cpu": yy[:, 0], "y_mem": yy[:, 1], "scale_cpu": s[:, 0], "scale_mem": s[:, 1],
            "pin50": pinball(yy[:, 0], f[:, 0], 0.5), "pin95": pinball(yy[:, 0], f[:, 1], 0.95),
            "pin50_mem": pinball(yy[:, 1], f[:, 4], 0.5), "pin95_mem": pinball(yy[:, 1], f[:, 5], 0.95),
            "inside": inside[:, 0], "res_cpu": rel[:, 0], "res_mem": rel[:, 1],
        }

    def _set_forecast(self, rows: np.ndarray, med: np.ndarray, up: np.ndarray | None) -> None:
        s = self.scale[rows]
        a = self.alpha[rows]  # (n, 2)
        n_own = np.minimum(self.res_pos[rows], RING)
        pool_n = int(np.isfinite(self.pool[0]).sum())
        out = np.empty((rows.size, 8))
        for j in range(2):
            res = self.res[rows, j]
            q_lo = row_quantile(res, a[:, j] / 2)
            q_hi = row_quantile(res, np.minimum(1.0, (1 - a[:, j] / 2) * (1 + 1 / np.maximum(n_own, 1))))
            if pool_n >= MIN_OWN:
                p_lo, p_hi = np.nanquantile(self.pool[j], [ALPHA / 2, 1 - ALPHA / 2])
            else:
                p_lo, p_hi = -1.0, 1.0
            w = np.clip(n_own / MIN_OWN, 0.0, 1.0)  # blend the pool into short histories
            q_lo = np.where(n_own > 0, w * np.nan_to_num(q_lo) + (1 - w) * p_lo, p_lo)
            q_hi = np.where(n_own > 0, w * np.nan_to_num(q_hi) + (1 - w) * p_hi, p_hi)
            m = med[:, j]
            lo = np.maximum(m + s[:, j] * np.minimum(q_lo, 0.0), 0.0)
            hi = np.maximum(m + s[:, j] * np.maximum(q_hi, 0.0), m)
            if up is None:
                p95 = hi
            else:  # loss-weighted blend of the model's upper quantile and the conformal bound (0.5 each at first)
                L = self.up_loss[rows, j]
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    z = UP_POWER * (np.log(np.maximum(L[:, 0], 1e-300)) - np.log(np.maximum(L[:, 1], 1e-300)))
                    wu = 1.0 / (1.0 + np.exp(np.clip(z, -50.0, 50.0)))  # = L_h**-p / (L_u**-p + L_h**-p)
                wu = np.where(np.isnan(L).any(axis=1), 0.5, wu)
                p95 = wu * up[:, j] + (1 - wu) * hi
                self.up_raw[rows, j] = up[:, j]
            out[:, 4 * j: 4 * j + 4] = np.column_stack([m, p95, lo, hi])
        self.fc[rows] = out
        self.fc_scale[rows] = s
        width = (out[:, 3] - out[:, 2]) / np.maximum(out[:, 0], s[:, 0])
        self.conf[rows] = confidence(width, self.cov[rows], self.table.n_periods[rows])

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        raise NotImplementedError

    # -- introspection -----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters a status verb can show: streams, closed periods, skipped samples by reason."""
        n = len(self.table)
        return {"model": self.name, "profile": self.profile, "streams": n,
                "periods": int(self.table.n_periods[:n].sum()), "skipped": dict(self.table.bad),
                "notes": list(self.notes)}

    # -- persistence ---------------------------------------------------------------------------------------------
    def _model_state(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self._model_fields}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        for f in self._model_fields:
            setattr(self, f, state[f])

    def dumps(self) -> bytes:
        return pickle.dumps(self._state(with_table=True), protocol=pickle.HIGHEST_PROTOCOL)

    def _state(self, *, with_table: bool) -> dict[str, Any]:
        """Everything ``loads`` needs; ``with_table=False`` when a container (the ensemble) owns the table."""
        n = len(self.table)
        return {
            "format": FORMAT, "name": self.name, "profile": self.profile, "seed": self.seed,
            "horizon_s": self.horizon_s, "notes": list(self.notes),
            "table": self.table.state() if with_table else None,
            "arrays": {a: getattr(self, a)[:n].copy() for a in self._ARRAYS},
            "pool": self.pool.copy(), "pool_pos": self.pool_pos, "pending": self.pending.copy(),
            "close_budget": self.close_budget, "rng": self.rng.bit_generator.state,
            "model": self._model_state(),
        }

    def loads(self, blob: bytes) -> None:
        try:
            state = pickle.loads(blob)
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                raise ValueError("unknown checkpoint format")
            if state.get("name") != self.name:
                raise ValueError(f"checkpoint is of model '{state.get('name')}'")
            if float(state.get("horizon_s", self.horizon_s)) != self.horizon_s:
                raise ValueError(f"checkpoint forecasts {float(state['horizon_s']):g}-second periods, this model "
                                 f"{self.horizon_s:g}")
            table = StreamTable.from_state(state["table"])
        except Exception as e:  # noqa: BLE001 - any decoding problem is the same user-facing error
            raise ModelLoadError(f"cannot restore the {self.name} model checkpoint ({e})",
                                 "delete the checkpoint or let sculpt start a fresh model") from None
        try:
            self._restore(state, table)
        except Exception as e:  # noqa: BLE001 - a blob that decodes but does not fit this model
            raise ModelLoadError(f"cannot restore the {self.name} model checkpoint ({e!r})",
                                 "delete the checkpoint or let sculpt start a fresh model") from None

    def _restore(self, state: dict[str, Any], table: StreamTable) -> None:
        self.table = table
        n = len(table)
        self._cap = 0
        self._grow(max(n, 16))
        for a, v in state["arrays"].items():
            getattr(self, a)[:n] = v
        self.pool, self.pool_pos = state["pool"], state["pool_pos"]
        self.pending, self.close_budget = state["pending"], state["close_budget"]
        self.profile, self.seed, self.horizon_s = state["profile"], state["seed"], state["horizon_s"]
        self.notes = list(state["notes"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self._load_model_state(state["model"])
