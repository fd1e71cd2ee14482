"""What one tick of the live loop saw, predicted, decided and did: the report ``sculpt watch`` prints (one
JSON line per tick in the non-TTY view), the API serves and the live view draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sculpt.domain.plan import Plan
from sculpt.migrate.actuator import MorphOutcome


@dataclass
class InstanceReport:
    slot: str
    stream: str
    shape: str
    cpu_cores: float
    mem_gib: float
    utilisation: float
    forecast_p50: float
    forecast_p95: float
    top: list[tuple[str, float]]
    confidence: float
    decision: str
    reason: str
    rps: float = math.nan
    latency_p95_ms: float = math.nan

    def to_json(self) -> dict[str, Any]:
        def f(x: float, n: int = 4) -> float | None:
            return round(x, n) if math.isfinite(x) else None

        return {"slot": self.slot, "stream": self.stream, "shape": self.shape, "cpu_cores": f(self.cpu_cores),
                "mem_gib": f(self.mem_gib), "utilisation": f(self.utilisation), "rps": f(self.rps, 2),
                "latency_p95_ms": f(self.latency_p95_ms, 2),
                "forecast": {"cpu_p50": f(self.forecast_p50), "cpu_p95": f(self.forecast_p95)},
                "top_shapes": [{"shape": s, "p": round(p, 4)} for s, p in self.top],
                "confidence": round(self.confidence, 4), "decision": self.decision, "reason": self.reason}


@dataclass
class TickReport:
    """What one tick saw, predicted, decided and did (one JSON line in the non-TTY view)."""

    stack: str
    mode: str
    t: float
    n: int
    plan: Plan
    instances: list[InstanceReport]
    action: MorphOutcome | None
    warnings: list[str]
    tick_ms: float
    model_ms: float
    model: str

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "mode": self.mode, "t": round(self.t, 3), "tick": self.n,
                "model": self.model, "decision": self.plan.decision.value, "reason": self.plan.reason,
                "plan": self.plan.to_json(), "instances": [i.to_json() for i in self.instances],
                "action": self.action.to_json() if self.action else None, "warnings": list(self.warnings),
                "tick_ms": round(self.tick_ms, 3), "model_ms": round(self.model_ms, 3)}
