"""Baselines every model must beat: persistence (``last-value``) and ``seasonal-naive`` (same period yesterday).

They are real predictors (same protocol, same conformal intervals and confidence from ``PeriodPredictor``),
cost a gather per closed period, and are what the benchmark compares the learned models against.
Persistence is the strong one on VM traces: demand an hour from now is most often what it was this hour.
"""

from __future__ import annotations

import numpy as np

from sculpt.forecast.engine import PeriodPredictor


class LastValue(PeriodPredictor):
    """Next period's demand = the period that just closed."""

    name = "last-value"

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, None, None]:
        cpu, mem = self.table.last(rows, 1)
        return cpu[:, 0], mem[:, 0], None, None


class SeasonalNaive(PeriodPredictor):
    """Next period's demand = the same period one day earlier (the last period until a day is seen)."""

    name = "seasonal-naive"

    def _next(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, None, None]:
        season = max(1, int(round(86400.0 / self.table.period_s)))
        n = min(season, self.table.H)
        cpu, mem = self.table.last(rows, n)
        # the period one season before the next one is the (season-1)-th newest closed period
        c, m = cpu[:, n - 1], mem[:, n - 1]
        return np.where(np.isnan(c), cpu[:, 0], c), np.where(np.isnan(m), mem[:, 0], m), None, None
