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


# The files that take longest (real processes, the demo, random kill sequences), slowest first. With
# ``--dist loadfile`` a worker runs a whole file, so a long file handed out last leaves the other worker
# idle while it finishes: handing them out first keeps both busy to the end. Scheduling only.
SLOW_FIRST = ("tests/sculptor/test_cli_e2e.py", "tests/statesafety/test_cases.py",
              "tests/statesafety/test_state_machine.py", "tests/pulumi/test_cli_verbs_on_pulumi.py",
              "tests/local/test_agent_death.py", "tests/migrate/test_migrate_e2e.py", "tests/aws/test_cloud_morph.py",
              "tests/aws/test_cloud_volume_morph.py", "tests/replay/test_replay_real.py", "tests/fuzz/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, p in enumerate(SLOW_FIRST) if item.nodeid.startswith(p)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the order within a file and among the rest is kept
