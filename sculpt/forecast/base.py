"""The Predictor protocol: every demand model (river, LSTM, ensemble, baselines) is used through it.

A *stream* is one instance's metric series, named by a string key. Models learn one sample at a time
(``learn_one``) or a batch of samples, one per stream, at the same tick (``learn_many``), and forecast the
demand over a horizon for one stream or many (``forecast_many``, one vectorised call for the whole fleet).

Callers never reach into river or torch: they hold a ``Predictor``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sculpt.domain.forecast import Forecast


@dataclass(frozen=True)
class Sample:
    """One observation of one instance. NaN means 'not measured'. Units are in the names."""

    t: float  # seconds since the epoch
    cpu_cores: float  # CPU cores in use
    mem_gib: float = math.nan  # memory in use, GiB
    net_kbps: float = math.nan
    disk_kbps: float = math.nan
    latency_ms: float = math.nan
    rps: float = math.nan


@dataclass(frozen=True)
class SampleBatch:
    """One sample per stream at (about) the same tick, as columns. ``len(streams) == len(cpu_cores)``."""

    streams: Sequence[str]
    t: np.ndarray
    cpu_cores: np.ndarray
    mem_gib: np.ndarray
    # optional columns (None: not measured); models use them as features when present
    net_kbps: np.ndarray | None = None
    disk_kbps: np.ndarray | None = None
    latency_ms: np.ndarray | None = None
    rps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.streams)


@dataclass(frozen=True)
class ForecastBatch:
    """Forecasts for many streams as columns (same meaning as ``Forecast``'s fields)."""

    streams: Sequence[str]
    horizon_s: float
    cpu_p50: np.ndarray
    cpu_p95: np.ndarray
    cpu_lo: np.ndarray
    cpu_hi: np.ndarray
    mem_p50: np.ndarray
    mem_p95: np.ndarray
    mem_lo: np.ndarray
    mem_hi: np.ndarray
    confidence: np.ndarray
    samples: np.ndarray
    model: str = "unknown"

    def __len__(self) -> int:
        return len(self.streams)

    def get(self, i: int) -> Forecast:
        return Forecast(
            horizon_s=self.horizon_s,
            cpu_p50=float(self.cpu_p50[i]), cpu_p95=float(self.cpu_p95[i]),
            cpu_lo=float(self.cpu_lo[i]), cpu_hi=float(self.cpu_hi[i]),
            mem_p50=float(self.mem_p50[i]), mem_p95=float(self.mem_p95[i]),
            mem_lo=float(self.mem_lo[i]), mem_hi=float(self.mem_hi[i]),
            confidence=float(np.clip(self.confidence[i], 0.0, 1.0)), model=self.model,
            samples=int(self.samples[i]),
        )


@runtime_checkable
class Predictor(Protocol):
    """A demand model over many instance streams.

    Besides its ``name`` it says which application ``profile`` it learns for, the ``seed`` it was built with
    (a fresh model of the same kind and seed is what a profile switch starts from), the forecast period
    ``horizon_s`` it closes periods at, and ``notes`` (one line each) about how it runs here (e.g. the
    ensemble without torch). Read-only here: plain attributes satisfy them.
    """

    name: str

    @property
    def profile(self) -> str:
        """The application profile the model learns (``general``, ``web``, ...)."""
        ...

    @property
    def seed(self) -> int:
        """The seed it was built with (``make_predictor(..., seed=)``)."""
        ...

    @property
    def horizon_s(self) -> float:
        """The period it forecasts (seconds): what ``make_predictor(..., horizon_s=)`` was given."""
        ...

    @property
    def notes(self) -> list[str]:
        """How the model runs here, one line each (empty when there is nothing to say)."""
        ...

    def learn_one(self, stream: str, sample: Sample) -> None:
        """Learn one observation. Bad samples (NaN, negative, time going backwards) are skipped and counted."""
        ...

    def learn_many(self, batch: SampleBatch) -> None:
        """Learn one observation per stream (the batched form of ``learn_one``)."""
        ...

    def forecast(self, stream: str, horizon_s: float) -> Forecast:
        """Demand quantiles of ``stream`` over the next ``horizon_s`` seconds; safe before any learning."""
        ...

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        """The batched form of ``forecast``: one call for the whole fleet."""
        ...

    def dumps(self) -> bytes:
        """Serialise the whole model (all streams) for the ledger's checkpoint table."""
        ...

    def loads(self, blob: bytes) -> None:
        """Restore from ``dumps``; afterwards predictions are identical to the dumped model's."""
        ...


class Describing:
    """What a predictor decorator says about itself is what the predictor it stands for says (``described``):
    its profile, seed, period and notes. ``Guarded``, ``ProfileHandover`` and replay's sweep wrappers."""

    @property
    def described(self) -> Predictor:
        raise NotImplementedError

    @property
    def profile(self) -> str:
        return self.described.profile

    @property
    def seed(self) -> int:
        return self.described.seed

    @property
    def horizon_s(self) -> float:
        return self.described.horizon_s

    @property
    def notes(self) -> list[str]:
        return list(self.described.notes)
