"""A damaged ledger: every SQLite failure is one ``LedgerError`` line naming the file and the fix; a damaged
file is refused, never recreated; an unreadable journal row is quarantined so every verb keeps working;
``sculpt ledger check`` / ``backup``; schema 3 stores each distinct spec once.

Real SQLite files damaged the way the issue found them (truncated, garbage, a directory, a bad schema
version, a bad JSON row, 0 bytes, a dropped table); the CLI in-process through ``CliRunner`` and, where
the real process matters (a read-only file system), as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sculpt.cli import ledger as ledger_cli
from sculpt.cli.main import SculptGroup
from sculpt.cli.main import app as main_app
from sculpt.domain.errors import ConfigError, LedgerError, LockedError
from sculpt.ledger import (
    JOURNAL_STATES,
    SCHEMA_VERSION,
    Ledger,
    backup_ledger,
    check_ledger,
    default_backup_path,
    sqlite_error,
)
from tests.helpers import write_project

SPEC: dict[str, Any] = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a",
                        "replicas": {"min": 1, "max": 3, "desired": 1}}
FLEET = {"slots": [{"id": "web-0", "shape": "std-0.5c-512m", "region": "local-a", "colour": "blue", "weight": 1}]}


def make_ledger(path: Path, versions: int = 3) -> Path:
    """A real ledger made by ``Ledger`` calls: versions with steps, a move, a finished morph's journal."""
    from sculpt.domain.spec import parse_spec

    led = Ledger(path)
    js = parse_spec(SPEC).model_dump(mode="json")
    for _ in range(versions):
        n = led.append_version("web", spec=js, fleet=FLEET, result="pending", kind="up", when=1_780_000_000.0)
        led.add_step("web", n, spec=js, fleet=FLEET, message="up", result="succeeded", when=1_780_000_001.0)
        led.update_version("web", n, result="succeeded")
    led.record_move("web", time=1.0, origin="up", slot="web-0", from_shape="a", from_region="r", to_shape="b",
                    to_region="r", version=1)
    led.begin_migration("m1", "web", "blue-green", FLEET, FLEET, "PLAN", when=5.0)
    led.journal("m1", "PROVISION_GREEN", {"green": ["web-1"]}, when=6.0)
    led.end_migration("m1", "done", when=7.0)
    led.save_checkpoint("web/general", "river", b"\x00\x01", {"samples": 1})
    led.add_rollup("web", "web-0", 10.0, {"cpu": 0.5})
    led.close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


def cli() -> typer.Typer:
    """sculpt's app, with ``sculpt ledger`` added when main.py does not register it (yet)."""
    if any(g.name == "ledger" for g in main_app.registered_groups):
        return main_app
    app = typer.Typer(cls=SculptGroup)
    app.add_typer(ledger_cli.app, name="ledger")
    app.callback()(lambda: None)
    return app


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def db(sculpt_home: Path) -> Path:
    return make_ledger(sculpt_home / "ledger.db")


@pytest.fixture
def project(sculpt_home: Path, tmp_path: Path) -> Path:
    return write_project(tmp_path, SPEC)


# -- corrupt files: one line naming the file and the fix, the file untouched ---------------------------------
def _truncate_100(p: Path) -> None:
    with p.open("r+b") as f:
        f.truncate(100)


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(3) + b"garbage" * 2000)


def _garbage_mid_file(p: Path) -> None:
    with p.open("r+b") as f:
        f.seek(p.stat().st_size // 3)
        f.write(b"\xff" * 8192)


@pytest.mark.parametrize("damage", [_truncate_100, _garbage, _garbage_mid_file])
def test_a_corrupt_ledger_is_one_error_naming_the_file_and_never_rewritten(db: Path, damage: Any) -> None:
    damage(db)
    before = digest(db)
    with pytest.raises(LedgerError) as ei:
        led = Ledger(db)
        try:  # damage past the first pages shows when the rows are read
            led.versions("web")
            led.steps("web", 1)
            led.migrations("web")
        finally:
            led.close()
    msg = str(ei.value)
    assert str(db) in msg and "damaged" in msg and "sculpt ledger backup" in msg and "sculpt ledger check" in msg
    assert "\n" not in msg
    assert digest(db) == before


@pytest.mark.parametrize("damage", [_truncate_100, _garbage, _garbage_mid_file])
def test_every_verb_on_a_corrupt_ledger_prints_one_error_line(db: Path, project: Path, damage: Any) -> None:
    damage(db)
    for verb in (["history"], ["status"], ["down"], ["preview"]):
        r = CliRunner().invoke(main_app, [*verb, "--spec", str(project)])
        assert r.exit_code == 1, (verb, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (verb, r.exception)
        line = one_error_line(r.stderr)
        # garbage mid-file shows only to a verb that reads the damaged pages (history reads every row)
        if verb == ["history"] or damage is not _garbage_mid_file:
            assert str(db) in line and "To fix:" in line, (verb, line)


def test_a_directory_where_the_ledger_should_be(sculpt_home: Path) -> None:
    (sculpt_home / "ledger.db").mkdir(parents=True)
    with pytest.raises(LedgerError, match=r"ledger .*ledger\.db is a directory.*To fix: move"):
        Ledger(sculpt_home / "ledger.db")


def test_a_schema_version_that_is_not_a_number(db: Path) -> None:
    sql(db, "UPDATE meta SET value='two' WHERE key='schema_version'")
    before = digest(db)
    with pytest.raises(LedgerError, match=r"schema version 'two', not a whole number.*restore a backup"):
        Ledger(db)
    assert digest(db) == before


def test_a_newer_schema_is_still_refused_as_before(db: Path) -> None:
    sql(db, f"UPDATE meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'")
    with pytest.raises(ConfigError, match="newer than this sculpt.*upgrade sculpt"):
        Ledger(db)


def test_a_bad_json_row_names_its_table_and_row_and_how_to_remove_it(db: Path, project: Path) -> None:
    sql(db, "UPDATE versions SET fleet='{\"slots\": [' WHERE version=2")
    led = Ledger(db)
    try:
        with pytest.raises(LedgerError) as ei:
            led.versions("web")
        assert led.version("web", 1).fleet == FLEET  # the other rows still read
    finally:
        led.close()
    msg = str(ei.value)
    assert "row 2 of table versions" in msg and "fleet: bad JSON" in msg
    assert "DELETE FROM versions WHERE rowid=2" in msg
    r = CliRunner().invoke(main_app, ["history", "--spec", str(project)])
    assert r.exit_code == 1 and "row 2 of table versions" in one_error_line(r.stderr)


def test_a_value_of_the_wrong_type_is_a_bad_row_not_a_type_error(db: Path) -> None:
    sql(db, "UPDATE versions SET time='yesterday' WHERE version=1", "UPDATE moves SET version='x'")
    led = Ledger(db)
    try:
        with pytest.raises(LedgerError, match="row 1 of table versions is unreadable .time is str"):
            led.versions("web")
        with pytest.raises(LedgerError, match="table moves is unreadable .version is str"):
            led.moves("web")
    finally:
        led.close()


def test_a_changed_byte_in_a_spec_shows_as_its_hash_no_longer_matching(db: Path) -> None:
    sql(db, "UPDATE specs SET spec=replace(spec, 'local-a', 'local-b')")
    led = Ledger(db)
    try:
        with pytest.raises(LedgerError, match="row 1 of table specs is unreadable .the spec does not match its hash"):
            led.versions("web")
    finally:
        led.close()
    assert {"table": "specs", "row": 1, "problem": "the spec does not match its hash"} in check_ledger(db)["problems"]


# -- never silently recreated ------------------------------------------------------------------------------
def test_an_empty_file_is_refused_not_recreated(db: Path) -> None:
    db.write_bytes(b"")
    with pytest.raises(LedgerError, match=r"is empty \(0 bytes\).*restore a backup.*or delete"):
        Ledger(db)
    assert db.stat().st_size == 0


def test_a_dropped_versions_table_is_refused_not_recreated(db: Path) -> None:
    sql(db, "DROP TABLE versions")
    before = digest(db)
    with pytest.raises(LedgerError, match=r"has lost table\(s\) versions"):
        Ledger(db)
    assert digest(db) == before
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "versions" not in names


def test_tables_without_meta_are_refused(db: Path) -> None:
    sql(db, "DROP TABLE meta")
    with pytest.raises(LedgerError, match="has tables .* but no meta table"):
        Ledger(db)


def test_a_new_ledger_only_where_no_file_exists_and_never_half_made(sculpt_home: Path) -> None:
    sculpt_home.mkdir()
    led = Ledger(sculpt_home / "ledger.db")
    assert led.schema_version() == SCHEMA_VERSION
    led.close()
    assert [p.name for p in sculpt_home.iterdir() if p.name.endswith(".new")] == []  # the build file is gone
    # an empty SQLite database (no tables: nothing to lose) is made a ledger
    blank = sculpt_home / "blank.db"
    sqlite3.connect(blank).execute("PRAGMA user_version=0").close()
    Ledger(blank).close()
    assert Ledger(blank).schema_version() == SCHEMA_VERSION


def test_racing_creators_share_one_ledger(sculpt_home: Path) -> None:
    sculpt_home.mkdir()
    code = ("import sys; from sculpt.ledger import Ledger; "
            "Ledger(sys.argv[1]).append_version('web', spec={}, fleet={}, result='succeeded')")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(sculpt_home / "ledger.db")], stderr=subprocess.PIPE)
             for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    led = Ledger(sculpt_home / "ledger.db")
    assert [v.version for v in led.versions("web")] == [1, 2, 3, 4]
    led.close()


# -- the file system: read-only, full -----------------------------------------------------------------------
def _can_bind_mount() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt 2>/dev/null || "
                        "mount --bind -o ro /tmp /tmp"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _can_bind_mount(), reason="needs root and `unshare -m` for a read-only bind mount")
@pytest.mark.parametrize("existing", [True, False])
def test_a_read_only_sculpt_home_is_one_line(tmp_path: Path, existing: bool) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if existing:
        make_ledger(home / "ledger.db")
    project = write_project(tmp_path, SPEC)
    for verb in ("history", "status", "up"):
        r = subprocess.run(
            ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{home}" "{home}" && exec "{sys.executable}" '
             f'-m sculpt.cli.main {verb} --spec "{project}"'],
            env={**os.environ, "SCULPT_HOME": str(home)}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (verb, r.stderr)
        line = one_error_line(r.stderr)
        assert f"ledger {home / 'ledger.db'}" in line and f"make {home}" in line and "writable" in line, line


def test_a_full_disk_is_one_line_saying_free_space(db: Path) -> None:
    led = Ledger(db)
    try:
        conn = led._conn()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count={pages}")  # SQLite now answers SQLITE_FULL, as on a full disk
        with pytest.raises(LedgerError, match=r"cannot write ledger .*database or disk is full.*To fix: free space "
                                              r"on /"):
            led.append_version("web", spec={"big": "x" * 200_000}, fleet={}, result="succeeded")
        assert [v.version for v in led.versions("web")] == [1, 2, 3]  # nothing half-written
    finally:
        led.close()


@pytest.mark.skipif(not _can_bind_mount(), reason="needs root and `unshare -m` to mount a small tmpfs")
def test_a_really_full_disk_is_one_line_for_every_verb(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = write_project(tmp_path, SPEC)
    script = (f'mount -t tmpfs -o size=400k tmpfs "{home}" && "{sys.executable}" -c "import sys; '
              f"from tests.unit.test_ledger_damage import make_ledger; make_ledger(sys.argv[1], versions=1)\" "
              f'"{home / "ledger.db"}" && (dd if=/dev/zero of="{home}/fill" bs=4k 2>/dev/null; true) && '
              f'for v in history status up; do "{sys.executable}" -m sculpt.cli.main $v --spec "{project}"; '
              'echo "rc=$?"; done')
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], env={**os.environ, "SCULPT_HOME": str(home)},
                       capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert r.stdout.count("rc=1") == 3, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, r.stderr
    assert all(f"ledger {home / 'ledger.db'}" in e and f"free space on {home}" in e for e in errors), errors


def test_sqlite_errors_map_to_their_fix(tmp_path: Path) -> None:
    p = tmp_path / "ledger.db"
    assert "free space" in str(sqlite_error(p, sqlite3.OperationalError("disk I/O error")))
    assert isinstance(sqlite_error(p, sqlite3.OperationalError("database is locked")), LockedError)
    assert "writable" in str(sqlite_error(p, sqlite3.OperationalError("attempt to write a readonly database")))
    assert "restore a backup" in str(sqlite_error(p, sqlite3.DatabaseError("file is not a database")))


def test_every_public_ledger_method_translates_sqlite_errors() -> None:
    import inspect

    public = [n for n, m in vars(Ledger).items() if not n.startswith("_") and inspect.isfunction(m)]
    assert len(public) > 25
    assert [n for n in public if not hasattr(getattr(Ledger, n), "__wrapped__")] == []


# -- the journal: an unreadable row is quarantined, every verb keeps working ---------------------------------
def test_journal_states_are_the_state_machines() -> None:
    from sculpt.migrate.states import State

    assert {s.value for s in State} == set(JOURNAL_STATES)


def _unfinished_with_bad_rows(db: Path) -> None:
    sql(db, "UPDATE migrations SET result=NULL, pid=NULL",
        "INSERT INTO journal (migration_id, stack, state, time, data) VALUES ('m1', 'web', 'TELEPORT', 8, '{}')",
        "INSERT INTO journal (migration_id, stack, state, time, data) VALUES ('m1', 'web', 'SHIFT', 9, '{oops')")


def test_an_unreadable_journal_row_is_quarantined_with_a_warning(db: Path, caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("sculpt.ledger"), "disabled", False)
    _unfinished_with_bad_rows(db)
    led = Ledger(db)
    try:
        with caplog.at_level(logging.WARNING, logger="sculpt.ledger"):
            entries = led.journal_entries("m1")
        assert [e.state for e in entries] == ["PLAN", "PROVISION_GREEN"]
        warnings = [r.getMessage() for r in caplog.records]
        assert any("unknown state 'TELEPORT'" in w and "quarantine" in w for w in warnings), warnings
        assert any("data: bad JSON" in w for w in warnings), warnings
        # moved, not lost: the quarantine keeps the row as it was
        rows = sqlite3.connect(db).execute("SELECT source, reason, row FROM quarantine ORDER BY seq").fetchall()
        assert [(s, json.loads(r)[3]) for s, _, r in rows] == [("journal", "TELEPORT"), ("journal", "SHIFT")]
        assert [e.state for e in led.journal_entries("m1")] == ["PLAN", "PROVISION_GREEN"]
    finally:
        led.close()
    report = check_ledger(db)
    assert not report["ok"] and report["quarantined"] == 2


def test_an_unreadable_migration_row_is_quarantined_and_recovery_goes_on(db: Path) -> None:
    sql(db, "UPDATE migrations SET result=NULL, source='[broken'")
    led = Ledger(db)
    try:
        assert led.unfinished_migrations("web") == []
        assert led.migrations("web") == []
        (n,) = led._conn().execute("SELECT COUNT(*) FROM quarantine WHERE source='migrations'").fetchone()
        assert n == 1
    finally:
        led.close()


def test_down_status_and_history_work_with_an_unknown_journal_state(db: Path, project: Path) -> None:
    _unfinished_with_bad_rows(db)
    for verb in (["history", "--json"], ["status", "--json"], ["down"], ["history", "--json"]):
        r = CliRunner().invoke(main_app, [*verb, "--spec", str(project)])
        assert r.exception is None or isinstance(r.exception, SystemExit), (verb, r.exception)
        assert "Traceback" not in r.output
        if verb[0] == "history":
            assert r.exit_code == 0, r.output
            assert [v["version"] for v in json.loads(r.stdout)][:3] == [1, 2, 3]
        if verb[0] == "status":  # the stack is not running: status says so, it does not crash
            assert r.exit_code == 1 and json.loads(r.stdout)["version"] is None
        if verb[0] == "down":
            assert r.exit_code == 0, r.output


def test_a_damaged_lock_row_is_taken_over(db: Path) -> None:
    sql(db, "INSERT INTO locks VALUES ('web', 'not-a-pid', 'h', 1.0, 'up')")
    led = Ledger(db)
    try:
        assert led.lock_holder("web") is None
        with led.lock("web", "up"):
            assert led.lock_holder("web")[0] == os.getpid()
    finally:
        led.close()


# -- sculpt ledger check / backup ---------------------------------------------------------------------------
def test_ledger_check_passes_a_sound_ledger(db: Path, project: Path) -> None:
    r = CliRunner().invoke(cli(), ["ledger", "check", "--spec", str(project), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["ok"] and report["integrity"] == "ok" and report["schema_version"] == SCHEMA_VERSION
    assert report["rows"]["versions"] == 3 and report["rows"]["specs"] == 1 and report["problems"] == []


def test_ledger_check_lists_every_problem_and_exits_1_without_writing(db: Path, project: Path) -> None:
    sql(db, "UPDATE versions SET fleet='[]' WHERE version=3",
        "INSERT INTO journal (migration_id, stack, state, time, data) VALUES ('m1', 'web', 'TELEPORT', 8, '{}')",
        "UPDATE rollups SET data='nope'", "DELETE FROM specs")
    before = digest(db)
    r = CliRunner().invoke(cli(), ["ledger", "check", "--spec", str(project)])
    assert r.exit_code == 1
    assert "versions row 3: fleet: JSON list, not an object" in r.stdout
    assert "journal row 3: unknown state 'TELEPORT'" in r.stdout
    assert "rollups row 1: data: bad JSON" in r.stdout
    assert r.stdout.count("is missing from table specs") == 6  # 3 versions + 3 steps
    assert "has 9 problem(s)" in one_error_line(r.stderr)
    assert digest(db) == before


@pytest.mark.parametrize("damage", [_truncate_100, _garbage, _garbage_mid_file])
def test_ledger_check_reports_a_corrupt_file(db: Path, project: Path, damage: Any) -> None:
    damage(db)
    r = CliRunner().invoke(cli(), ["ledger", "check", "--spec", str(project), "--json"])
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    assert not report["ok"] and report["problems"]
    one_error_line(r.stderr)


def test_ledger_check_of_a_missing_ledger(sculpt_home: Path, project: Path) -> None:
    r = CliRunner().invoke(cli(), ["ledger", "check", "--spec", str(project)])
    assert r.exit_code == 1 and "no ledger at" in one_error_line(r.stderr)


def test_ledger_backup_copies_a_live_ledger_to_the_default_place(db: Path, project: Path) -> None:
    writer = Ledger(db)
    with writer._tx() as conn:  # a writer mid-transaction: the backup still sees the last commit
        conn.execute("DELETE FROM versions")
        r = CliRunner().invoke(cli(), ["ledger", "backup", "--spec", str(project), "--json"])
    writer.close()
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    dest = Path(out["path"])
    assert dest.parent == db.parent / "backups" and dest.name.startswith("ledger-") and out["bytes"] > 0
    copy = Ledger(dest)
    assert [v.version for v in copy.versions("web")] == [1, 2, 3]
    copy.close()
    # a second backup in the same second gets its own name; an explicit --to that exists is refused
    assert default_backup_path(db, now=0.0) != default_backup_path(db, now=1.0)
    r = CliRunner().invoke(cli(), ["ledger", "backup", "--spec", str(project), "--to", str(dest)])
    assert r.exit_code == 1 and "exists already" in one_error_line(r.stderr)


def test_a_backup_restores_a_damaged_ledger(db: Path, tmp_path: Path) -> None:
    saved = backup_ledger(db, tmp_path / "saved.db")
    _garbage_mid_file(db)
    shutil.copy(saved, db)
    led = Ledger(db)
    assert len(led.versions("web")) == 3
    led.close()


def test_backup_refuses_an_empty_or_missing_ledger(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no ledger at"):
        backup_ledger(tmp_path / "none.db", tmp_path / "b.db")
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(LedgerError, match="empty"):
        backup_ledger(tmp_path / "empty.db", tmp_path / "b.db")
    assert not (tmp_path / "b.db").exists()


# -- schema 3: one copy per distinct spec ---------------------------------------------------------------------
V2_VERSIONS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (
    stack TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    spec TEXT NOT NULL, fleet TEXT NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'up', pid INTEGER, PRIMARY KEY (stack, version));
CREATE TABLE steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    time REAL NOT NULL, spec TEXT NOT NULL, fleet TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL, UNIQUE (stack, version, step));
CREATE TABLE moves (seq INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, time REAL NOT NULL,
    origin TEXT NOT NULL, slot TEXT NOT NULL, from_shape TEXT NOT NULL, from_region TEXT NOT NULL,
    to_shape TEXT NOT NULL, to_region TEXT NOT NULL, version INTEGER);
CREATE TABLE locks (name TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, since REAL NOT NULL,
    purpose TEXT NOT NULL);
CREATE TABLE migrations (id TEXT PRIMARY KEY, stack TEXT NOT NULL, strategy TEXT NOT NULL, source TEXT NOT NULL,
    target TEXT NOT NULL, state TEXT NOT NULL, result TEXT, reason TEXT, started REAL NOT NULL, ended REAL, pid INTEGER);
CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, migration_id TEXT NOT NULL, stack TEXT NOT NULL,
    state TEXT NOT NULL, time REAL NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE TABLE checkpoints (key TEXT NOT NULL, model TEXT NOT NULL, time REAL NOT NULL, blob BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (key, model));
CREATE TABLE rollups (stack TEXT NOT NULL, instance TEXT NOT NULL, time REAL NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (stack, instance, time));
INSERT INTO meta VALUES ('schema_version', '2');
"""

BIG = {**SPEC, "app": {"env": {f"K{i}": "v" * 100 for i in range(2000)}}}  # ~220 kB of JSON


def test_a_version_2_ledger_is_upgraded_to_one_copy_per_spec(tmp_path: Path) -> None:
    p = tmp_path / "ledger.db"
    db = sqlite3.connect(p)
    db.executescript(V2_VERSIONS)
    text, other = json.dumps(BIG), json.dumps(SPEC)
    for n in range(1, 101):
        db.execute("INSERT INTO versions VALUES ('web', ?, ?, ?, '{\"slots\": []}', 'succeeded', '', 'up', NULL)",
                   (n, float(n), other if n == 50 else text))
        db.execute("INSERT INTO steps (stack, version, step, time, spec, fleet, result) VALUES "
                   "('web', ?, 1, ?, ?, '{}', 'succeeded')", (n, float(n), text))
    db.commit()
    db.close()
    size_v2 = p.stat().st_size
    assert size_v2 > 100 * len(text)
    led = Ledger(p)
    try:
        assert led.schema_version() == SCHEMA_VERSION == 3
        versions = led.versions("web")
        assert len(versions) == 100 and versions[0].spec == BIG and versions[49].spec == SPEC
        assert versions[0].spec is versions[99].spec  # parsed once for the whole history
        assert led.steps("web", 7)[0].spec == BIG
        (n_specs,) = led._conn().execute("SELECT COUNT(*) FROM specs").fetchone()
        assert n_specs == 2
    finally:
        led.close()
    assert p.stat().st_size < 3 * len(text)  # compacted after the upgrade
    assert check_ledger(p)["ok"]


def test_a_hundred_versions_of_one_spec_store_it_once(tmp_path: Path) -> None:
    p = tmp_path / "ledger.db"
    led = Ledger(p)
    try:
        for _ in range(100):
            n = led.append_version("web", spec=BIG, fleet=FLEET, result="pending")
            led.add_step("web", n, spec=BIG, fleet=FLEET, message="up", result="succeeded")
            led.update_version("web", n, result="succeeded", spec=BIG)
        led._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert p.stat().st_size < 2 * len(json.dumps(BIG))
        assert led.applied("web")[1] == BIG and led.version("web", 100).spec == BIG
    finally:
        led.close()
