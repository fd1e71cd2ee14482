"""Shared fixtures. Real data lives in ../shared/data (beside the repository); tests that need it skip
with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCULPT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SCULPT_DATA to ../shared/data)")
    return SHARED_DATA


@pytest.fixture
def bitbrains(shared_data: Path) -> Path:
    d = shared_data / "traces" / "bitbrains_rnd"
    if not d.exists():
        pytest.skip(f"Bitbrains traces not found at {d}")
    return d


@pytest.fixture
def sculpt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated state directory (``$SCULPT_HOME``) for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("SCULPT_HOME", str(home))
    return home
