"""The ledger: schema version (and the upgrade from 1), append-only versions, their steps, the record of moves,
locks held by live and dead pids, journal, checkpoints.

Uses a real SQLite file and real processes (a live child holding a lock, an exited child for a dead pid).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sculpt.domain.errors import ConfigError, LockedError, NotFoundError
from sculpt.ledger import SCHEMA_VERSION, Ledger, migration_times, pid_alive


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


# -- schema version 2: steps, moves, the writer's pid ---------------------------------------------------------
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (
    stack TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    spec TEXT NOT NULL, fleet TEXT NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'up', PRIMARY KEY (stack, version));
CREATE TABLE locks (
    name TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, since REAL NOT NULL, purpose TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO versions VALUES ('web', 1, 5.0, '{"fleet": "web"}', '{"slots": [{"id": "web-0"}]}', 'succeeded',
                             'up', 'up');
INSERT INTO versions VALUES ('web', 2, 6.0, '{"fleet": "web"}', '{"slots": []}', 'pending', 'morph', 'up');
"""


def test_a_version_1_ledger_is_upgraded_in_place_and_keeps_its_history(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.executescript(V1_SCHEMA)
    db.close()
    led = Ledger(tmp_path / "ledger.db")
    try:
        assert led.schema_version() == SCHEMA_VERSION == 3
        old = led.versions("web")
        assert [(v.version, v.result, v.pid) for v in old] == [(1, "succeeded", None), (2, "pending", None)]
        assert old[0].fleet == {"slots": [{"id": "web-0"}]}
        assert [v.version for v in led.pending_versions("web")] == [2]
        n = led.append_version("web", spec={}, fleet={"slots": []}, result="succeeded", kind="morph")
        assert (n, led.version("web", n).pid) == (3, os.getpid())
        assert led.add_step("web", n, spec={}, fleet={"slots": []}, message="add green") == 1
        led.record_move("web", time=7.0, origin="morph", slot="web-0", from_shape="a", from_region="r",
                        to_shape="b", to_region="r", version=n)
        assert [m.version for m in led.moves("web")] == [n]
    finally:
        led.close()
    # opening it again is a no-op; the old table kept its rows and gained the column
    again = Ledger(tmp_path / "ledger.db")
    assert again.schema_version() == 3 and len(again.versions("web")) == 3
    again.close()
    cols = [r[1] for r in sqlite3.connect(tmp_path / "ledger.db").execute("PRAGMA table_info(versions)")]
    assert cols[-1] == "pid" and cols.count("pid") == 1


def test_steps_are_numbered_within_their_version_and_kept_apart_per_stack(ledger: Ledger) -> None:
    v = ledger.append_version("web", spec={"s": 1}, fleet={"slots": ["blue"]}, result="pending", kind="morph")
    other = ledger.append_version("api", spec={}, fleet={"slots": []}, result="pending")
    assert ledger.add_step("web", v, spec={"s": 1}, fleet={"slots": ["blue", "green"]}, message="add green",
                           when=10.0) == 1
    assert ledger.add_step("api", other, spec={}, fleet={}, message="apply") == 1
    assert ledger.add_step("web", v, spec={"s": 1}, fleet={"slots": ["green"]}, message="shift",
                           result="succeeded", when=11.0) == 2
    ledger.set_step_result("web", v, 1, "succeeded", "green healthy")
    steps = ledger.steps("web", v)
    assert [(s.step, s.result, s.message, s.time) for s in steps] == [
        (1, "succeeded", "green healthy", 10.0), (2, "succeeded", "shift", 11.0)]
    assert steps[0].fleet == {"slots": ["blue", "green"]} and steps[0].spec == {"s": 1}
    assert steps[0].seq < steps[1].seq  # a global order across versions and stacks
    assert steps[0].to_json() == {"step": 1, "time": 10.0, "result": "succeeded", "message": "green healthy"}
    assert ledger.steps("web", 99) == []
    with pytest.raises(NotFoundError, match="no version 7"):
        ledger.add_step("web", 7, spec={}, fleet={}, message="x")
    with pytest.raises(NotFoundError, match="no step 3"):
        ledger.set_step_result("web", v, 3, "failed")


def test_update_version_changes_only_what_is_given(ledger: Ledger) -> None:
    n = ledger.append_version("web", spec={"a": 1}, fleet={"slots": [1]}, result="pending", message="morph",
                              kind="morph")
    ledger.update_version("web", n, result="failed", message="green unhealthy")
    v = ledger.version("web", n)
    assert (v.result, v.message, v.spec, v.fleet, v.kind) == ("failed", "green unhealthy", {"a": 1}, {"slots": [1]},
                                                              "morph")
    ledger.update_version("web", n, spec={"a": 2}, fleet={"slots": [2]})
    v = ledger.version("web", n)
    assert (v.result, v.message, v.spec, v.fleet) == ("failed", "green unhealthy", {"a": 2}, {"slots": [2]})
    ledger.update_version("web", n)  # nothing to change
    assert ledger.version("web", n) == v
    assert set(v.to_json()) == {"version", "time", "result", "message", "kind", "fleet"}
    with pytest.raises(NotFoundError, match="no version 5"):
        ledger.update_version("web", 5, result="failed")


def test_applied_is_the_newest_succeeded_stack_update(ledger: Ledger) -> None:
    assert ledger.applied("web") is None
    one = ledger.append_version("web", spec={"v": 1}, fleet={"slots": ["blue"]}, result="succeeded")
    v, spec, fleet = ledger.applied("web")
    assert (v.version, spec, fleet) == (one, {"v": 1}, {"slots": ["blue"]})
    # a morph in flight: nothing succeeded yet, the old fleet runs
    two = ledger.append_version("web", spec={"v": 2}, fleet={"slots": ["green"]}, result="pending", kind="morph")
    assert ledger.applied("web")[0].version == one
    ledger.add_step("web", two, spec={"v": 2}, fleet={"slots": ["blue", "green"]}, message="add green",
                    result="succeeded")
    ledger.add_step("web", two, spec={"v": 2}, fleet={"slots": ["green"]}, message="retire blue",
                    result="failed")
    v, spec, fleet = ledger.applied("web")
    assert (v.version, spec, fleet) == (two, {"v": 2}, {"slots": ["blue", "green"]})
    # the command ends failed: its last succeeded step still says what runs
    ledger.update_version("web", two, result="failed")
    assert ledger.applied("web")[2] == {"slots": ["blue", "green"]}
    # a later failed version without a succeeded step: the failed morph's last succeeded step still runs
    ledger.append_version("web", spec={"v": 3}, fleet={"slots": ["x"]}, result="failed")
    v, spec, fleet = ledger.applied("web")
    assert (v.version, fleet) == (two, {"slots": ["blue", "green"]})
    # a newer succeeded version without steps (imported, or written before schema 2) wins
    four = ledger.append_version("web", spec={"v": 4}, fleet={"slots": ["z"]}, result="succeeded")
    assert ledger.applied("web")[0].version == four
    # only failed versions: nothing is applied
    ledger.append_version("api", spec={}, fleet={"slots": ["y"]}, result="failed")
    assert ledger.applied("api") is None


def test_pending_versions_carry_the_pid_that_wrote_them(ledger: Ledger, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        from sculpt.ledger import Ledger
        Ledger(sys.argv[1]).append_version("web", spec={}, fleet={"slots": []}, result="pending", kind="morph")
    """)
    child = subprocess.run([sys.executable, "-c", code, str(ledger.path)], check=True)
    assert child.returncode == 0
    mine = ledger.append_version("web", spec={}, fleet={"slots": []}, result="pending")
    ledger.append_version("web", spec={}, fleet={"slots": []}, result="succeeded")
    pending = ledger.pending_versions("web")
    assert [v.version for v in pending] == [1, mine]
    assert pending[1].pid == os.getpid()
    assert pending[0].pid is not None and pending[0].pid != os.getpid()
    assert ledger.pending_versions("api") == []


def test_moves_are_one_record_filtered_by_time_and_counted_per_command(ledger: Ledger) -> None:
    for slot in ("web-0", "web-1"):  # one morph of two slots
        ledger.record_move("web", time=100.0, origin="morph", slot=slot, from_shape="std-0.5c-512m",
                           from_region="local-a", to_shape="std-1c-1024m", to_region="local-a", version=3)
    ledger.record_move("web", time=200.0, origin="watch", slot="web-0", from_shape="std-1c-1024m",
                       from_region="local-a", to_shape="std-2c-2048m", to_region="local-b", version=None)
    ledger.record_move("web", time=300.0, origin="rollback", slot="web-0", from_shape="std-2c-2048m",
                       from_region="local-b", to_shape="std-0.5c-512m", to_region="local-a", version=5)
    ledger.record_move("api", time=150.0, origin="up", slot="api-0", from_shape="a", from_region="r",
                       to_shape="b", to_region="r", version=1)
    moves = ledger.moves("web")
    assert [(m.origin, m.slot, m.version) for m in moves] == [
        ("morph", "web-0", 3), ("morph", "web-1", 3), ("watch", "web-0", None), ("rollback", "web-0", 5)]
    assert moves[2].to_json() == {"time": 200.0, "origin": "watch", "slot": "web-0", "from_shape": "std-1c-1024m",
                                  "from_region": "local-a", "to_shape": "std-2c-2048m", "to_region": "local-b",
                                  "version": None}
    assert [m.time for m in ledger.moves("web", since=200.0)] == [200.0, 300.0]
    assert migration_times(moves) == [100.0, 200.0, 300.0]
    assert migration_times(ledger.moves("web", since=150.0)) == [200.0, 300.0]
    assert len(migration_times(ledger.moves("api"))) == 1
    with pytest.raises(ValueError, match="unknown move origin 'cron'"):
        ledger.record_move("web", time=1.0, origin="cron", slot="web-0", from_shape="a", from_region="r",
                           to_shape="b", to_region="r", version=None)
