"""The ledger: schema version, append-only versions, locks held by live and dead pids, journal, checkpoints.

Uses a real SQLite file and real processes (a live child holding a lock, an exited child for a dead pid).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sculpt.domain.errors import ConfigError, LockedError, NotFoundError
from sculpt.ledger import SCHEMA_VERSION, Ledger, pid_alive


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.db")
    yield led
    led.close()


def test_schema_version_is_recorded_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "ledger.db")
    assert led.schema_version() == SCHEMA_VERSION
    led.close()
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="newer than this sculpt"):
        Ledger(tmp_path / "ledger.db")


def test_versions_are_numbered_per_stack_and_append_only(ledger: Ledger) -> None:
    a1 = ledger.append_version("a", spec={"fleet": "a"}, fleet={"slots": [1]}, result="succeeded", message="one")
    b1 = ledger.append_version("b", spec={"fleet": "b"}, fleet={"slots": []}, result="failed")
    a2 = ledger.append_version("a", spec={"fleet": "a"}, fleet={"slots": [2]}, result="pending", kind="rollback")
    assert (a1, b1, a2) == (1, 1, 2)
    assert [v.version for v in ledger.versions("a")] == [1, 2]
    assert ledger.latest_version("a").version == 2
    assert ledger.latest_version("a", succeeded_only=True).version == 1
    ledger.set_version_result("a", 2, "succeeded", "done")
    v2 = ledger.version("a", 2)
    assert (v2.result, v2.message, v2.kind, v2.fleet) == ("succeeded", "done", "rollback", {"slots": [2]})
    # v1 is untouched by later writes
    assert ledger.version("a", 1).fleet == {"slots": [1]} and ledger.version("a", 1).message == "one"
    assert ledger.stacks() == ["a", "b"]
    with pytest.raises(NotFoundError, match="no version 9"):
        ledger.version("a", 9)


def test_versions_survive_reopening(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    led.append_version("s", spec={}, fleet={"slots": []}, result="succeeded")
    led.close()
    again = Ledger(tmp_path / "l.db")
    assert [v.version for v in again.versions("s")] == [1]
    assert again.append_version("s", spec={}, fleet={}, result="succeeded") == 2
    again.close()


HOLDER = textwrap.dedent("""
    import sys, time
    from sculpt.ledger import Ledger
    led = Ledger(sys.argv[1])
    led.acquire("web", "up")
    print("held", flush=True)
    sys.stdin.readline()
""")


def test_lock_held_by_a_live_process_raises_locked_error_naming_it(ledger: Ledger) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ledger.path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"locked by pid {proc.pid} since \d{{4}}-\d\d-\d\dT") as ei:
            ledger.acquire("web")
        assert f"kill {proc.pid}" in str(ei.value)
        # a different stack is not blocked
        with ledger.lock("api"):
            assert ledger.lock_holder("api")[0] != proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_lock_of_a_dead_pid_is_recovered_with_a_warning(ledger: Ledger, caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # a logging.config call elsewhere in the session (import-linter) may have disabled existing loggers
    monkeypatch.setattr(logging.getLogger("sculpt.ledger"), "disabled", False)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ledger.path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)
    proc.stdout.close()
    assert not pid_alive(proc.pid)
    assert ledger.lock_holder("web")[0] == proc.pid  # the dead process never released it
    with caplog.at_level(logging.WARNING, logger="sculpt.ledger"), ledger.lock("web", "up"):
        assert ledger.lock_holder("web")[0] != proc.pid
    assert any(f"dead pid {proc.pid}" in r.getMessage() for r in caplog.records)
    assert ledger.lock_holder("web") is None


def test_lock_is_reentrant_within_a_process_and_released_after(ledger: Ledger) -> None:
    with ledger.lock("web"), ledger.lock("web"):
        assert ledger.lock_holder("web") is not None
    assert ledger.lock_holder("web") is None


def test_journal_round_trip(ledger: Ledger) -> None:
    ledger.begin_migration("m1", "web", "blue-green", {"slots": ["a"]}, {"slots": ["b"]}, "PLAN", when=10.0)
    s1 = ledger.journal("m1", "PROVISION_GREEN", {"green": ["web-0#1"]}, when=11.0)
    s2 = ledger.journal("m1", "WAIT_HEALTHY", when=12.0)
    assert s2 > s1
    assert [m.id for m in ledger.unfinished_migrations("web")] == ["m1"]
    entries = ledger.journal_entries("m1")
    assert [(e.state, e.time) for e in entries] == [("PLAN", 10.0), ("PROVISION_GREEN", 11.0), ("WAIT_HEALTHY", 12.0)]
    assert entries[1].data == {"green": ["web-0#1"]}
    m = ledger.migration("m1")
    assert (m.state, m.source, m.target, m.result) == ("WAIT_HEALTHY", {"slots": ["a"]}, {"slots": ["b"]}, None)
    ledger.end_migration("m1", "rolled_back", "green unhealthy", when=13.0)
    assert ledger.unfinished_migrations() == []
    assert ledger.migration("m1").reason == "green unhealthy"
    with pytest.raises(NotFoundError):
        ledger.journal("nope", "X")


def test_checkpoints_round_trip_and_overwrite(ledger: Ledger) -> None:
    blob = bytes(range(256)) * 4
    ledger.save_checkpoint("web/general", "river", blob, {"samples": 3})
    assert ledger.load_checkpoint("web/general", "river") == (blob, {"samples": 3})
    ledger.save_checkpoint("web/general", "river", b"new", {"samples": 4})
    assert ledger.load_checkpoint("web/general", "river") == (b"new", {"samples": 4})
    assert ledger.load_checkpoint("web/general", "lstm") is None
    assert [c[:2] for c in ledger.checkpoints()] == [("web/general", "river")]


def test_rollups_filter_by_time(ledger: Ledger) -> None:
    ledger.add_rollup("web", "web-0", 100.0, {"cpu": 0.5})
    ledger.add_rollup("web", "web-0", 200.0, {"cpu": 0.7})
    assert [(t, d["cpu"]) for _, t, d in ledger.rollups("web", since=150.0)] == [(200.0, 0.7)]
    assert json.dumps(ledger.rollups("other")) == "[]"
