"""Which catalog a stack prices with: the spec's file, else a refreshed one, else the built-in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sculpt.app.wiring import catalog_for
from sculpt.catalog import DATA
from sculpt.domain.errors import ConfigError
from sculpt.domain.spec import parse_spec

AWS = {"fleet": "web", "engine": "pulumi", "provider": "aws", "shape": "m6i.large", "region": "us-east-1"}


def _small_catalog(path: Path, region: str) -> Path:
    rows = [line for line in (DATA / "aws.csv").read_text().splitlines()[1:] if f",{region}," in line][:5]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((DATA / "aws.csv").read_text().splitlines()[0] + "\n" + "\n".join(rows) + "\n")
    return path


def test_builtin_refreshed_and_spec_file_in_that_order(tmp_path: Path) -> None:
    home = tmp_path / ".sculpt"
    assert len(catalog_for(parse_spec(AWS), home).regions()) > 5  # built-in
    _small_catalog(home / "catalog" / "aws.csv", "eu-west-1")
    assert catalog_for(parse_spec(AWS), home).regions() == ("eu-west-1",)  # refreshed by `catalog refresh`
    _small_catalog(tmp_path / "mine.csv", "us-east-2")
    spec = parse_spec({**AWS, "catalog_file": "mine.csv"})
    assert catalog_for(spec, home, tmp_path).regions() == ("us-east-2",)  # the spec's, relative to it


def test_missing_catalog_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        catalog_for(parse_spec({**AWS, "catalog_file": "nope.csv"}), tmp_path, tmp_path)
