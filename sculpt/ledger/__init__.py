"""The ledger: sculpt's embedded state store, one SQLite file (WAL) per state directory.

It holds stack versions (append-only history: number, time, spec, fleet, result, message), per-stack
locks, the migration journal (every state transition written before it is taken), model checkpoints and
metric rollups. The state directory is ``.sculpt/`` beside the spec, or ``$SCULPT_HOME``.

>>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
>>> led.append_version("web", spec={"fleet": "web"}, fleet={"slots": []}, result="succeeded", message="up")
1
>>> led.latest_version("web").version
1
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sculpt.domain.errors import ConfigError, LockedError, NotFoundError

log = logging.getLogger("sculpt.ledger")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    stack TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    spec TEXT NOT NULL, fleet TEXT NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'up', PRIMARY KEY (stack, version));
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, since REAL NOT NULL, purpose TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS migrations (
    id TEXT PRIMARY KEY, stack TEXT NOT NULL, strategy TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    state TEXT NOT NULL, result TEXT, reason TEXT, started REAL NOT NULL, ended REAL, pid INTEGER);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, migration_id TEXT NOT NULL, stack TEXT NOT NULL, state TEXT NOT NULL,
    time REAL NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS journal_by_migration ON journal (migration_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    key TEXT NOT NULL, model TEXT NOT NULL, time REAL NOT NULL, blob BLOB NOT NULL, meta TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (key, model));
CREATE TABLE IF NOT EXISTS rollups (
    stack TEXT NOT NULL, instance TEXT NOT NULL, time REAL NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (stack, instance, time));
"""


@dataclass(frozen=True)
class Version:
    stack: str
    version: int
    time: float
    spec: dict[str, Any]
    fleet: dict[str, Any]
    result: str
    message: str
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "time": self.time, "result": self.result, "message": self.message,
                "kind": self.kind, "fleet": self.fleet}


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    migration_id: str
    stack: str
    state: str
    time: float
    data: dict[str, Any]


@dataclass(frozen=True)
class Migration:
    id: str
    stack: str
    strategy: str
    source: dict[str, Any]
    target: dict[str, Any]
    state: str
    result: str | None
    reason: str | None
    started: float
    ended: float | None
    pid: int | None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def state_dir(spec_path: str | Path | None = None) -> Path:
    """``$SCULPT_HOME`` if set, else ``.sculpt/`` beside the spec (or the working directory)."""
    env = os.environ.get("SCULPT_HOME")
    if env:
        return Path(env)
    base = Path(spec_path).resolve().parent if spec_path else Path.cwd()
    return base / ".sculpt"


class Ledger:
    """Thread-safe access to the ledger file. Each call is its own short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create state directory {self.path.parent}: {e.strerror}",
                              "set SCULPT_HOME to a writable directory") from None
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise ConfigError(
                    f"ledger {self.path} has schema version {row[0]}, newer than this sculpt ({SCHEMA_VERSION})",
                    "upgrade sculpt",
                )

    @classmethod
    def for_spec(cls, spec_path: str | Path | None = None) -> Ledger:
        return cls(state_dir(spec_path) / "ledger.db")

    # -- connection ---------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # -- versions -----------------------------------------------------------------------------------------
    def append_version(self, stack: str, *, spec: dict[str, Any], fleet: dict[str, Any], result: str,
                       message: str = "", kind: str = "up", when: float | None = None) -> int:
        """Append the next numbered version of ``stack`` and return its number."""
        with self._tx() as db:
            (n,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE stack=?", (stack,)).fetchone()
            db.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?)",
                (stack, n, when if when is not None else time.time(), json.dumps(spec), json.dumps(fleet),
                 result, message, kind),
            )
            return int(n)

    def import_version(self, stack: str, version: int, *, spec: dict[str, Any], fleet: dict[str, Any],
                       result: str, message: str = "", kind: str = "up", when: float | None = None) -> bool:
        """Record ``version`` of ``stack`` under its own number (history kept elsewhere, e.g. a shared Pulumi
        backend); a number the ledger already has is left as it is. True when it was recorded."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO versions VALUES (?,?,?,?,?,?,?,?)",
                (stack, version, when if when is not None else time.time(), json.dumps(spec), json.dumps(fleet),
                 result, message, kind),
            )
            return cur.rowcount == 1

    def set_version_result(self, stack: str, version: int, result: str, message: str | None = None) -> None:
        with self._tx() as db:
            if message is None:
                db.execute("UPDATE versions SET result=? WHERE stack=? AND version=?", (result, stack, version))
            else:
                db.execute("UPDATE versions SET result=?, message=? WHERE stack=? AND version=?",
                           (result, message, stack, version))

    @staticmethod
    def _version(row: tuple[Any, ...]) -> Version:
        return Version(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]), row[5], row[6], row[7])

    def versions(self, stack: str) -> list[Version]:
        rows = self._conn().execute("SELECT * FROM versions WHERE stack=? ORDER BY version", (stack,)).fetchall()
        return [self._version(r) for r in rows]

    def version(self, stack: str, version: int) -> Version:
        row = self._conn().execute("SELECT * FROM versions WHERE stack=? AND version=?", (stack, version)).fetchone()
        if row is None:
            raise NotFoundError(f"stack '{stack}' has no version {version}", "see `sculpt history` for versions")
        return self._version(row)

    def latest_version(self, stack: str, *, succeeded_only: bool = False) -> Version | None:
        q = "SELECT * FROM versions WHERE stack=?" + (" AND result='succeeded'" if succeeded_only else "")
        row = self._conn().execute(q + " ORDER BY version DESC LIMIT 1", (stack,)).fetchone()
        return self._version(row) if row else None

    def stacks(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT DISTINCT stack FROM versions ORDER BY stack")]

    # -- locks --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, purpose: str = "write") -> Iterator[None]:
        """Hold the named lock (a stack name, or e.g. ``web:watch``) for the duration of the block.

        A lock held by a live process raises ``LockedError``; one held by a dead pid is taken over with a
        warning. Re-entrant within one process.
        """
        reentrant = self.acquire(name, purpose)
        try:
            yield
        finally:
            if not reentrant:
                self.release(name)

    def acquire(self, name: str, purpose: str = "write") -> bool:
        """Take the lock; return True if this process already held it."""
        me = os.getpid()
        with self._tx() as db:
            row = db.execute("SELECT pid, host, since, purpose FROM locks WHERE name=?", (name,)).fetchone()
            if row is not None:
                pid, host, since, held_for = row
                if pid == me and host == socket.gethostname():
                    return True
                if host == socket.gethostname() and not pid_alive(pid):
                    log.warning("recovered the lock on stack '%s' from dead pid %d (%s since %s)", name, pid,
                                held_for, _iso(since))
                else:
                    raise LockedError(
                        f"stack '{name}' is locked by pid {pid} since {_iso(since)} ({held_for})",
                        f"wait for it to finish, or stop that process (kill {pid})",
                    )
            db.execute("INSERT OR REPLACE INTO locks VALUES (?,?,?,?,?)",
                       (name, me, socket.gethostname(), time.time(), purpose))
        return False

    def release(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM locks WHERE name=? AND pid=?", (name, os.getpid()))

    def lock_holder(self, name: str) -> tuple[int, float, str] | None:
        row = self._conn().execute("SELECT pid, since, purpose FROM locks WHERE name=?", (name,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    # -- migrations and journal ---------------------------------------------------------------------------
    def begin_migration(self, migration_id: str, stack: str, strategy: str, source: dict[str, Any],
                        target: dict[str, Any], state: str, when: float | None = None) -> None:
        now = when if when is not None else time.time()
        with self._tx() as db:
            db.execute("INSERT INTO migrations VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (migration_id, stack, strategy, json.dumps(source), json.dumps(target), state, None, None,
                        now, None, os.getpid()))
            db.execute("INSERT INTO journal (migration_id, stack, state, time, data) VALUES (?,?,?,?,?)",
                       (migration_id, stack, state, now, "{}"))

    def journal(self, migration_id: str, state: str, data: dict[str, Any] | None = None,
                when: float | None = None) -> int:
        """Record that ``migration_id`` is about to enter ``state``; returns the journal sequence number."""
        now = when if when is not None else time.time()
        with self._tx() as db:
            row = db.execute("SELECT stack FROM migrations WHERE id=?", (migration_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no migration '{migration_id}'", "see `sculpt history`")
            cur = db.execute("INSERT INTO journal (migration_id, stack, state, time, data) VALUES (?,?,?,?,?)",
                             (migration_id, row[0], state, now, json.dumps(data or {})))
            db.execute("UPDATE migrations SET state=?, pid=? WHERE id=?", (state, os.getpid(), migration_id))
            return int(cur.lastrowid or 0)

    def end_migration(self, migration_id: str, result: str, reason: str | None = None,
                      when: float | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE migrations SET result=?, reason=?, ended=? WHERE id=?",
                       (result, reason, when if when is not None else time.time(), migration_id))

    @staticmethod
    def _migration(r: tuple[Any, ...]) -> Migration:
        return Migration(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), r[5], r[6], r[7], r[8], r[9], r[10])

    def migration(self, migration_id: str) -> Migration:
        r = self._conn().execute("SELECT * FROM migrations WHERE id=?", (migration_id,)).fetchone()
        if r is None:
            raise NotFoundError(f"no migration '{migration_id}'", "see `sculpt history`")
        return self._migration(r)

    def migrations(self, stack: str) -> list[Migration]:
        rows = self._conn().execute("SELECT * FROM migrations WHERE stack=? ORDER BY started", (stack,)).fetchall()
        return [self._migration(r) for r in rows]

    def unfinished_migrations(self, stack: str | None = None) -> list[Migration]:
        q = "SELECT * FROM migrations WHERE result IS NULL" + (" AND stack=?" if stack else "") + " ORDER BY started"
        return [self._migration(r) for r in self._conn().execute(q, (stack,) if stack else ()).fetchall()]

    def journal_entries(self, migration_id: str) -> list[JournalEntry]:
        rows = self._conn().execute(
            "SELECT seq, migration_id, stack, state, time, data FROM journal WHERE migration_id=? ORDER BY seq",
            (migration_id,),
        ).fetchall()
        return [JournalEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- model checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(self, key: str, model: str, blob: bytes, meta: dict[str, Any] | None = None) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?)",
                       (key, model, time.time(), sqlite3.Binary(blob), json.dumps(meta or {})))

    def load_checkpoint(self, key: str, model: str) -> tuple[bytes, dict[str, Any]] | None:
        row = self._conn().execute("SELECT blob, meta FROM checkpoints WHERE key=? AND model=?",
                                   (key, model)).fetchone()
        return (bytes(row[0]), json.loads(row[1])) if row else None

    def checkpoints(self, key: str | None = None) -> list[tuple[str, str, float]]:
        q = "SELECT key, model, time FROM checkpoints" + (" WHERE key=?" if key else "") + " ORDER BY key, model"
        return [tuple(r) for r in self._conn().execute(q, (key,) if key else ()).fetchall()]

    # -- metric rollups -----------------------------------------------------------------------------------
    def add_rollup(self, stack: str, instance: str, when: float, data: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO rollups VALUES (?,?,?,?)", (stack, instance, when, json.dumps(data)))

    def rollups(self, stack: str, since: float = 0.0) -> list[tuple[str, float, dict[str, Any]]]:
        rows = self._conn().execute(
            "SELECT instance, time, data FROM rollups WHERE stack=? AND time>=? ORDER BY time", (stack, since)
        ).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
