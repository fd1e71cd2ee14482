"""Shapes, offerings and the catalog queries every layer needs (pure: loading lives in ``sculpt.catalog``).

A *shape* is an instance type (``m6i.large``, ``local-2x1024``); an *offering* is a shape sold in a region at
a price. A *demand* is what the application needs. The catalog answers three questions: which offerings
meet a demand, which is the cheapest fit, and what a shape costs in a region.

>>> small = Shape(name="s1", family="s", vcpu=1, memory_gib=2)
>>> big = Shape(name="s2", family="s", vcpu=2, memory_gib=4)
>>> cat = Catalog("demo", [Offering(shape=small, region="r1", price_hour=0.05),
...                        Offering(shape=big, region="r1", price_hour=0.10)])
>>> cat.cheapest_fit(Demand(cpu_cores=1.5, memory_gib=1)).shape.name
's2'
>>> cat.price("s1", "r1")
0.05
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sculpt.domain.errors import ConfigError, NotFoundError

Storage = Literal["none", "ssd", "hdd"]


class Shape(BaseModel):
    """An instance type: what one instance of it provides."""

    model_config = ConfigDict(frozen=True)

    name: str
    family: str
    vcpu: float = Field(gt=0, description="virtual CPUs (cores for the local provider)")
    memory_gib: float = Field(gt=0)
    gpus: int = 0
    network_gbps: float | None = None
    storage: Storage = "none"
    arch: str = "x86_64"


class Offering(BaseModel):
    """A shape for sale in a region."""

    model_config = ConfigDict(frozen=True)

    shape: Shape
    region: str
    price_hour: float = Field(description="on-demand $/hour")
    spot_price_hour: float | None = None


class Demand(BaseModel):
    """What an application needs from one instance. Zero means 'no constraint'."""

    model_config = ConfigDict(frozen=True)

    cpu_cores: float = 0.0
    memory_gib: float = 0.0
    gpus: int = 0
    network_gbps: float = 0.0
    storage: Storage | None = None

    def met_by(self, shape: Shape) -> bool:
        if shape.vcpu < self.cpu_cores or shape.memory_gib < self.memory_gib or shape.gpus < self.gpus:
            return False
        if self.network_gbps > 0 and (shape.network_gbps or 0.0) < self.network_gbps:
            return False
        return not (self.storage and self.storage != "none" and shape.storage != self.storage)


class CatalogArrays:
    """Column arrays of one region's offerings, sorted by price, for vectorised queries."""

    def __init__(self, offerings: Sequence[Offering]) -> None:
        ordered = sorted(offerings, key=lambda o: (o.price_hour, o.shape.vcpu, o.shape.memory_gib, o.shape.name))
        self.offerings: list[Offering] = ordered
        self.names = np.array([o.shape.name for o in ordered], dtype=object)
        self.families = np.array([o.shape.family for o in ordered], dtype=object)
        self.vcpu = np.array([o.shape.vcpu for o in ordered], dtype=np.float64)
        self.memory_gib = np.array([o.shape.memory_gib for o in ordered], dtype=np.float64)
        self.gpus = np.array([o.shape.gpus for o in ordered], dtype=np.int64)
        self.price = np.array([o.price_hour for o in ordered], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.offerings)

    def cheapest_fit_index(self, cpu: np.ndarray, mem: np.ndarray) -> np.ndarray:
        """For each (cpu, mem) row, the index of the cheapest offering covering it; -1 if none does.

        Offerings are sorted by price, so the first covering column is the cheapest.
        """
        cpu = np.asarray(cpu, dtype=np.float64)
        mem = np.asarray(mem, dtype=np.float64)
        ok = (self.vcpu[None, :] >= cpu[:, None]) & (self.memory_gib[None, :] >= mem[:, None])
        idx = ok.argmax(axis=1)
        return np.where(ok.any(axis=1), idx, -1)


class Catalog:
    """An immutable set of offerings of one provider with the queries sculpt needs."""

    def __init__(self, provider: str, offerings: Iterable[Offering]) -> None:
        self.provider = provider
        self.offerings: tuple[Offering, ...] = tuple(offerings)
        self._by_key = {(o.shape.name, o.region): o for o in self.offerings}
        self._shapes = {o.shape.name: o.shape for o in self.offerings}

    def __len__(self) -> int:
        return len(self.offerings)

    def __repr__(self) -> str:
        return f"Catalog({self.provider!r}, {len(self.shapes())} shapes, {len(self.regions())} regions)"

    @cached_property
    def _regions(self) -> tuple[str, ...]:
        return tuple(sorted({o.region for o in self.offerings}))

    def regions(self) -> tuple[str, ...]:
        return self._regions

    def shapes(self) -> dict[str, Shape]:
        return dict(self._shapes)

    def shape(self, name: str) -> Shape:
        try:
            return self._shapes[name]
        except KeyError:
            raise NotFoundError(
                f"shape '{name}' is not in the {self.provider} catalog",
                f"pick one listed by `sculpt catalog --provider {self.provider}`",
            ) from None

    def offering(self, shape: str, region: str) -> Offering:
        o = self._by_key.get((shape, region))
        if o is None:
            self.shape(shape)
            if region not in self._regions:
                raise NotFoundError(
                    f"region '{region}' is not in the {self.provider} catalog",
                    f"use one of: {', '.join(self._regions[:12])}",
                )
            raise NotFoundError(
                f"shape '{shape}' is not offered in region '{region}'",
                f"pick a shape that `sculpt catalog --provider {self.provider} --region {region}` lists",
            )
        return o

    def price(self, shape: str, region: str, *, spot: bool = False) -> float:
        """$/hour of ``shape`` in ``region`` (spot if asked and known, else on-demand)."""
        o = self.offering(shape, region)
        if spot and o.spot_price_hour is not None:
            return o.spot_price_hour
        return o.price_hour

    def filter(
        self,
        *,
        regions: Iterable[str] | None = None,
        families: Iterable[str] | None = None,
        shapes: Iterable[str] | None = None,
    ) -> Catalog:
        """A sub-catalog; empty or ``None`` filters mean 'all'."""
        rs = set(regions or ())
        fs = set(families or ())
        ss = set(shapes or ())
        kept = [
            o
            for o in self.offerings
            if (not rs or o.region in rs) and (not fs or o.shape.family in fs) and (not ss or o.shape.name in ss)
        ]
        return Catalog(self.provider, kept)

    def meeting(self, demand: Demand, region: str | None = None) -> list[Offering]:
        """Offerings whose shape meets ``demand``, cheapest first (ties by size, then name)."""
        out = [o for o in self.offerings if (region is None or o.region == region) and demand.met_by(o.shape)]
        out.sort(key=lambda o: (o.price_hour, o.shape.vcpu, o.shape.memory_gib, o.shape.name, o.region))
        return out

    def cheapest_fit(self, demand: Demand, region: str | None = None) -> Offering:
        """The cheapest offering meeting ``demand``; ``ConfigError`` when nothing is large enough."""
        fits = self.meeting(demand, region)
        if not fits:
            raise ConfigError(
                f"no {self.provider} shape{' in ' + region if region else ''} meets "
                f"{demand.cpu_cores:g} vCPU / {demand.memory_gib:g} GiB",
                "allow larger shape families or more regions in sculpt.yaml",
            )
        return fits[0]

    def arrays(self, region: str) -> CatalogArrays:
        """Column arrays of the region's offerings sorted by price (cached)."""
        cache: dict[str, CatalogArrays] = self.__dict__.setdefault("_arrays", {})
        if region not in cache:
            offs = [o for o in self.offerings if o.region == region]
            if not offs:
                self.offering(next(iter(self._shapes), ""), region)
            cache[region] = CatalogArrays(offs)
        return cache[region]


def finite_price(p: float | None) -> bool:
    return p is not None and math.isfinite(p) and p >= 0
