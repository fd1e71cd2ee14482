"""Test doubles at the sculptor's process/network boundaries, named as such.

- ``FakeMetricSource``: stands in for a metric backend (psutil + /metrics, Prometheus, CloudWatch are all
  other processes or services); it serves the demand a test scripts, and can be "down" or return NaN.
- ``FakeFleet``: stands in for the stack's agent process (which slots serve, on which shape).
- ``RecordingActuator``: stands in for the orchestrator's real processes; records morphs and can fail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sculpt.catalog import load_catalog
from sculpt.domain.clock import FakeClock
from sculpt.domain.errors import ProviderError
from sculpt.domain.fleet import SlotInfo
from sculpt.domain.spec import FleetSpec, parse_spec
from sculpt.forecast import make_predictor
from sculpt.loop.live import LivePort
from sculpt.loop.service import SculptorService, stream_names
from sculpt.migrate.actuator import MorphOutcome, Recommender

T0 = 1_780_000_000.0


class FakeFleet:
    def __init__(self, shape: str, n: int = 1, stack: str = "web", region: str = "local-a") -> None:
        self.shape = shape
        self.region = region
        self.ids = [f"{stack}-{i}" for i in range(n)]

    def slots(self) -> list[SlotInfo]:
        return [SlotInfo(i, self.shape, self.region) for i in self.ids]


class FakeMetricSource:
    """Scripted readings: ``cpu`` per slot (a float for all); ``down`` raises like an unreachable backend."""

    def __init__(self) -> None:
        self.cpu: float | dict[str, float] = 0.1
        self.latency_ms = 5.0
        self.down = False
        self.calls = 0

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]:
        self.calls += 1
        if self.down:
            return {}
        out = {}
        for s in slots:
            c = self.cpu if isinstance(self.cpu, float) else self.cpu.get(s.id, math.nan)
            out[s.id] = {"cpu_cores": c, "mem_gib": 0.05, "rps": 10.0, "latency_p95_ms": self.latency_ms}
        return out


class RecordingActuator:
    def __init__(self, fleet: FakeFleet, fail: bool = False) -> None:
        self.fleet = fleet
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self.regions: list[str] = []  # the region asked for, per call

    def morph(self, shape: str, region: str, from_shape: str, now: float) -> MorphOutcome:
        self.calls.append((from_shape, shape))
        self.regions.append(region)
        if self.fail:
            return MorphOutcome(now, shape, from_shape, region, "rolled_back", "green never became healthy")
        moved = region != self.fleet.region
        self.fleet.shape, self.fleet.region = shape, region
        return MorphOutcome(now, shape, from_shape, region, "done", "blue-green" if moved else "in-place")


class ExplodingPredictor:
    """A model that raises on every call (a broken checkpoint, a bug)."""

    name = "exploding"
    horizon_s = 3600.0
    profile = "general"
    seed = 0
    notes: list[str] = []

    def learn_one(self, stream: str, sample: Any) -> None:
        raise RuntimeError("boom")

    def learn_many(self, batch: Any) -> None:
        raise RuntimeError("boom")

    def forecast(self, stream: str, horizon_s: float) -> Any:
        raise RuntimeError("boom")

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> Any:
        raise RuntimeError("boom")

    def dumps(self) -> bytes:
        return b""

    def loads(self, blob: bytes) -> None:
        raise ProviderError("no")


class ConfidentForecast:
    """Stands in for a model with days of history: every stream needs ``cpu`` cores (p95 ``cpu`` x 1.15),
    confidence 0.9. Lets a real-process test reach decisions that need confidence in seconds."""

    name = "confident"
    horizon_s = 3600.0
    profile = "general"
    seed = 0
    notes: list[str] = []

    def __init__(self, cpu: float = 1.2) -> None:
        self.cpu = cpu

    def learn_one(self, stream: str, sample: Any) -> None:
        return None

    def learn_many(self, batch: Any) -> None:
        return None

    def forecast(self, stream: str, horizon_s: float) -> Any:
        return self.forecast_many([stream], horizon_s).get(0)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> Any:
        import numpy as np

        from sculpt.forecast.base import ForecastBatch

        def col(v: float) -> Any:
            return np.full(len(streams), v)

        c = self.cpu
        return ForecastBatch(streams=list(streams), horizon_s=horizon_s, cpu_p50=col(c), cpu_p95=col(c * 1.15),
                             cpu_lo=col(c * 0.8), cpu_hi=col(c * 1.15), mem_p50=col(0.05), mem_p95=col(0.06),
                             mem_lo=col(0.04), mem_hi=col(0.06), confidence=col(0.9), samples=col(48),
                             model=self.name)

    def dumps(self) -> bytes:
        return b""

    def loads(self, blob: bytes) -> None:
        return None


def spec(**over: Any) -> FleetSpec:
    data: dict[str, Any] = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", "families": ["local-std"],
                            "replicas": {"min": 1, "max": 2, "desired": 1}}
    data.update(over)
    return parse_spec(data)


def service(*, mode: str = "auto", model: str = "river", predictor: Any = None, n: int = 1, fail: bool = False,
            sp: FleetSpec | None = None, ledger: Any = None,
            ) -> tuple[SculptorService, FakeFleet, FakeMetricSource, RecordingActuator, FakeClock]:
    sp = sp or spec()
    fleet = FakeFleet(sp.shape, n, region=sp.region)
    source = FakeMetricSource()
    act = RecordingActuator(fleet, fail)
    clock = FakeClock(T0)
    actuator: Any = act if mode == "auto" else Recommender()
    port = LivePort(sp, load_catalog("local"), fleet, source, actuator, stream_names(sp.fleet, max(n, sp.replicas.max)))
    svc = SculptorService(sp, load_catalog("local"), predictor or make_predictor(model, horizon_s=3600.0), port,
                          clock=clock, mode=mode, ledger=ledger)  # type: ignore[arg-type]
    return svc, fleet, source, act, clock


def run(svc: SculptorService, clock: FakeClock, ticks: int, step_s: float = 60.0) -> list[Any]:
    out = []
    for _ in range(ticks):
        clock.advance(step_s)
        out.append(svc.tick())
    return out
