"""Helpers for replay tests: a tiny catalog with round prices and a stub predictor behind the protocol."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from sculpt.domain.catalog import Catalog, Offering, Shape
from sculpt.forecast.base import ForecastBatch, Sample, SampleBatch
from sculpt.replay.readers import Trace


def tiny_catalog() -> Catalog:
    """s1/s2/s4: 1, 2, 4 vCPU and GiB at $1, $2, $4 an hour (round numbers make hand-computed optima easy)."""
    return Catalog("sim", [Offering(shape=Shape(name=f"s{c}", family="s", vcpu=c, memory_gib=c), region="r",
                                    price_hour=float(c)) for c in (1, 2, 4)])


def make_trace(cpu: Sequence[float], *, name: str = "t", step_s: float = 3600.0, mem: Sequence[float] | None = None,
               provisioned: tuple[float, float] | None = None) -> Trace:
    n = len(cpu)
    return Trace(name=name, path=name, layout="generic", t=1_700_000_000.0 + step_s * np.arange(n),
                 cpu=np.asarray(cpu, dtype=np.float64),
                 mem=np.asarray(mem, dtype=np.float64) if mem is not None else np.full(n, np.nan), step_s=step_s,
                 provisioned_cpu=provisioned[0] if provisioned else None,
                 provisioned_mem_gib=provisioned[1] if provisioned else None)


class RecentPeak:
    """Stub predictor: the horizon's demand is the peak of the last ``window`` samples (p95 = 1.1x)."""

    name = "recent-peak"
    profile = "general"
    seed = 0
    horizon_s = 3600.0
    notes: list[str] = []

    def __init__(self, window: int = 3) -> None:
        self.window = window
        self.hist: dict[str, list[tuple[float, float]]] = {}

    def learn_one(self, stream: str, sample: Sample) -> None:
        self.hist.setdefault(stream, []).append((sample.cpu_cores, sample.mem_gib))

    def learn_many(self, batch: SampleBatch) -> None:
        for i, s in enumerate(batch.streams):
            self.hist.setdefault(s, []).append((float(batch.cpu_cores[i]), float(batch.mem_gib[i])))

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        cpu = np.array([max((c for c, _ in self.hist.get(s, [])[-self.window:]), default=0.0) for s in streams])
        mem = np.array([max((0.0 if np.isnan(m) else m for _, m in self.hist.get(s, [])[-self.window:]), default=0.0)
                        for s in streams])
        n = np.array([len(self.hist.get(s, [])) for s in streams])
        return ForecastBatch(streams=list(streams), horizon_s=horizon_s, cpu_p50=cpu, cpu_p95=cpu * 1.1,
                             cpu_lo=cpu * 0.9, cpu_hi=cpu * 1.1, mem_p50=mem, mem_p95=mem * 1.1, mem_lo=mem * 0.9,
                             mem_hi=mem * 1.1, confidence=np.where(n > 0, 0.9, 0.0), samples=n, model=self.name)

    def forecast(self, stream: str, horizon_s: float):  # type: ignore[no-untyped-def]
        return self.forecast_many([stream], horizon_s).get(0)

    def dumps(self) -> bytes:
        return b""

    def loads(self, blob: bytes) -> None:
        return None


@pytest.fixture
def catalog() -> Catalog:
    return tiny_catalog()


@pytest.fixture
def write_csv(tmp_path: Path):  # type: ignore[no-untyped-def]
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        if name.endswith(".gz"):
            import gzip

            p.write_bytes(gzip.compress(text.encode()))
        else:
            p.write_text(text)
        return p

    return _write


@pytest.fixture
def trace():  # type: ignore[no-untyped-def]
    """``trace(cpu, name=..., step_s=..., mem=..., provisioned=...)`` -> a synthetic ``Trace``."""
    return make_trace


@pytest.fixture
def stub_predictor():  # type: ignore[no-untyped-def]
    """A factory of ``RecentPeak`` stub predictors (behind the ``Predictor`` protocol)."""
    return RecentPeak
