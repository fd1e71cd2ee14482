"""The pulumi engine against the real ``pulumi`` CLI (skipped here: the CLI cannot be installed on this
project's machines; CI machines or laptops with the CLI run them).

The first test needs only the CLI (file backend, passphrase secrets, no cloud). The second also needs
cloud credentials and the provider plugin, so it runs only with ``SCULPT_PULUMI_CLOUD_TESTS=1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.pulumi.conftest import make_fleet

pytestmark = [
    pytest.mark.pulumi_cli,
    pytest.mark.skipif(shutil.which("pulumi") is None, reason="the Pulumi CLI is not on PATH"),
]


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from sculpt.engine.pulumi_engine import PulumiEngine
    from sculpt.ledger import Ledger

    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    fleet = make_fleet("aws")
    return PulumiEngine(fleet.spec, tmp_path / "state", Ledger(tmp_path / "state" / "ledger.db"))


def test_real_cli_creates_a_file_backend_stack_with_empty_history(engine, tmp_path: Path) -> None:  # noqa: ANN001
    assert engine.history() == []
    assert (tmp_path / "state" / "pulumi" / "backend" / ".pulumi").exists()


def test_real_cli_outputs_of_a_stack_never_updated_are_empty(engine) -> None:  # noqa: ANN001
    assert engine.outputs() == {}


@pytest.mark.skipif(os.environ.get("SCULPT_PULUMI_CLOUD_TESTS") != "1",
                    reason="set SCULPT_PULUMI_CLOUD_TESTS=1 with AWS credentials to preview against AWS")
def test_real_cli_previews_an_aws_fleet(engine) -> None:  # noqa: ANN001
    diff = engine.preview(make_fleet("aws"))
    assert diff.resources.get("create", 0) >= 8  # security groups, ALB, target groups, template, instance...
    assert diff.warnings == ()
