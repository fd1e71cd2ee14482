"""Cold start: a per-profile prior fitted offline with scikit-learn, used while a stream's history is short.

Why it exists: an online model knows nothing about a stream it has just met; the conformal band is wide
and the confidence low for a day or two. A prior fitted on the traces of other instances of the same
profile (``sculpt train --traces DIR --profile P``) answers in the meantime: quantile gradient boosting
(``HistGradientBoostingRegressor(loss="quantile")``) on the same features and the same residual target
as the river model (the correction to the stream's freshest reading, divided by its scale). The river
model blends it in with weight ``1 - periods / YOUNG`` (it fades out over the first two days).

``holdout`` measures whether that helps: it fits on half of the traces and replays the other half with
and without the prior, scoring the first ``YOUNG`` periods of each stream (the cold-start window). Keep
the prior only if the numbers say so.

The prior class, its file format and ``load_prior`` live in ``sculpt.forecast.prior_model`` (the river
model imports that, not this module, which replays the river model); they are re-exported here.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.domain.errors import ConfigError
from sculpt.forecast.engine import PeriodPredictor
from sculpt.forecast.features import NAMES, extract
from sculpt.forecast.prior_model import FORMAT, YOUNG, Prior, load_prior
from sculpt.forecast.traces import Grid

__all__ = ["CLIP", "FORMAT", "PRIOR_MODELS", "YOUNG", "Prior", "collect", "default_prior_path", "find_prior",
           "fit_prior", "holdout", "load_prior"]

CLIP = 10.0


def default_prior_path(profile: str) -> Path:
    """Where ``sculpt train`` writes a profile's prior: ``$SCULPT_HOME/priors/P.prior`` or ``.sculpt/priors``."""
    import os

    home = os.environ.get("SCULPT_HOME")
    base = Path(home) if home else Path.cwd() / ".sculpt"
    return base / "priors" / f"{profile}.prior"


PRIOR_MODELS = ("river", "ensemble")
"""The models that blend a prior in (the ensemble through its river member)."""


def find_prior(state_dir: str | Path, profile: str) -> Path | None:
    """The prior ``sculpt watch`` and ``sculpt plan`` use for a fleet of ``profile``: the file ``sculpt train``
    writes into the fleet's state directory (``<state dir>/priors/<profile>.prior``), if there is one."""
    p = Path(state_dir) / "priors" / f"{profile}.prior"
    return p if p.is_file() else None


class _Collector(PeriodPredictor):
    """Replays traces and records (features, residual targets) pairs exactly as the river model sees them."""

    name = "collector"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.X_last = np.full((0, len(NAMES)), np.nan)
        self.A_last = np.full((0, 2), np.nan)
        self.rows_X: list[np.ndarray] = []
        self.rows_y: list[np.ndarray] = []

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, None, None]:
        n = len(self.table)
        if self.X_last.shape[0] < n:
            pad = max(n, 16) - self.X_last.shape[0]
            self.X_last = np.vstack([self.X_last, np.full((pad, len(NAMES)), np.nan)])
            self.A_last = np.vstack([self.A_last, np.full((pad, 2), np.nan)])
        cpu, mem = self.table.last(rows, 1)
        have = np.isfinite(self.A_last[rows, 0])
        if have.any():
            r = rows[have]
            s = self.fc_scale[r]
            y = np.column_stack([(cpu[have, 0] - self.A_last[r, 0]) / s[:, 0],
                                 (mem[have, 0] - self.A_last[r, 1]) / s[:, 1]])
            ok = np.isfinite(y).all(axis=1)
            self.rows_X.append(self.X_last[r][ok])
            self.rows_y.append(np.clip(y[ok], -CLIP, CLIP))
        s = self.scale[rows]
        X = extract(self.table, rows, s)
        tail = self.table.gather("tail", rows, 1)[:, 0]
        self.X_last[rows] = X
        self.A_last[rows] = np.column_stack([np.where(np.isfinite(tail), tail, cpu[:, 0]), mem[:, 0]])
        self.fc_scale[rows] = s
        return cpu[:, 0], mem[:, 0], None, None


def collect(grid: Grid, period_s: float = 3600.0) -> tuple[np.ndarray, np.ndarray]:
    """(features, residual targets) of every closed period of every trace in ``grid``."""
    from sculpt.forecast.evaluate import _batch

    c = _Collector(horizon_s=period_s, close_budget=1 << 30)
    names = list(grid.names)
    for i in range(grid.cpu.shape[0]):
        have = np.flatnonzero(np.isfinite(grid.cpu[i]))
        if have.size:
            c.learn_many(_batch([names[j] for j in have], np.full(have.size, grid.t[i] + grid.tick_s / 2),
                                grid.cpu[i, have], grid.mem[i, have], grid.net[i, have], grid.disk[i, have]))
    if not c.rows_X:
        raise ConfigError("the traces are too short to train a prior", "pass traces of at least a few hours")
    return np.vstack(c.rows_X), np.vstack(c.rows_y)


def fit_prior(grid: Grid, profile: str = "general", *, seed: int = 0, max_rows: int = 40_000) -> Prior:
    """Fit the four quantile GBMs on every closed period of ``grid`` (subsampled to ``max_rows``)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    X, Y = collect(grid)
    rng = np.random.default_rng(seed)
    if X.shape[0] > max_rows:
        keep = rng.choice(X.shape[0], max_rows, replace=False)
        X, Y = X[keep], Y[keep]
    models = {}
    for key, col, q in (("c50", 0, 0.5), ("c95", 0, 0.95), ("m50", 1, 0.5), ("m95", 1, 0.95)):
        m = HistGradientBoostingRegressor(loss="quantile", quantile=q, max_iter=80, max_leaf_nodes=15,
                                          learning_rate=0.1, random_state=seed)
        m.fit(X, Y[:, col])
        models[key] = m
    return Prior(models, profile, int(X.shape[0]))


def holdout(grid: Grid, profile: str = "general", *, seed: int = 0) -> dict[str, Any]:
    """Fit on even-numbered traces, replay the odd ones with and without the prior; cold-start MAE."""
    from sculpt.forecast.evaluate import progressive
    from sculpt.forecast.river_model import RiverQuantile

    n = len(grid.names)
    if n < 2:
        raise ConfigError("holdout needs at least two traces", "pass a directory with several traces")
    tr = np.arange(n) % 2 == 0

    def sub(mask: np.ndarray) -> Grid:
        return Grid([g for g, k in zip(grid.names, mask, strict=True) if k], grid.t, grid.cpu[:, mask],
                    grid.mem[:, mask], grid.net[:, mask], grid.disk[:, mask], grid.tick_s)

    prior = fit_prior(sub(tr), profile, seed=seed)
    test = sub(~tr)
    # the cold-start window: only the first YOUNG hours of the test traces are replayed and scored
    k = int(round(3600.0 / grid.tick_s))
    first = np.argmax(np.isfinite(test.cpu).any(axis=1))
    span = slice(int(first // k) * k, int(first // k) * k + (YOUNG + 1) * k)
    cold = Grid(test.names, test.t[span], test.cpu[span], test.mem[span], test.net[span], test.disk[span],
                test.tick_s)
    out: dict[str, Any] = {"train_traces": int(tr.sum()), "test_traces": int((~tr).sum()), "rows": prior.rows,
                           "cold_start_periods": YOUNG}
    for label, pr in (("without_prior", None), ("with_prior", prior)):
        r = progressive(functools.partial(RiverQuantile, seed=seed, prior=pr), cold)
        out[label] = {k_: r[k_] for k_ in ("mae", "mem_mae", "pinball_95", "coverage_90")}
    a, b = out["without_prior"]["mae"], out["with_prior"]["mae"]
    out["helps"] = bool(b is not None and a is not None and b < a)
    return out
