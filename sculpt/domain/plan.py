"""A ``Plan`` is the decision's output: a frozen value that explains itself.

``str(plan)`` is the text ``sculpt plan`` prints and a pull-request comment shows.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Decision(str, Enum):  # noqa: UP042 - str(Decision.X) and f-strings rely on the Enum behaviour
    HOLD = "hold"
    MIGRATE = "migrate"
    SCALE = "scale"
    BLOCKED = "blocked"


class Action(BaseModel):
    """One change to the fleet: move a slot to another shape/region, or change the replica count."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["resize", "move", "scale"]
    slot: str | None = None
    from_shape: str | None = None
    to_shape: str | None = None
    from_region: str | None = None
    to_region: str | None = None
    replicas: int | None = None
    why: str = ""  # the decision's code for this action (``sculpt.decide.decision.Why``, lower case)

    def __str__(self) -> str:
        if self.kind == "scale":
            return f"scale to {self.replicas} replicas"
        where = f" ({self.from_region} -> {self.to_region})" if self.from_region != self.to_region else ""
        return f"{self.slot}: {self.from_shape} -> {self.to_shape}{where}"


class RuleResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    level: Literal["mandatory", "advisory"] = "mandatory"
    passed: bool
    message: str


class Plan(BaseModel):
    """What to do next and why."""

    model_config = ConfigDict(frozen=True)

    stack: str
    decision: Decision
    actions: tuple[Action, ...] = ()
    reason: str
    expected_monthly_delta_usd: float = 0.0
    risk: float = Field(0.0, ge=0, le=1, description="estimated chance the candidate breaches the SLO")
    confidence: float = Field(0.0, ge=0, le=1)
    distribution: dict[str, float] = Field(default_factory=dict)
    policy: tuple[RuleResult, ...] = ()
    urgent: bool = False
    why: str = ""  # the code of the reason (``sculpt.decide.decision.Why``, lower case)
    figures: dict[str, float] = Field(default_factory=dict)  # the numbers that decided it (USD over the
    # payback window, breach chances): net, benefit, migration, threshold, breach_current, breach_target

    @property
    def allowed(self) -> bool:
        return all(r.passed for r in self.policy if r.level == "mandatory")

    def __str__(self) -> str:
        lines = [f"{self.stack}: {self.decision.value} — {self.reason}"]
        for a in self.actions:
            lines.append(f"  * {a}")
        sign = "+" if self.expected_monthly_delta_usd >= 0 else "-"
        lines.append(
            f"  expected {sign}${abs(self.expected_monthly_delta_usd):,.2f}/month, risk {self.risk:.0%}, "
            f"confidence {self.confidence:.0%}"
        )
        for r in self.policy:
            mark = "ok" if r.passed else ("BLOCK" if r.level == "mandatory" else "warn")
            lines.append(f"  [{mark}] {r.rule}: {r.message}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The plan as a pull-request comment: what changes, why, $/month, confidence, policy results."""
        verdict = "allowed" if self.allowed else "**blocked by policy**"
        sign = "+" if self.expected_monthly_delta_usd >= 0 else "-"
        lines = [
            f"### sculpt plan for `{self.stack}`: {self.decision.value} ({verdict})",
            "",
            f"**Why:** {self.reason}",
            "",
        ]
        if self.actions:
            lines += ["| change | slot | from | to |", "|---|---|---|---|"]
            for a in self.actions:
                if a.kind == "scale":
                    lines.append(f"| scale | all | | {a.replicas} replicas |")
                else:
                    lines.append(f"| {a.kind} | {a.slot or 'all'} | {a.from_shape or ''} {a.from_region or ''} "
                                 f"| {a.to_shape or ''} {a.to_region or ''} |")
        else:
            lines.append("No changes to the fleet.")
        lines += [
            "",
            f"- expected cost change: **{sign}${abs(self.expected_monthly_delta_usd):,.2f}/month**",
            f"- confidence: {self.confidence:.0%}, risk of SLO breach: {self.risk:.0%}"
            + (" (urgent)" if self.urgent else ""),
        ]
        if self.policy:
            lines += ["", "| policy rule | level | result | detail |", "|---|---|---|---|"]
            for r in self.policy:
                mark = "pass" if r.passed else ("**FAIL**" if r.level == "mandatory" else "warn")
                lines.append(f"| {r.rule} | {r.level} | {mark} | {r.message.replace('|', '/')} |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {
            "stack": self.stack,
            "decision": self.decision.value,
            "actions": [a.model_dump() for a in self.actions],
            "reason": self.reason,
            "expected_monthly_delta_usd": round(self.expected_monthly_delta_usd, 4),
            "confidence": round(self.confidence, 4),
            "risk": round(self.risk, 4),
            "urgent": self.urgent,
            "why": self.why,
            "figures": {k: round(v, 6) for k, v in self.figures.items()},
            "distribution": {k: round(v, 6) for k, v in self.distribution.items()},
            "policy": [r.model_dump() for r in self.policy],
        }
