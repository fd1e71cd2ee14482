"""Refresh the AWS catalog from the EC2 API: which types each region offers, their specs and spot prices.

Why it exists: the built-in catalog is a snapshot. ``sculpt catalog refresh --provider aws`` asks EC2
(``DescribeInstanceTypeOfferings``, ``DescribeInstanceTypes``, ``DescribeSpotPriceHistory``) and writes a
CSV in the built-in columns that ``load_catalog("aws", path)`` reads. On-demand prices stay those of the
built-in catalog: they come from the Pricing API, which is not worth a dependency (and moto, which the
tests use, does not emulate it); so a type is kept only where the built-in catalog prices it.

Throttling is retried by botocore's adaptive mode; the endpoint is overridable (``endpoint_url`` or
``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ProviderError

_T = TypeVar("_T")

COLUMNS = ["shape", "family", "vcpu", "memory_gib", "gpus", "network_gbps", "storage", "arch", "region",
           "price_hour", "spot_price_hour"]
DESCRIBE_LIMIT = 100  # DescribeInstanceTypes takes at most 100 names per call


@dataclass
class RefreshReport:
    """What a refresh found: rows to write, and what it left out and why."""

    rows: list[dict[str, str]] = field(default_factory=list)
    unpriced: dict[str, int] = field(default_factory=dict)  # region -> offered types with no on-demand price
    with_spot: int = 0

    def summary(self) -> str:
        shapes = len({r["shape"] for r in self.rows})
        regions = len({r["region"] for r in self.rows})
        skipped = sum(self.unpriced.values())
        return (f"{len(self.rows)} offerings ({shapes} shapes, {regions} regions, {self.with_spot} with spot "
                f"prices); {skipped} offered types skipped for want of an on-demand price")


def make_client(service: str, region: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client with adaptive retries (throttling backs off instead of failing)."""
    import boto3
    from botocore.config import Config

    cfg = Config(retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    # boto3-stubs types client() only for literal service names; this factory takes any service
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service, region_name=region, endpoint_url=endpoint_url, config=cfg)


def network_gbps(text: str) -> str:
    """``Up to 12.5 Gigabit`` -> ``12.5`` (the built-in catalog's reading of NetworkPerformance)."""
    m = re.search(r"([\d.]+)\s*Gigabit", text or "")
    if m:
        return m.group(1)
    return {"Very Low": "0.05", "Low": "0.3", "Moderate": "0.75", "High": "5"}.get((text or "").strip(), "")


def _row(info: dict[str, Any], region: str, price: float, spot: float | None) -> dict[str, str]:
    name = info["InstanceType"]
    disks = (info.get("InstanceStorageInfo") or {}).get("Disks") or []
    archs = (info.get("ProcessorInfo") or {}).get("SupportedArchitectures") or []
    gpus = sum(g.get("Count", 0) for g in (info.get("GpuInfo") or {}).get("Gpus", []))
    return {
        "shape": name, "family": name.split(".")[0], "vcpu": str(info["VCpuInfo"]["DefaultVCpus"]),
        "memory_gib": f"{info['MemoryInfo']['SizeInMiB'] / 1024:g}", "gpus": str(gpus),
        "network_gbps": network_gbps((info.get("NetworkInfo") or {}).get("NetworkPerformance", "")),
        "storage": (disks[0].get("Type", "ssd") if disks and info.get("InstanceStorageSupported") else "none"),
        "arch": "arm64" if "arm64" in archs else "x86_64", "region": region,
        "price_hour": repr(price), "spot_price_hour": "" if spot is None else repr(spot),
    }


def _call(what: str, region: str, fn: Callable[[], _T]) -> _T:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn()
    except (ClientError, BotoCoreError) as e:
        raise ProviderError(f"EC2 {what} in {region} failed: {e}",
                            "check AWS credentials and the region, or pass --endpoint-url") from None


def _flatten(pages: Iterable[dict[str, Any]], key: str) -> list[Any]:
    """The ``key`` lists of every page of a boto3 paginator, concatenated (the pages are fetched here)."""
    return [x for pg in pages for x in pg[key]]


def offered_types(ec2: Any, region: str) -> set[str]:
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="region", Filters=[{"Name": "location", "Values": [region]}])
    offerings = _call("DescribeInstanceTypeOfferings", region,
                      functools.partial(_flatten, pages, "InstanceTypeOfferings"))
    return {o["InstanceType"] for o in offerings}


def type_info(ec2: Any, region: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(names), DESCRIBE_LIMIT):
        chunk = list(names[i:i + DESCRIBE_LIMIT])
        pages = ec2.get_paginator("describe_instance_types").paginate(InstanceTypes=chunk)
        for info in _call("DescribeInstanceTypes", region, functools.partial(_flatten, pages, "InstanceTypes")):
            out[info["InstanceType"]] = info
    return out


def spot_prices(ec2: Any, region: str, names: Sequence[str], now: datetime) -> dict[str, float]:
    """The cheapest current Linux spot price over the region's zones, per type."""
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    for i in range(0, len(names), DESCRIBE_LIMIT):
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=list(names[i:i + DESCRIBE_LIMIT]), ProductDescriptions=["Linux/UNIX"],
            StartTime=now - timedelta(hours=6), EndTime=now)
        for h in _call("DescribeSpotPriceHistory", region, functools.partial(_flatten, pages, "SpotPriceHistory")):
            key = (h["InstanceType"], h.get("AvailabilityZone", ""))
            seen = latest.get(key)
            if seen is None or h["Timestamp"] > seen[0]:
                latest[key] = (h["Timestamp"], float(h["SpotPrice"]))
    out: dict[str, float] = {}
    for (name, _), (_, price) in latest.items():
        out[name] = min(price, out.get(name, price))
    return out


def refresh_aws(regions: Iterable[str], base: Catalog, *, endpoint_url: str | None = None,
                now: datetime | None = None, client: Callable[[str, str, str | None], Any] = make_client
                ) -> RefreshReport:
    """Rows for every type each region offers and ``base`` prices there."""
    now = now or datetime.now(UTC)
    report = RefreshReport()
    for region in regions:
        ec2 = client("ec2", region, endpoint_url)
        offered = offered_types(ec2, region)
        priced = {o.shape.name: o.price_hour for o in base.offerings if o.region == region}
        names = sorted(offered & priced.keys())
        report.unpriced[region] = len(offered - priced.keys())
        infos = type_info(ec2, region, names)
        spot = spot_prices(ec2, region, names, now)
        report.with_spot += sum(1 for n in names if n in spot)
        report.rows += [_row(infos[n], region, priced[n], spot.get(n)) for n in names if n in infos]
    report.rows.sort(key=lambda r: (r["region"], r["family"], float(r["vcpu"]), r["shape"]))
    return report


def write_csv(rows: Iterable[dict[str, str]], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return out
