"""The ledger: sculpt's embedded state store, one SQLite file (WAL) per state directory.

It holds stack versions (append-only history of user-visible commands: number, time, spec, fleet, result,
message, kind, the writer's pid), the steps of each version (the stack updates a command made, e.g. add
green, shift, retire), the one record of moves (every shape or region change with its origin), per-stack
locks, the migration journal (every state transition written before it is taken), model checkpoints and
metric rollups. The state directory is ``.sculpt/`` beside the spec, or ``$SCULPT_HOME``.

Schema version 2 (steps, moves, ``versions.pid``); a version-1 file is upgraded in place when opened, a
newer one is refused. SIGINT and SIGTERM never land inside a transaction (see ``Ledger._tx``).

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
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from sculpt.domain.errors import ConfigError, LockedError, NotFoundError

log = logging.getLogger("sculpt.ledger")

SCHEMA_VERSION = 2

KINDS = ("up", "morph", "rollback", "down", "requirements")
"""What a user-visible version records (``Version.kind``)."""
ORIGINS = ("watch", "morph", "rollback", "up")
"""Who made a move (``MoveRecord.origin``)."""
DAY_S = 86_400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    stack TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    spec TEXT NOT NULL, fleet TEXT NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'up', pid INTEGER, PRIMARY KEY (stack, version));
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    time REAL NOT NULL, spec TEXT NOT NULL, fleet TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL, UNIQUE (stack, version, step));
CREATE TABLE IF NOT EXISTS moves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, time REAL NOT NULL, origin TEXT NOT NULL,
    slot TEXT NOT NULL, from_shape TEXT NOT NULL, from_region TEXT NOT NULL, to_shape TEXT NOT NULL,
    to_region TEXT NOT NULL, version INTEGER);
CREATE INDEX IF NOT EXISTS moves_by_stack ON moves (stack, time);
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
    """One user-visible version: what one command (``kind``) made the stack; ``pid`` is the process that
    wrote it (``None`` for versions imported from elsewhere or written before schema version 2)."""

    stack: str
    version: int
    time: float
    spec: dict[str, Any]
    fleet: dict[str, Any]
    result: str
    message: str
    kind: str
    pid: int | None = field(default=None, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "time": self.time, "result": self.result, "message": self.message,
                "kind": self.kind, "fleet": self.fleet}


@dataclass(frozen=True)
class StepRecord:
    """One stack update of a version (``step`` counts from 1 within the version; ``seq`` is global)."""

    stack: str
    version: int
    step: int
    seq: int
    time: float
    spec: dict[str, Any]
    fleet: dict[str, Any]
    message: str
    result: str

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "time": self.time, "result": self.result, "message": self.message}


@dataclass(frozen=True)
class MoveRecord:
    """One slot's shape or region change, with who made it (``origin``) and the version it belongs to."""

    seq: int
    stack: str
    time: float
    origin: str
    slot: str
    from_shape: str
    from_region: str
    to_shape: str
    to_region: str
    version: int | None

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "origin": self.origin, "slot": self.slot, "from_shape": self.from_shape,
                "from_region": self.from_region, "to_shape": self.to_shape, "to_region": self.to_region,
                "version": self.version}


def migration_times(moves: Iterable[MoveRecord]) -> list[float]:
    """When each migration in ``moves`` started, oldest first: the moves of one version (one command: a
    morph, a rollback, an ``up``) are one migration, whatever number of slots it moved; a move recorded
    without a version counts on its own. This is the count the daily cap and ``policy check`` use.

    >>> m = [MoveRecord(1, "web", 10.0, "morph", "web-0", "a", "r", "b", "r", 2),
    ...      MoveRecord(2, "web", 11.0, "morph", "web-1", "a", "r", "b", "r", 2),
    ...      MoveRecord(3, "web", 20.0, "watch", "web-0", "b", "r", "c", "r", None)]
    >>> migration_times(m)
    [10.0, 20.0]
    """
    first: dict[tuple[Any, ...], float] = {}
    for m in moves:
        key: tuple[Any, ...] = ("v", m.version) if m.version is not None else ("m", m.seq)
        first[key] = min(first.get(key, m.time), m.time)
    return sorted(first.values())


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


_HELD = (signal.SIGINT, signal.SIGTERM)


class _HeldSignals:
    """SIGINT and SIGTERM held back for the length of one transaction, then delivered (main thread only).

    ``pthread_sigmask`` blocks them in the main thread; a signal the kernel hands to another thread (one
    that does not block it, e.g. an API server thread) would still run its Python handler in the main
    thread at the next bytecode, so for the same span every Python handler of them is swapped for one that
    only notes the signal, and the noted signals are raised again once the handlers are back. Each step is
    ordered so that an interrupt landing between two of them leaves nothing blocked or swapped.
    """

    def __init__(self) -> None:
        self.mask: set[int | signal.Signals] | None = None
        self.handlers: dict[int, Any] = {}
        self.caught: list[int] = []

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python runs signal handlers in the main thread only: nothing can raise here
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # remembered before it is changed
        signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
        for s in _HELD:
            h = signal.getsignal(s)
            if callable(h):
                self.handlers[s] = h
                signal.signal(s, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.caught.append(signum)

    def release(self) -> None:
        if self.mask is None:
            return
        try:
            try:
                self._restore(list(self.handlers.items()))
            finally:
                for s in dict.fromkeys(self.caught):
                    signal.raise_signal(s)  # pending until the mask is restored just below
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)

    def _restore(self, items: list[tuple[int, Any]]) -> None:
        if not items:
            return
        try:
            signal.signal(items[0][0], items[0][1])
        finally:  # a restored handler that runs right away must not leave the others swapped
            self._restore(items[1:])


class _Tx:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception) with SIGINT/SIGTERM held from
    before ``BEGIN`` to after ``COMMIT``/``ROLLBACK``: a signal handler raising ``KeyboardInterrupt`` can
    never leave the connection inside a transaction; its exception is raised once the transaction is
    closed (a write it interrupted is then committed). Ctrl-C is thus delayed by at most one transaction,
    including its wait for a busy ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.held = _HeldSignals()
        self.db: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.held.hold()
            db = self.ledger._conn()
            db.execute("BEGIN IMMEDIATE")
            self.db = db
        except BaseException:
            self.held.release()
            raise
        return db

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        db = self.db
        assert db is not None
        try:
            if et is None:
                try:
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            elif db.in_transaction:
                db.execute("ROLLBACK")
        finally:
            self.held.release()


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
        with self._tx() as db:
            row = None
            if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise ConfigError(
                    f"ledger {self.path} has schema version {row[0]}, newer than this sculpt ({SCHEMA_VERSION})",
                    "upgrade sculpt",
                )
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) < SCHEMA_VERSION:
                self._upgrade(db, int(row[0]))

    @staticmethod
    def _upgrade(db: sqlite3.Connection, old: int) -> None:
        """Bring an older schema up to ``SCHEMA_VERSION`` inside the opening transaction (the new tables are
        already created): version 1 lacks ``versions.pid``."""
        columns = {r[1] for r in db.execute("PRAGMA table_info(versions)")}
        if "pid" not in columns:
            db.execute("ALTER TABLE versions ADD COLUMN pid INTEGER")
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        log.debug("upgraded the ledger schema from version %d to %d", old, SCHEMA_VERSION)

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

    def _tx(self) -> _Tx:
        """A write transaction on this thread's connection (see ``_Tx``: signals are held across it)."""
        return _Tx(self)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # -- versions -----------------------------------------------------------------------------------------
    _VERSION_COLUMNS = "stack, version, time, spec, fleet, result, message, kind, pid"

    def append_version(self, stack: str, *, spec: dict[str, Any], fleet: dict[str, Any], result: str,
                       message: str = "", kind: str = "up", when: float | None = None) -> int:
        """Append the next numbered version of ``stack`` (written by this process: ``pid``) and return its
        number."""
        with self._tx() as db:
            (n,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE stack=?", (stack,)).fetchone()
            db.execute(
                f"INSERT INTO versions ({self._VERSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (stack, n, when if when is not None else time.time(), json.dumps(spec), json.dumps(fleet),
                 result, message, kind, os.getpid()),
            )
            return int(n)

    def import_version(self, stack: str, version: int, *, spec: dict[str, Any], fleet: dict[str, Any],
                       result: str, message: str = "", kind: str = "up", when: float | None = None) -> bool:
        """Record ``version`` of ``stack`` under its own number (history kept elsewhere, e.g. a shared Pulumi
        backend); a number the ledger already has is left as it is. True when it was recorded."""
        with self._tx() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO versions ({self._VERSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,NULL)",
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

    def update_version(self, stack: str, version: int, *, result: str | None = None, message: str | None = None,
                       spec: dict[str, Any] | None = None, fleet: dict[str, Any] | None = None) -> None:
        """Change what is given of ``version`` (its result, message, spec or fleet); the rest stays.

        >>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
        >>> n = led.append_version("web", spec={}, fleet={"slots": []}, result="pending", kind="morph")
        >>> led.update_version("web", n, result="failed", message="green unhealthy")
        >>> v = led.version("web", n); (v.result, v.message, v.kind)
        ('failed', 'green unhealthy', 'morph')
        """
        sets: list[str] = []
        args: list[Any] = []
        for column, value in (("result", result), ("message", message),
                              ("spec", None if spec is None else json.dumps(spec)),
                              ("fleet", None if fleet is None else json.dumps(fleet))):
            if value is not None:
                sets.append(f"{column}=?")
                args.append(value)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM versions WHERE stack=? AND version=?", (stack, version)).fetchone() is None:
                raise NotFoundError(f"stack '{stack}' has no version {version}", "see `sculpt history` for versions")
            if sets:
                db.execute(f"UPDATE versions SET {', '.join(sets)} WHERE stack=? AND version=?",
                           (*args, stack, version))

    @classmethod
    def _version(cls, row: tuple[Any, ...]) -> Version:
        return Version(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]), row[5], row[6], row[7],
                       pid=row[8])

    def _select_versions(self, where: str, args: tuple[Any, ...], tail: str = "") -> list[Version]:
        rows = self._conn().execute(f"SELECT {self._VERSION_COLUMNS} FROM versions WHERE {where} {tail}",
                                    args).fetchall()
        return [self._version(r) for r in rows]

    def versions(self, stack: str) -> list[Version]:
        return self._select_versions("stack=?", (stack,), "ORDER BY version")

    def version(self, stack: str, version: int) -> Version:
        got = self._select_versions("stack=? AND version=?", (stack, version))
        if not got:
            raise NotFoundError(f"stack '{stack}' has no version {version}", "see `sculpt history` for versions")
        return got[0]

    def latest_version(self, stack: str, *, succeeded_only: bool = False) -> Version | None:
        got = self._select_versions("stack=?" + (" AND result='succeeded'" if succeeded_only else ""), (stack,),
                                    "ORDER BY version DESC LIMIT 1")
        return got[0] if got else None

    def pending_versions(self, stack: str) -> list[Version]:
        """The versions of ``stack`` still ``pending``, oldest first (each with the ``pid`` that wrote it, so
        that a sweep can tell the pending version of a dead command from a live one's)."""
        return self._select_versions("stack=? AND result='pending'", (stack,), "ORDER BY version")

    def stacks(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT DISTINCT stack FROM versions ORDER BY stack")]

    # -- steps: the stack updates of one version ----------------------------------------------------------
    def add_step(self, stack: str, version: int, *, spec: dict[str, Any], fleet: dict[str, Any], message: str,
                 result: str = "pending", when: float | None = None) -> int:
        """Record the next stack update of ``version`` (e.g. a blue/green morph's add green, shift, retire);
        returns its number, 1-based within the version.

        >>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
        >>> n = led.append_version("web", spec={}, fleet={"slots": []}, result="pending", kind="morph")
        >>> led.add_step("web", n, spec={}, fleet={"slots": ["green"]}, message="add green")
        1
        >>> led.add_step("web", n, spec={}, fleet={"slots": ["green"]}, message="shift traffic")
        2
        >>> led.set_step_result("web", n, 1, "succeeded")
        >>> [(s.step, s.result, s.message) for s in led.steps("web", n)]
        [(1, 'succeeded', 'add green'), (2, 'pending', 'shift traffic')]
        """
        with self._tx() as db:
            if db.execute("SELECT 1 FROM versions WHERE stack=? AND version=?", (stack, version)).fetchone() is None:
                raise NotFoundError(f"stack '{stack}' has no version {version}", "see `sculpt history` for versions")
            (k,) = db.execute("SELECT COALESCE(MAX(step), 0) + 1 FROM steps WHERE stack=? AND version=?",
                              (stack, version)).fetchone()
            db.execute("INSERT INTO steps (stack, version, step, time, spec, fleet, message, result) "
                       "VALUES (?,?,?,?,?,?,?,?)",
                       (stack, version, k, when if when is not None else time.time(), json.dumps(spec),
                        json.dumps(fleet), message, result))
            return int(k)

    def set_step_result(self, stack: str, version: int, step: int, result: str, message: str | None = None) -> None:
        with self._tx() as db:
            if message is None:
                cur = db.execute("UPDATE steps SET result=? WHERE stack=? AND version=? AND step=?",
                                 (result, stack, version, step))
            else:
                cur = db.execute("UPDATE steps SET result=?, message=? WHERE stack=? AND version=? AND step=?",
                                 (result, message, stack, version, step))
            if cur.rowcount == 0:
                raise NotFoundError(f"version {version} of stack '{stack}' has no step {step}",
                                    "see `sculpt history` for versions and their steps")

    @staticmethod
    def _step(r: tuple[Any, ...]) -> StepRecord:
        return StepRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7], r[8])

    def steps(self, stack: str, version: int) -> list[StepRecord]:
        rows = self._conn().execute(
            "SELECT stack, version, step, seq, time, spec, fleet, message, result FROM steps "
            "WHERE stack=? AND version=? ORDER BY step", (stack, version)).fetchall()
        return [self._step(r) for r in rows]

    def applied(self, stack: str) -> tuple[Version, dict[str, Any], dict[str, Any]] | None:
        """What the processes should run now: ``(version, spec, fleet)`` of the newest succeeded stack
        update — the last succeeded step of the newest version that has one (a command that died or failed
        half-way, a failed morph's rollback step), or a succeeded version without steps (written before
        schema version 2, or imported) if that is newer; ``None`` for a stack with neither.

        >>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
        >>> _ = led.append_version("web", spec={"v": 1}, fleet={"slots": ["blue"]}, result="succeeded")
        >>> n = led.append_version("web", spec={"v": 2}, fleet={"slots": ["green"]}, result="pending")
        >>> led.applied("web")[2]
        {'slots': ['blue']}
        >>> k = led.add_step("web", n, spec={"v": 2}, fleet={"slots": ["blue", "green"]}, message="add green",
        ...                  result="succeeded")
        >>> v, spec, fleet = led.applied("web"); (v.version, fleet)
        (2, {'slots': ['blue', 'green']})
        >>> led.update_version("web", n, result="failed")
        >>> m = led.append_version("web", spec={"v": 3}, fleet={"slots": []}, result="pending")
        >>> led.applied("web")[2]  # the failed version's last succeeded step still runs
        {'slots': ['blue', 'green']}
        """
        for v in reversed(self.versions(stack)):
            row = self._conn().execute(
                "SELECT stack, version, step, seq, time, spec, fleet, message, result FROM steps "
                "WHERE stack=? AND version=? AND result='succeeded' ORDER BY step DESC LIMIT 1",
                (stack, v.version)).fetchone()
            if row is not None:
                step = self._step(row)
                return v, step.spec, step.fleet
            if v.result == "succeeded" and not self._has_steps(stack, v.version):
                return v, v.spec, v.fleet
        return None

    def _has_steps(self, stack: str, version: int) -> bool:
        return self._conn().execute("SELECT 1 FROM steps WHERE stack=? AND version=? LIMIT 1",
                                    (stack, version)).fetchone() is not None

    def slot_ids_ever_used(self, stack: str) -> set[str]:
        """Every slot id any version of ``stack`` used (its fleet, its steps' fleets, its migrations): a new
        slot never takes one, since instance data directories are per slot id."""
        def ids(fleet: Any) -> set[str]:
            slots = fleet.get("slots") if isinstance(fleet, dict) else None
            return {str(s["id"]) for s in slots or () if isinstance(s, dict) and "id" in s}

        used: set[str] = set()
        for v in self.versions(stack):
            used |= ids(v.fleet)
            for step in self.steps(stack, v.version):
                used |= ids(step.fleet)
        for m in self.migrations(stack):
            used |= ids(m.source) | ids(m.target)
        return used

    # -- moves: the one record of shape and region changes ------------------------------------------------
    def record_move(self, stack: str, *, time: float, origin: str, slot: str, from_shape: str, from_region: str,
                    to_shape: str, to_region: str, version: int | None) -> int:
        """Record that ``slot`` of ``stack`` moved from one shape/region to another, made by ``origin``
        (``watch``, ``morph``, ``rollback`` or ``up``) as part of ``version``; returns its sequence number."""
        if origin not in ORIGINS:
            raise ValueError(f"unknown move origin '{origin}' (one of {', '.join(ORIGINS)})")
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO moves (stack, time, origin, slot, from_shape, from_region, to_shape, to_region, "
                "version) VALUES (?,?,?,?,?,?,?,?,?)",
                (stack, time, origin, slot, from_shape, from_region, to_shape, to_region, version))
            return int(cur.lastrowid or 0)

    def moves(self, stack: str, since: float = 0.0) -> list[MoveRecord]:
        """The moves of ``stack`` at or after ``since``, oldest first (``migration_times`` counts them as
        migrations: the daily cap reads ``moves(stack, since=now - 86400)``).

        >>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
        >>> _ = led.record_move("web", time=100.0, origin="morph", slot="web-0", from_shape="a", from_region="r",
        ...                     to_shape="b", to_region="r", version=2)
        >>> [(m.origin, m.slot, m.to_shape) for m in led.moves("web", since=50.0)], led.moves("web", since=101.0)
        ([('morph', 'web-0', 'b')], [])
        """
        rows = self._conn().execute(
            "SELECT seq, stack, time, origin, slot, from_shape, from_region, to_shape, to_region, version "
            "FROM moves WHERE stack=? AND time>=? ORDER BY time, seq", (stack, since)).fetchall()
        return [MoveRecord(*r) for r in rows]

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
