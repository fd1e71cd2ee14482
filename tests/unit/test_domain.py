"""Spec validation, catalog queries and fleet derivation (pure domain code)."""

from __future__ import annotations

import math

import pytest

from sculpt.catalog import load_catalog, local_catalog
from sculpt.domain import ConfigError, Demand, Fleet, NotFoundError
from sculpt.domain.spec import load_spec, parse_spec

BASE = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a"}


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.engine == "local" and spec.provider == "local" and spec.profile == "general"
    assert spec.replicas.desired == 1 and spec.app.state_sync.strategy == "http"
    assert spec.allowed_regions == ["local-a"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provider": "azure"}, "provider"),
        ({"profile": "fast"}, "profile"),
        ({"aggressiveness": 1.5}, "aggressiveness"),
        ({"replicas": {"min": 3, "max": 1, "desired": 1}}, "replicas"),
        ({"fleet": "Web Fleet"}, "fleet"),
        ({"colour": "blue"}, "colour"),
        ({"slo": {"max_utilisation": 0}}, "slo.max_utilisation"),
        ({"provider": "aws"}, "(top level)"),
    ],
)
def test_bad_spec_is_one_line_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_spec({**BASE, **change})
    msg = str(e.value)
    assert "\n" not in msg
    assert f"'{field}'" in msg or field == "(top level)"
    assert "To fix:" in msg


def test_missing_required_field() -> None:
    with pytest.raises(ConfigError, match="field 'shape' is required"):
        parse_spec({"fleet": "web", "region": "local-a"})


def test_load_spec_errors(tmp_path) -> None:
    with pytest.raises(NotFoundError, match="sculpt init"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("fleet: web\n  shape: [oops\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(bad)


def test_catalogs_cover_required_regions_and_families() -> None:
    aws = load_catalog("aws")
    assert len(aws.regions()) >= 10
    fams = {s.family for s in aws.shapes().values()}
    assert {"m6i", "c6i", "r6i", "m7i", "c7i", "r7i", "m5", "c5", "r5"} <= fams
    gcp = load_catalog("gcp")
    assert len(gcp.regions()) >= 6
    assert any(o.spot_price_hour for o in gcp.offerings)
    assert all(o.price_hour > 0 and math.isfinite(o.price_hour) for o in (*aws.offerings, *gcp.offerings))


def test_cheapest_fit_and_meeting_are_consistent() -> None:
    aws = load_catalog("aws")
    demand = Demand(cpu_cores=3, memory_gib=20)
    fits = aws.meeting(demand, "us-east-1")
    assert fits and all(o.shape.vcpu >= 3 and o.shape.memory_gib >= 20 for o in fits)
    assert [o.price_hour for o in fits] == sorted(o.price_hour for o in fits)
    assert aws.cheapest_fit(demand, "us-east-1") == fits[0]
    with pytest.raises(ConfigError, match="no aws shape"):
        aws.cheapest_fit(Demand(cpu_cores=100000), "us-east-1")


def test_vectorised_fit_matches_scalar() -> None:
    import numpy as np

    aws = load_catalog("aws").filter(families=["m6i", "c6i", "r6i"])
    arr = aws.arrays("us-east-1")
    cpu = np.array([0.1, 1.9, 2.0, 7.5, 30.0, 1e6])
    mem = np.array([0.1, 3.0, 17.0, 8.0, 250.0, 1.0])
    idx = arr.cheapest_fit_index(cpu, mem)
    for i, (c, m) in enumerate(zip(cpu, mem, strict=True)):
        fits = aws.meeting(Demand(cpu_cores=c, memory_gib=m), "us-east-1")
        if not fits:
            assert idx[i] == -1
        else:
            assert arr.price[idx[i]] == fits[0].price_hour


def test_price_lookup_and_unknowns() -> None:
    cat = local_catalog(cores=2)
    assert cat.price("std-1c-1024m", "local-b") < cat.price("std-1c-1024m", "local-a")
    with pytest.raises(NotFoundError, match="shape 'huge'"):
        cat.price("huge", "local-a")
    with pytest.raises(NotFoundError, match="region 'mars'"):
        cat.price("std-1c-1024m", "mars")


def test_local_catalog_spans_fraction_to_all_cores() -> None:
    cat = local_catalog(cores=4)
    vcpus = sorted({s.vcpu for s in cat.shapes().values()})
    assert vcpus[0] < 1 and vcpus[-1] == 4


def test_fleet_from_spec_has_one_slot_per_desired_replica() -> None:
    spec = parse_spec({**BASE, "replicas": {"min": 1, "max": 4, "desired": 3}})
    fleet = Fleet.from_spec(spec)
    assert [s.id for s in fleet.slots] == ["web-0", "web-1", "web-2"]
    assert {s.shape for s in fleet.slots} == {"std-0.5c-512m"}
