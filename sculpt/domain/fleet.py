"""The desired fleet: what a stack version holds (slots of shape, region, colour and traffic weight).

A ``Fleet`` is derived from a ``FleetSpec`` (``Fleet.from_spec``) and changed only by new stack versions.
Blue/green morphs add ``green`` slots at weight 0, shift weights, then remove ``blue`` slots.

>>> from sculpt.domain.spec import parse_spec
>>> f = Fleet.from_spec(parse_spec({"fleet": "web", "shape": "local-1x512", "region": "local-a"}))
>>> [(s.id, s.shape, s.colour, s.weight) for s in f.slots]
[('web-0', 'local-1x512', 'blue', 100)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sculpt.domain.spec import FleetSpec

Colour = Literal["blue", "green"]


class Slot(BaseModel):
    """One instance the fleet should have."""

    model_config = ConfigDict(frozen=True)

    id: str
    shape: str
    region: str
    colour: Colour = "blue"
    weight: int = Field(100, ge=0, le=1000, description="share of traffic relative to other slots")


class Fleet(BaseModel):
    """Desired state of one stack: the spec it came from and its slots."""

    model_config = ConfigDict(frozen=True)

    spec: FleetSpec
    slots: tuple[Slot, ...]

    @property
    def name(self) -> str:
        return self.spec.fleet

    @classmethod
    def from_spec(cls, spec: FleetSpec) -> Fleet:
        slots = tuple(
            Slot(id=f"{spec.fleet}-{i}", shape=spec.shape, region=spec.region)
            for i in range(spec.replicas.desired)
        )
        return cls(spec=spec, slots=slots)

    def with_slots(self, slots: tuple[Slot, ...] | list[Slot]) -> Fleet:
        return Fleet(spec=self.spec, slots=tuple(slots))

    def shapes(self) -> list[str]:
        return sorted({s.shape for s in self.slots})

    def hourly_cost(self, price: dict[tuple[str, str], float]) -> float:
        """Sum of $/h over slots, given prices keyed by (shape, region)."""
        return sum(price[(s.shape, s.region)] for s in self.slots)


@dataclass(frozen=True)
class SlotInfo:
    """A serving instance as the live loop sees it: slot id, shape, region, and how to measure it (pid,
    ``host:port``)."""

    id: str
    shape: str
    region: str
    pid: int | None = None
    address: str | None = None
    healthy: bool = True
