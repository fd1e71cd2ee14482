"""``sculpt catalog refresh --provider aws`` against moto's EC2 over real HTTP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sculpt.catalog import load_catalog
from sculpt.catalog.refresh import COLUMNS, refresh_aws, write_csv
from sculpt.cli.main import app


def test_refresh_keeps_offered_priced_types_with_specs_from_the_api(moto_url: str) -> None:
    base = load_catalog("aws")
    report = refresh_aws(["us-east-1", "eu-west-1"], base, endpoint_url=moto_url)
    assert {r["region"] for r in report.rows} == {"us-east-1", "eu-west-1"}
    by_key = {(r["shape"], r["region"]): r for r in report.rows}
    m6i = by_key[("m6i.large", "us-east-1")]
    assert (m6i["family"], m6i["vcpu"], m6i["memory_gib"], m6i["arch"]) == ("m6i", "2", "8", "x86_64")
    assert by_key[("m7g.large", "us-east-1")]["arch"] == "arm64"
    # on-demand prices come from the built-in catalog; every row is priced there
    for (shape, region), row in by_key.items():
        assert float(row["price_hour"]) == pytest.approx(base.price(shape, region))
    assert report.with_spot > 0 and m6i["spot_price_hour"] != ""
    assert sum(report.unpriced.values()) > 0  # moto offers far more types than the built-in catalog prices


def test_refreshed_csv_loads_as_a_catalog(moto_url: str, tmp_path: Path) -> None:
    report = refresh_aws(["us-east-2"], load_catalog("aws"), endpoint_url=moto_url)
    path = write_csv(report.rows, tmp_path / "aws.csv")
    with open(path) as fh:
        assert next(csv.reader(fh)) == COLUMNS
    cat = load_catalog("aws", path)
    assert cat.regions() == ("us-east-2",)
    assert cat.offering("c6i.xlarge", "us-east-2").spot_price_hour is not None
    assert len(cat) == len(report.rows)


def test_cli_refresh_writes_the_file_and_summarises(moto_url: str, tmp_path: Path) -> None:
    out = tmp_path / "refreshed.csv"
    r = CliRunner().invoke(app, ["catalog", "refresh", "--provider", "aws", "--regions", "us-east-1,eu-west-1",
                                 "--out", str(out), "--endpoint-url", moto_url])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"wrote {out}: ") and "2 regions" in r.stdout
    assert load_catalog("aws", out).regions() == ("eu-west-1", "us-east-1")


def test_cli_refresh_takes_the_endpoint_from_the_environment(moto_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("SCULPT_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["catalog", "refresh", "--regions", "ap-south-1", "--json"])
    assert r.exit_code == 0, r.output
    written = tmp_path / "home" / "catalog" / "aws.csv"
    assert written.exists()
    # the listing now shows what the refresh wrote, as the stacks price with it (not the built-in 14 regions)
    listed = CliRunner().invoke(app, ["catalog", "--provider", "aws", "--json"])
    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert body["source"] == str(written)
    assert body["regions"] == ["ap-south-1"]
    assert {o["region"] for o in body["offerings"]} == {"ap-south-1"}


def test_cli_refresh_for_gcp_is_a_one_line_error() -> None:
    r = CliRunner().invoke(app, ["catalog", "refresh", "--provider", "gcp"])
    assert r.exit_code == 1
    assert r.stderr.strip() == ("error: catalog refresh is built for aws, not 'gcp'. To fix: use --provider aws; "
                                "the GCP catalog is the built-in one.")


def test_catalog_listing_without_a_refresh_is_the_built_in_catalog(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCULPT_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["catalog", "--provider", "aws", "--region", "us-east-1", "--min-vcpu", "64",
                                 "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert (body["provider"], body["source"]) == ("aws", "built-in")
    assert body["offerings"] and all(o["vcpu"] >= 64 for o in body["offerings"])
