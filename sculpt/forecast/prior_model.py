"""The cold-start prior itself: the fitted model, its file format, and how the river model blends it in.

Why it is a module of its own: the river model loads and blends a prior (``RiverQuantile(prior=...)``),
and ``sculpt.forecast.prior`` (fitting, ``holdout``) replays the river model to measure the prior. With
the prior class in ``prior.py`` the two modules imported each other; now both import this one, and
``prior.py`` re-exports ``Prior`` and ``load_prior`` (older pickles name ``sculpt.forecast.prior.Prior``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.domain.errors import ConfigError, NotFoundError

YOUNG = 48  # periods over which the prior fades out
FORMAT = "sculpt-prior-1"


class Prior:
    """Four quantile GBMs (CPU and memory, 50 % and 95 %) on residual targets; picklable."""

    def __init__(self, models: dict[str, Any], profile: str, rows: int) -> None:
        self.models = models
        self.profile = profile
        self.rows = rows

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Residual quantiles (n, 4): cpu p50, cpu p95, mem p50, mem p95 (relative units)."""
        return np.column_stack([self.models[k].predict(X) for k in ("c50", "c95", "m50", "m95")])

    def blend(self, periods: np.ndarray, anchors: np.ndarray, scale: np.ndarray, X: np.ndarray,
              out: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Mix the prior into ``out`` [(cpu med, cpu up), (mem med, mem up)] for young streams."""
        w = np.clip(1.0 - periods / YOUNG, 0.0, 1.0)
        young = w > 0
        if not young.any():
            return out
        r = self.predict(X[young])
        res = []
        for j, (med, up) in enumerate(out):
            pm = anchors[young, j] + scale[young, j] * r[:, 2 * j]
            pu = anchors[young, j] + scale[young, j] * np.maximum(r[:, 2 * j + 1], r[:, 2 * j])
            med, up = med.copy(), up.copy()
            med[young] = w[young] * pm + (1 - w[young]) * med[young]
            up[young] = w[young] * pu + (1 - w[young]) * up[young]
            res.append((med, up))
        return res

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(pickle.dumps({"format": FORMAT, "prior": self}))
        return p


def load_prior(path: str | Path) -> Prior:
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"no prior at {p}", "run `sculpt train --traces DIR --profile P` first")
    try:
        d = pickle.loads(p.read_bytes())
        if d.get("format") != FORMAT:
            raise ValueError("not a sculpt prior")
        return d["prior"]  # type: ignore[no-any-return]
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{p} is not a readable sculpt prior ({e})", "train it again with `sculpt train`") from None
