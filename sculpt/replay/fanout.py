"""One forecast, many sculptors: the aggressiveness sweep of ``sculpt replay --suite --curves`` pays for the
model once.

The forecast does not depend on the decision: every sculptor of a sweep learns the same samples (the
traces'), at the same ticks, for the same live rows, so its model would say the same thing. ``Lead`` wraps
the real predictor for the first sculptor and remembers each ``forecast_many`` answer; every other sculptor
gets an ``Echo`` of it, which learns nothing (the lead already did) and returns the lead's answer of this
tick. The harness ticks the lead first at every step, so the echo's answer is always the current one; a
call for other streams or another horizon is a programming error and raises.

This holds while learning reads only demand. Should the loop ever teach the model something that depends
on the shape served (censored demand at saturation, say), the sweep must give each sculptor its own model.
"""

from __future__ import annotations

from collections.abc import Sequence

from sculpt.domain.forecast import Forecast
from sculpt.forecast.base import Describing, ForecastBatch, Predictor, Sample, SampleBatch


class Lead(Describing):
    """The sweep's real predictor, remembering its last batched forecast for the ``Echo`` sculptors."""

    def __init__(self, inner: Predictor) -> None:
        self.inner = inner
        self.name = inner.name
        self.last: tuple[list[str], float, ForecastBatch] | None = None

    @property
    def described(self) -> Predictor:
        return self.inner

    def learn_one(self, stream: str, sample: Sample) -> None:
        self.inner.learn_one(stream, sample)

    def learn_many(self, batch: SampleBatch) -> None:
        self.inner.learn_many(batch)

    def forecast(self, stream: str, horizon_s: float) -> Forecast:
        return self.inner.forecast(stream, horizon_s)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        fc = self.inner.forecast_many(streams, horizon_s)
        self.last = (list(streams), horizon_s, fc)
        return fc

    def dumps(self) -> bytes:
        return self.inner.dumps()

    def loads(self, blob: bytes) -> None:
        self.inner.loads(blob)


class Echo(Describing):
    """A sweep sculptor's predictor: the lead's forecast of this tick, without learning or forecasting again."""

    def __init__(self, lead: Lead) -> None:
        self.lead = lead
        self.name = lead.name

    @property
    def described(self) -> Predictor:
        return self.lead

    def learn_one(self, stream: str, sample: Sample) -> None:
        return None

    def learn_many(self, batch: SampleBatch) -> None:
        return None

    def forecast(self, stream: str, horizon_s: float) -> Forecast:
        return self.lead.inner.forecast(stream, horizon_s)

    def forecast_many(self, streams: Sequence[str], horizon_s: float) -> ForecastBatch:
        last = self.lead.last
        if last is None or last[1] != horizon_s or last[0] != list(streams):
            raise RuntimeError("an echoed sculptor must tick after its lead, on the same streams and horizon")
        return last[2]

    def dumps(self) -> bytes:
        return b""

    def loads(self, blob: bytes) -> None:
        return None
