"""Predictor decorators the live loop forecasts through.

Why it exists: a live fleet must keep deciding when its model breaks (``Guarded`` falls back to the reactive
last-value rule and says so) and must change profile without forgetting what it learned
(``ProfileHandover`` forecasts each stream with the old profile's model until the new one is as confident).
Both are ``Predictor``s, so the loop does not know they are there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sculpt.forecast.base import Describing, ForecastBatch, Predictor, SampleBatch

log = logging.getLogger("sculpt.forecast.guard")


class Guarded(Describing):
    """A ``Predictor`` that falls back to the reactive last-value rule when its model raises.

    The fallback learns every sample too, so it is ready the moment it is needed. ``degraded`` holds the
    reason while the fallback is in use; ``model_s`` accumulates the time spent in models (the loop's
    overhead benchmark subtracts it).
    """

    def __init__(self, primary: Predictor, fallback: Predictor | None = None) -> None:
        from sculpt.forecast import make_predictor

        self.primary = primary
        self.fallback = fallback or make_predictor("last-value", horizon_s=primary.horizon_s)
        self.name = primary.name
        self.degraded: str | None = None
        self.model_s = 0.0

    @property
    def described(self) -> Predictor:
        return self.primary

    def _fail(self, what: str, e: Exception) -> None:
        reason = f"model '{self.primary.name}' failed to {what} ({type(e).__name__}: {e}); using the reactive rule"
        if self.degraded is None:
            log.warning(reason)
        self.degraded = reason

    def learn_one(self, stream: str, sample: Any) -> None:
        self.fallback.learn_one(stream, sample)
        try:
            self.primary.learn_one(stream, sample)
        except Exception as e:  # noqa: BLE001 - any model failure falls back, never stops the loop
            self._fail("learn", e)

    def learn_many(self, batch: SampleBatch) -> None:
        t0 = time.perf_counter()
        try:
            self.fallback.learn_many(batch)
            if self.degraded is None:
                try:
                    self.primary.learn_many(batch)
                except Exception as e:  # noqa: BLE001
                    self._fail("learn", e)
        finally:
            self.model_s += time.perf_counter() - t0

    def forecast(self, stream: str, horizon_s: float) -> Any:
        return self.forecast_many([stream], horizon_s).get(0)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        t0 = time.perf_counter()
        try:
            if self.degraded is None:
                try:
                    fc = self.primary.forecast_many(streams, horizon_s)
                    if np.isfinite(np.asarray(fc.cpu_p50, dtype=np.float64)).all():
                        return fc
                    raise ValueError("forecast is not finite")
                except Exception as e:  # noqa: BLE001
                    self._fail("forecast", e)
            return self.fallback.forecast_many(streams, horizon_s)
        finally:
            self.model_s += time.perf_counter() - t0

    def dumps(self) -> bytes:
        return self.primary.dumps()

    def loads(self, blob: bytes) -> None:
        self.primary.loads(blob)


class ProfileHandover(Describing):
    """A ``Predictor`` that switches a live fleet to a new profile's model without forgetting.

    A profile names the model a fleet's streams are learned by; its history (per-stream periods, residuals,
    calibration) lives inside that model and the ``Predictor`` protocol has no way to move it into another
    one. So both learn every sample, and each stream is forecast by the *old* model until the new profile's
    model is as confident about it, or confident ``enough`` (the decision's confidence floor: from there
    it may make non-urgent moves on its own; confidence grows with periods seen, so a young model would
    otherwise never catch up with an old one); ``done`` once the new one serves every stream asked for
    (the service then drops the old one). Checkpoints save the old model until then (a restart builds the
    handover again: the checkpoint's profile differs from the spec's).
    """

    def __init__(self, old: Predictor, new: Predictor, enough: float) -> None:
        self.old, self.new, self.enough = old, new, float(enough)
        self.name = new.name
        self.done = False

    @property
    def described(self) -> Predictor:
        return self.new

    def learn_one(self, stream: str, sample: Any) -> None:
        self.old.learn_one(stream, sample)
        self.new.learn_one(stream, sample)

    def learn_many(self, batch: SampleBatch) -> None:
        self.old.learn_many(batch)
        self.new.learn_many(batch)

    def forecast(self, stream: str, horizon_s: float) -> Any:
        return self.forecast_many([stream], horizon_s).get(0)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        new = self.new.forecast_many(streams, horizon_s)
        old = self.old.forecast_many(streams, horizon_s)
        nc = np.asarray(new.confidence, dtype=np.float64)
        oc = np.asarray(old.confidence, dtype=np.float64)
        use = np.isfinite(np.asarray(new.cpu_p50, dtype=np.float64)) & (np.asarray(new.samples) > 0) \
            & (nc >= np.fmin(oc, self.enough) - 1e-12)
        self.done = bool(len(streams)) and bool(use.all())
        def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.where(use, np.asarray(a), np.asarray(b))

        return replace(new, model=new.model if self.done else f"{old.model}->{new.model}",
                       cpu_p50=pick(new.cpu_p50, old.cpu_p50), cpu_p95=pick(new.cpu_p95, old.cpu_p95),
                       cpu_lo=pick(new.cpu_lo, old.cpu_lo), cpu_hi=pick(new.cpu_hi, old.cpu_hi),
                       mem_p50=pick(new.mem_p50, old.mem_p50), mem_p95=pick(new.mem_p95, old.mem_p95),
                       mem_lo=pick(new.mem_lo, old.mem_lo), mem_hi=pick(new.mem_hi, old.mem_hi),
                       confidence=pick(new.confidence, old.confidence), samples=pick(new.samples, old.samples))

    def dumps(self) -> bytes:
        return self.new.dumps() if self.done else self.old.dumps()

    def loads(self, blob: bytes) -> None:
        self.old.loads(blob)


def switch_profile(predictor: Predictor, profile: str, horizon_s: float, enough: float) -> Predictor:
    """``predictor`` handing over to a fresh model of the same kind for ``profile`` (``ProfileHandover``); the
    predictor itself when it already is that profile's."""
    from sculpt.forecast import make_predictor

    if predictor.profile == profile:
        return predictor
    base = predictor.old if isinstance(predictor, ProfileHandover) else predictor
    if base.profile == profile:
        return base  # switched back before the handover finished: the old model is that profile's
    fresh = make_predictor(predictor.name, profile=profile, seed=base.seed, horizon_s=horizon_s)
    return ProfileHandover(base, fresh, enough)


