"""Demand forecasting: one ``Predictor`` protocol, river and LSTM models, an ensemble.

Callers build a model with ``make_predictor(name, profile=..., seed=..., horizon_s=...)`` and use it only
through the ``Predictor`` protocol (``learn_many`` / ``forecast_many`` every tick); the probability over
shapes is the decision's (``sculpt.decide.distribution``). torch is imported only when the LSTM
is built; without it ``ensemble`` runs river-only and says so in ``.notes`` (and ``capabilities()``).

>>> p = make_predictor("last-value")
>>> p.forecast("web-1", 3600).confidence
0.0
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from sculpt.domain.errors import ConfigError
from sculpt.forecast.base import ForecastBatch, Predictor, Sample, SampleBatch

MODELS: tuple[str, ...] = ("last-value", "seasonal-naive", "river", "lstm", "ensemble")


def torch_available() -> bool:
    """Whether torch can be imported (without importing it). ``SCULPT_NO_TORCH=1`` pretends it cannot."""
    if os.environ.get("SCULPT_NO_TORCH", "") not in ("", "0"):
        return False
    return importlib.util.find_spec("torch") is not None


def capabilities() -> dict[str, Any]:
    """What the forecasting engine can run here, for ``sculpt status``: cheap, never imports torch."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    torch_ok = torch_available()
    models = [m for m in MODELS if m != "lstm" or torch_ok]
    return {
        "models": models,
        "torch": torch_ok,
        "torch_version": ver("torch") if torch_ok else None,
        "river_version": ver("river"),
        "sklearn_version": ver("scikit-learn"),
        "ensemble": "river+lstm" if torch_ok else "river-only",
        "notes": [] if torch_ok else ["torch is not installed: the LSTM is off and the ensemble runs river-only "
                                      "(pip install 'sculpt[lstm]' to enable it)"],
    }


def make_predictor(name: str, *, profile: str = "general", seed: int = 0, horizon_s: float = 3600.0,
                   **options: Any) -> Predictor:
    """Build a predictor by name: ``last-value``, ``seasonal-naive``, ``river``, ``lstm``, ``ensemble``."""
    kw: dict[str, Any] = {"profile": profile, "seed": seed, "horizon_s": horizon_s, **options}
    if name == "last-value":
        from sculpt.forecast.baselines import LastValue

        return LastValue(**kw)
    if name == "seasonal-naive":
        from sculpt.forecast.baselines import SeasonalNaive

        return SeasonalNaive(**kw)
    if name == "river":
        from sculpt.forecast.river_model import RiverQuantile

        return RiverQuantile(**kw)
    if name == "lstm":
        if not torch_available():
            raise ConfigError("the lstm model needs torch, which is not installed",
                              "pip install 'sculpt[lstm]' (CPU wheel) or use --model river")
        from sculpt.forecast.lstm import ProfileLSTM

        return ProfileLSTM(**kw)
    if name == "ensemble":
        from sculpt.forecast.ensemble import Ensemble

        return Ensemble(**kw)
    raise ConfigError(f"unknown forecast model '{name}'", f"use one of: {', '.join(MODELS)}")


def __getattr__(name: str) -> Any:  # lazy re-exports that would otherwise import heavy modules
    if name == "bench_tick":
        from sculpt.forecast.evaluate import bench_tick

        return bench_tick
    raise AttributeError(name)


__all__ = ["MODELS", "ForecastBatch", "Predictor", "Sample", "SampleBatch", "bench_tick", "capabilities",
           "make_predictor", "torch_available"]
