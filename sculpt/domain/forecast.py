"""What the predictive engine hands to the decision: a demand forecast.

``Forecast`` holds quantiles of an instance's demand over the horizon and a confidence score in [0, 1]; the
probability over shapes is the decision's (``sculpt.decide.distribution``).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class Forecast(BaseModel):
    """Demand of one instance stream over ``horizon_s`` seconds ahead.

    ``cpu_*`` are CPU cores used, ``mem_*`` memory GiB used, at the median (p50) and upper (p95) quantiles
    of the horizon's peak; ``*_lo``/``*_hi`` bound a 90 % interval. ``confidence`` is in [0, 1].
    """

    model_config = ConfigDict(frozen=True)

    horizon_s: float
    cpu_p50: float
    cpu_p95: float
    cpu_lo: float
    cpu_hi: float
    mem_p50: float = 0.0
    mem_p95: float = 0.0
    mem_lo: float = 0.0
    mem_hi: float = 0.0
    confidence: float = Field(0.0, ge=0, le=1)
    model: str = "unknown"
    samples: int = Field(0, description="how much history the model has seen for this stream")

    def is_finite(self) -> bool:
        return all(
            math.isfinite(v)
            for v in (self.cpu_p50, self.cpu_p95, self.cpu_lo, self.cpu_hi, self.mem_p50, self.mem_p95)
        )
