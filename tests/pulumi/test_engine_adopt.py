"""A second machine on a shared Pulumi backend adopts the stack's history into its own (empty) ledger.

Real parts: the SDK's Automation API code, the engine, two SQLite ledgers. Double: the ``pulumi`` CLI
process (tests/pulumi/cli_double.py); one double stands for one shared backend seen from two machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pulumi.conftest import make_fleet

pytest.importorskip("pulumi")

from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402

SHARED = "s3://team-bucket/sculpt"  # what the double stands for; it ignores the URL itself


def _machine(tmp_path: Path, name: str, cli: PulumiProcessDouble) -> PulumiEngine:
    fleet = make_fleet("aws", backend_url=SHARED)
    return PulumiEngine(fleet.spec, tmp_path / name, Ledger(tmp_path / name / "ledger.db"), command=cli)


def test_process_double_a_fresh_ledger_adopts_every_version_under_its_own_number(tmp_path: Path) -> None:
    backend = PulumiProcessDouble()
    laptop = _machine(tmp_path, "laptop", backend)
    laptop.up(make_fleet("aws", backend_url=SHARED), "first")
    bigger = make_fleet("aws", backend_url=SHARED, shape="c6i.large")
    laptop.up(bigger, "bigger")
    backend.fail_up = True
    with pytest.raises(Exception):  # noqa: B017 - the cloud refused this one
        laptop.up(make_fleet("aws", backend_url=SHARED, shape="m6i.xlarge"), "too big")
    laptop.rollback(1, "rollback to 1")

    ci = _machine(tmp_path, "ci", backend)
    assert ci.current() is None  # an empty ledger knows nothing of the stack ...
    assert ci.adopt() == 4  # ... until it reads the backend's history
    mine = [(v.version, v.result, v.kind) for v in laptop.ledger.versions("web")]
    theirs = [(v.version, v.result, v.kind) for v in ci.ledger.versions("web")]
    assert theirs == mine == [(1, "succeeded", "up"), (2, "succeeded", "up"), (3, "failed", "up"),
                              (4, "succeeded", "rollback")]
    assert ci.current() == laptop.current()
    assert ci.current_version() == 4
    assert "adopted from the Pulumi backend" in ci.ledger.version("web", 2).message
    assert ci.ledger.version("web", 2).message.startswith("bigger")
    assert ci.adopt() == 0  # the ledger is up to date: nothing is adopted twice
    assert ci.up(bigger, "from CI") == 5  # numbering continues where the stack is, not at 1


def test_process_double_a_stack_the_backend_does_not_have_is_not_created(tmp_path: Path) -> None:
    backend = PulumiProcessDouble()
    ci = _machine(tmp_path, "ci", backend)
    assert ci.adopt() == 0
    assert ["stack", "init"] not in [c[:2] for c in backend.calls]
    assert backend.stacks == set()


def test_process_double_down_is_adopted_as_a_stopped_fleet(tmp_path: Path) -> None:
    backend = PulumiProcessDouble()
    laptop = _machine(tmp_path, "laptop", backend)
    laptop.up(make_fleet("aws", backend_url=SHARED), "first")
    laptop.destroy()
    ci = _machine(tmp_path, "ci", backend)
    assert ci.adopt() == 2  # the destroy carries its own number, as in the laptop's ledger
    assert [(v.version, v.kind, v.fleet["slots"] == []) for v in ci.ledger.versions("web")] == [
        (1, "up", False), (2, "down", True)]
    assert ci.current() is None


def test_process_double_a_ledger_behind_the_backend_catches_up(tmp_path: Path) -> None:
    backend = PulumiProcessDouble()
    laptop, ci = _machine(tmp_path, "laptop", backend), _machine(tmp_path, "ci", backend)
    laptop.up(make_fleet("aws", backend_url=SHARED), "first")
    assert ci.adopt() == 1
    ci.up(make_fleet("aws", backend_url=SHARED, shape="c6i.large"), "from CI")  # version 2, made elsewhere
    assert laptop.current() is not None and laptop.current().spec.shape == "m6i.large"  # type: ignore[union-attr]
    assert laptop.adopt() == 1  # only what it has not seen
    assert laptop.current_version() == 2 and laptop.current().spec.shape == "c6i.large"  # type: ignore[union-attr]
    assert laptop.up(make_fleet("aws", backend_url=SHARED), "back") == 3


def test_process_double_the_default_backend_beside_the_ledger_is_not_read_again(tmp_path: Path) -> None:
    backend = PulumiProcessDouble()
    fleet = make_fleet("aws")  # no backend_url: file:// under this state directory
    engine = PulumiEngine(fleet.spec, tmp_path / "one", Ledger(tmp_path / "one" / "ledger.db"), command=backend)
    engine.up(fleet, "first")
    calls = len(backend.calls)
    assert engine.adopt() == 0 and len(backend.calls) == calls  # no `stack history`: only we write it
