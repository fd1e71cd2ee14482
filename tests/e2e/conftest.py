"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sculpt.cli.main import app
from tests.e2e.cli_user import Cli, dead


@pytest.fixture
def cli(sculpt_home: Path, tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "proj" / "sculpt.yaml")
    c("init")
    yield c
    c.runner.invoke(app, ["down", "--spec", str(c.spec)])
    survivors = [p for p in c.pids if not dead(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert survivors == [], f"processes survived `sculpt down`: {survivors}"
