"""Built-in catalogs: AWS and GCP facts derived from public price lists, and the machine's ``local`` shapes.

``load_catalog("aws")`` reads the compact CSV shipped in ``sculpt/catalog/data`` (rebuilt by
``scripts/build_catalog.py``); ``local_catalog()`` makes shapes from a quarter core up to this machine's
cores in two local regions with different prices, so cost and geography are real on one machine.
"""

from __future__ import annotations

import csv
import os
from functools import lru_cache
from pathlib import Path

from sculpt.domain.catalog import Catalog, Offering, Shape
from sculpt.domain.errors import ConfigError

DATA = Path(__file__).parent / "data"
PROVIDERS = ("aws", "gcp", "local", "sim")

# Local regions and their prices: $/h per core and per GiB. local-b is cheaper, as a far-away zone would be.
LOCAL_REGIONS: dict[str, tuple[float, float]] = {"local-a": (0.040, 0.005), "local-b": (0.032, 0.004)}


def _f(x: str) -> float | None:
    return float(x) if x not in ("", None) else None


@lru_cache(maxsize=8)
def _load_csv(path: str, provider: str) -> Catalog:
    offerings = []
    shapes: dict[str, Shape] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            name = r["shape"]
            shape = shapes.get(name)
            if shape is None:
                shape = Shape(
                    name=name,
                    family=r["family"],
                    vcpu=float(r["vcpu"]),
                    memory_gib=float(r["memory_gib"]),
                    gpus=int(r["gpus"] or 0),
                    network_gbps=_f(r["network_gbps"]),
                    storage=r["storage"] or "none",  # type: ignore[arg-type]
                    arch=r["arch"] or "x86_64",
                )
                shapes[name] = shape
            offerings.append(
                Offering(shape=shape, region=r["region"], price_hour=float(r["price_hour"]),
                         spot_price_hour=_f(r["spot_price_hour"]))
            )
    return Catalog(provider, offerings)


def local_shapes(cores: int | None = None) -> list[Shape]:
    """Shapes from a quarter core to ``cores`` (default: this machine's), in two families."""
    n = cores or os.cpu_count() or 1
    sizes = [0.25, 0.5] + [float(c) for c in range(1, n + 1)]
    out = []
    for c in sizes:
        for family, mib_per_core in (("local-std", 1024), ("local-mem", 4096)):
            mem_mb = int(c * mib_per_core)
            out.append(
                Shape(name=f"{family.split('-')[1]}-{c:g}c-{mem_mb}m", family=family, vcpu=c,
                      memory_gib=mem_mb / 1024, storage="ssd")
            )
    return out


def local_catalog(cores: int | None = None) -> Catalog:
    offerings = [
        Offering(shape=s, region=region, price_hour=round(s.vcpu * per_core + s.memory_gib * per_gib, 6))
        for region, (per_core, per_gib) in LOCAL_REGIONS.items()
        for s in local_shapes(cores)
    ]
    return Catalog("local", offerings)


def load_catalog(provider: str, path: str | Path | None = None) -> Catalog:
    """The catalog for ``provider``; ``path`` overrides the built-in CSV (e.g. after ``catalog refresh``).

    ``sim`` uses the AWS catalog unless a path is given (replays price real shapes).
    """
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"catalog file {p} does not exist", "pass an existing CSV or drop --catalog-file")
        return _load_csv(str(p), provider)
    if provider == "local":
        return local_catalog()
    if provider in ("aws", "sim"):
        return _load_csv(str(DATA / "aws.csv"), "aws")
    if provider == "gcp":
        return _load_csv(str(DATA / "gcp.csv"), "gcp")
    raise ConfigError(f"unknown provider '{provider}'", f"use one of: {', '.join(PROVIDERS)}")


def refreshed_path(provider: str, home: str | Path) -> Path | None:
    """The CSV ``sculpt catalog refresh`` wrote for ``provider`` under the state directory ``home``, if any.

    Stacks price with it (``sculpt.app.wiring.catalog_for``) and ``sculpt catalog`` lists it, so both agree.
    """
    p = Path(home) / "catalog" / f"{provider}.csv"
    return p if provider in ("aws", "gcp") and p.exists() else None
