"""The ledger: sculpt's embedded state store, one SQLite file (WAL) per state directory.

It holds stack versions (append-only history of user-visible commands: number, time, spec, fleet, result,
message, kind, the writer's pid), the steps of each version (the stack updates a command made, e.g. add
green, shift, retire), the one record of moves (every shape or region change with its origin), per-stack
locks, the migration journal (every state transition written before it is taken), model checkpoints and
metric rollups. The state directory is ``.sculpt/`` beside the spec, or ``$SCULPT_HOME``.

Schema version 3: each distinct spec is stored once, in ``specs`` keyed by its content hash (versions and
steps refer to it); version 2 added steps, moves and ``versions.pid``. An older file is upgraded in place
when opened, a newer one is refused. SIGINT and SIGTERM never land inside a transaction (see ``Ledger._tx``).

Damage is never papered over: every SQLite error becomes one ``LedgerError`` line naming the file and the
fix, and a ledger is created only where no file exists. sculpt never leaves an empty (0-byte) ledger — a new
one is built beside it and linked into place complete — so an existing file that is empty, has ``meta`` but
lacks a table, or has tables but no ``meta`` is refused rather than silently recreated (history would be
lost). A journal row that cannot be read (unknown state, bad JSON) is moved to ``quarantine`` with a warning
so that ``down``, ``status`` and recovery keep working; ``sculpt ledger check`` lists it.

>>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
>>> led.append_version("web", spec={"fleet": "web"}, fleet={"slots": []}, result="succeeded", message="up")
1
>>> led.latest_version("web").version
1
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sculpt.domain.errors import ConfigError, LedgerError, LockedError, NotFoundError, SculptError

log = logging.getLogger("sculpt.ledger")

SCHEMA_VERSION = 3

KINDS = ("up", "morph", "rollback", "down", "requirements")
"""What a user-visible version records (``Version.kind``)."""
ORIGINS = ("watch", "morph", "rollback", "up")
"""Who made a move (``MoveRecord.origin``)."""
JOURNAL_STATES = frozenset({
    "PLAN", "PROVISION_GREEN", "WAIT_HEALTHY", "SYNC_STATE", "PAUSE_FINAL_DELTA", "SHIFT", "RESUME",
    "DRAIN_BLUE", "RETIRE_BLUE", "RESIZE", "DONE", "ROLLBACK", "ROLLED_BACK",
})
"""The states a journal row may record: ``sculpt.migrate.states.State``'s values (the ledger sits below the
migrate layer, so it keeps its own copy; a test holds the two equal). Any other row is quarantined."""
DAY_S = 86_400.0

RESTORE_FIX = "restore a backup (`sculpt ledger backup` makes them) or run `sculpt ledger check`"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS specs (hash TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    stack TEXT NOT NULL, version INTEGER NOT NULL, time REAL NOT NULL,
    spec_hash TEXT NOT NULL, fleet TEXT NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'up', pid INTEGER, PRIMARY KEY (stack, version));
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, version INTEGER NOT NULL, step INTEGER NOT NULL,
    time REAL NOT NULL, spec_hash TEXT NOT NULL, fleet TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
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
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stack TEXT NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    summary TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_by_stack ON events (stack, seq);
CREATE TABLE IF NOT EXISTS event_cursors (
    stack TEXT NOT NULL, sink TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (stack, sink));
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, source TEXT NOT NULL, source_rowid INTEGER,
    reason TEXT NOT NULL, row TEXT NOT NULL);
"""

_V2_TABLES = frozenset({"meta", "versions", "steps", "moves", "locks", "migrations", "journal", "checkpoints",
                        "rollups"})
_REQUIRED_TABLES: dict[int, frozenset[str]] = {
    1: frozenset({"meta", "versions"}),  # a version-1 ledger gains every other table when it is upgraded
    2: _V2_TABLES,
    3: _V2_TABLES | {"specs", "quarantine", "events", "event_cursors"},
}
"""The tables a ledger of each schema version must have: one missing means history was lost, so it is
refused (see the module docstring)."""

_JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "specs": ("spec",), "versions": ("fleet",), "steps": ("fleet",), "migrations": ("source", "target"),
    "journal": ("data",), "checkpoints": ("meta",), "rollups": ("data",), "events": ("data",),
}
"""The columns holding a JSON object, per table (``sculpt ledger check`` parses every one)."""


def spec_hash(text: str | bytes) -> str:
    """The key of a spec's JSON text in ``specs``: its SHA-256, hex."""
    raw = text if isinstance(text, bytes) else str(text).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()
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


EVENT_KINDS = ("decision", "policy-block", "move", "rollback")
"""What an event records (``Event.kind``; see ``sculpt.app.events``)."""


@dataclass(frozen=True)
class Event:
    """One entry of the append-only event record: a decision, a policy block, a move or a rollback."""

    seq: int
    stack: str
    time: float
    kind: str
    summary: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": self.time, "stack": self.stack, "kind": self.kind,
                "summary": self.summary, "data": self.data}


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


# -- errors: every SQLite failure is one line naming the file and the fix --------------------------------------
def _mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (for "free space on ..."), best effort."""
    p = path.resolve()
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        dev = p.stat().st_dev
        while p.parent != p and p.parent.stat().st_dev == dev:
            p = p.parent
    except OSError:
        pass
    return p


def _flat(text: str, limit: int = 200) -> str:
    """``text`` on one line (SQLite quotes a damaged schema's SQL, newlines and all), at most ``limit`` chars."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def sqlite_error(path: Path, e: sqlite3.Error | UnicodeDecodeError) -> SculptError:
    """The ``SculptError`` for SQLite error ``e`` on the ledger file at ``path`` (corrupt, a directory,
    read-only, full disk, busy). A ``UnicodeDecodeError`` is SQLite's message about a damaged schema that
    quotes text which is not UTF-8."""
    if isinstance(e, UnicodeDecodeError):
        return LedgerError(f"ledger {path} is damaged: its schema holds text that is not UTF-8", RESTORE_FIX)
    msg = _flat(str(e) or type(e).__name__)
    low = msg.lower()
    with contextlib.suppress(OSError):
        if path.is_dir():
            return LedgerError(f"ledger {path} is a directory, not a SQLite file",
                               f"move {path} out of the way (sculpt then starts a new, empty ledger) or set "
                               "SCULPT_HOME")
    if "database or disk is full" in low or "disk i/o error" in low:
        mount = _mount_point(path.parent)
        return LedgerError(f"cannot write ledger {path}: {msg}", f"free space on {mount}"
                           + (f" (the file system holding {path.parent})" if mount != path.parent.resolve() else ""))
    if "unable to open database file" in low or "readonly database" in low or "read-only" in low:
        return LedgerError(f"cannot open ledger {path} for writing: {msg}",
                           f"make {path.parent} (and {path.name} in it) writable, or set SCULPT_HOME to a "
                           "writable directory")
    if "locked" in low or "busy" in low:
        return LockedError(f"ledger {path} is busy: another process has held a write transaction open for 30 s",
                           f"wait for it to finish, or find it with `fuser {path}`")
    if "not a database" in low or "malformed" in low or "encrypted" in low or isinstance(e, sqlite3.DatabaseError):
        return LedgerError(f"ledger {path} is damaged: {msg}", RESTORE_FIX)
    return LedgerError(f"ledger {path}: {msg}", RESTORE_FIX)


def _bad_row(path: Path, table: str, rowid: Any, what: str) -> LedgerError:
    return LedgerError(
        f"ledger {path}: row {rowid} of table {table} is unreadable ({what})",
        f"restore a backup (`sculpt ledger backup` makes them), or delete that row "
        f"(sqlite3 {path} \"DELETE FROM {table} WHERE rowid={rowid}\"); `sculpt ledger check` lists every such row")


def _schema_int(path: Path, value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise LedgerError(f"ledger {path} has schema version {value!r}, not a whole number", RESTORE_FIX) from None
    if n < 1:
        raise LedgerError(f"ledger {path} has schema version {n}, below 1", RESTORE_FIX)
    return n


_NUM = (int, float)
_OPT_INT = (int, type(None))
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))


def _types_problem(row: tuple[Any, ...], names: tuple[str, ...], types: tuple[Any, ...]) -> str | None:
    """What is wrong with the value types of ``row`` (a flipped byte can turn a number into text), if anything."""
    for name, value, want in zip(names, row, types, strict=True):
        if isinstance(value, bytes) and str in (want if isinstance(want, tuple) else (want,)):
            return f"{name} is not UTF-8 text"
        if not isinstance(value, want) or isinstance(value, bool):
            return f"{name} is {type(value).__name__} {str(value)[:40]!r}"
    return None


def _json_problem(text: Any) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)`` for JSON text holding an object, else ``(None, what is wrong)``."""
    if not isinstance(text, str | bytes):
        return None, f"not text but {type(text).__name__}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"bad JSON: {e.msg} (char {e.pos})"
    except (ValueError, RecursionError) as e:
        return None, f"bad JSON: {_flat(str(e), 60)}"
    if not isinstance(value, dict):
        return None, f"JSON {type(value).__name__}, not an object"
    return value, None


def journal_problem(state: Any, data: Any) -> str | None:
    """Why a journal row (``state``, ``data`` JSON text) cannot be read, or ``None``: its state must be one of
    ``JOURNAL_STATES`` (and so must ``ctx.reached`` in its data) and its data a JSON object."""
    if not isinstance(state, str) or state not in JOURNAL_STATES:
        return f"unknown state {str(state)[:40]!r}"
    obj, problem = _json_problem(data)
    if obj is None:
        return f"data: {problem}"
    ctx = obj.get("ctx")
    if ctx is not None and not isinstance(ctx, dict):
        return "data: ctx is not an object"
    if isinstance(ctx, dict):
        if "reached" in ctx and ctx["reached"] not in JOURNAL_STATES:
            return f"data: unknown ctx.reached {str(ctx['reached'])[:40]!r}"
        for key, want in _CTX_FIELDS.items():
            if not isinstance(ctx.get(key), want) or isinstance(ctx.get(key), bool):
                return f"data: ctx.{key} is {type(ctx.get(key)).__name__}, not {want.__name__}"
    return None


_CTX_FIELDS: dict[str, type] = {"replica": int, "base_version": int, "blue": str, "green": str, "shape": str,
                                "region": str}
"""What recovery needs of a journal row's ``ctx`` (the orchestrator always writes all of it)."""


def _text(raw: bytes) -> str | bytes:
    """SQLite text as ``str``, or the raw bytes when damage made it invalid UTF-8 (the row checks then name
    the row instead of ``sqlite3`` raising ``UnicodeDecodeError`` out of the query)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _connect(path: Path, **kwargs: Any) -> sqlite3.Connection:
    conn: sqlite3.Connection = sqlite3.connect(path, **kwargs)
    conn.text_factory = _text
    return conn


_F = TypeVar("_F", bound=Callable[..., Any])
_C = TypeVar("_C", bound=type)


def _translated(fn: _F) -> _F:
    """``fn`` (a ``Ledger`` method) with every ``sqlite3.Error`` turned into the one-line ``SculptError``."""
    @functools.wraps(fn)
    def wrapper(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise sqlite_error(self.path, e) from None
    return wrapper  # type: ignore[return-value]


def _translate_public_methods(cls: _C) -> _C:
    """Wrap every public method of ``cls`` with ``_translated``: no raw SQLite error reaches a verb."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _translated(member))
    return cls


@_translate_public_methods
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
        self._parsed_specs: dict[Any, dict[str, Any]] = {}
        self._specs_lock = threading.Lock()
        try:
            self._open()
        except (sqlite3.Error, UnicodeDecodeError) as e:
            self.close()
            raise sqlite_error(self.path, e) from None
        except OSError as e:  # e.g. a symbolic link to nowhere
            self.close()
            raise LedgerError(f"cannot open ledger {self.path}: {e.strerror or e}",
                              f"check {self.path} (a file sculpt can read and write), or set SCULPT_HOME") from None
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Create the ledger if no file exists, else check it (read-only) before using it, then upgrade it."""
        if self.path.is_dir():
            raise sqlite_error(self.path, sqlite3.OperationalError("is a directory"))
        if not os.path.lexists(self.path):
            self._create()
        else:
            self._inspect()
        upgraded_from = None
        with self._tx() as db:
            row = None
            if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            if row is None:  # a SQLite file with no tables at all (checked by _inspect): nothing to lose
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif (old := _schema_int(self.path, row[0])) < SCHEMA_VERSION:
                self._upgrade(db, old)
                upgraded_from = old
        if upgraded_from is not None:
            try:  # give back the space the repeated specs took; the ledger is sound without it
                self._conn().execute("VACUUM")
            except sqlite3.Error as e:
                log.warning("could not compact ledger %s after upgrading it: %s", self.path, e)

    def _create(self) -> None:
        """Build a new ledger beside ``path`` and link it into place complete: no reader ever sees, and no crash
        ever leaves, an empty or half-made ledger; a process that loses the race uses the winner's."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        with contextlib.suppress(OSError):
            tmp.unlink()  # left by a crashed attempt of a process with the same pid
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.executescript(f"BEGIN;{_SCHEMA};INSERT INTO meta VALUES ('schema_version', "
                                   f"'{SCHEMA_VERSION}');COMMIT;")
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first
            except OSError:  # a file system without hard links
                if not os.path.lexists(self.path):
                    os.replace(tmp, self.path)
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise sqlite_error(self.path, e) from None
        except OSError as e:
            raise sqlite_error(self.path, sqlite3.OperationalError(
                f"unable to open database file ({e.strerror})")) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _inspect(self) -> None:
        """Refuse an existing file that is not a whole sculpt ledger, without writing to it."""
        if self.path.stat().st_size == 0:
            raise LedgerError(
                f"ledger {self.path} is empty (0 bytes); sculpt never leaves an empty ledger, so its content was "
                "lost", f"restore a backup (`sculpt ledger backup` makes them), or delete {self.path} to start a "
                "new ledger without history")
        conn = _connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only=ON")
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            names.discard("sqlite_sequence")
            if "meta" not in names:
                if names:
                    raise LedgerError(f"ledger {self.path} has tables ({', '.join(sorted(map(str, names))[:5])}) but no meta "
                                      "table: it is damaged or not a sculpt ledger", RESTORE_FIX)
                return
            rows = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall()
            if not rows:
                raise LedgerError(f"ledger {self.path} has no schema version in its meta table", RESTORE_FIX)
            version = _schema_int(self.path, rows[0][0])
            if version > SCHEMA_VERSION:
                raise ConfigError(f"ledger {self.path} has schema version {version}, newer than this sculpt "
                                  f"({SCHEMA_VERSION})", "upgrade sculpt")
            missing = _REQUIRED_TABLES[version] - names
            if missing:
                raise LedgerError(f"ledger {self.path} (schema version {version}) has lost table(s) "
                                  f"{', '.join(sorted(missing))}", RESTORE_FIX)
            # damage in pages this command would never read still means the file needs restoring: SQLite's
            # structural check reads every page (about 1 ms per MB), so it is refused now, before any write
            found = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
            if found != ["ok"]:
                raise LedgerError(f"ledger {self.path} is damaged: SQLite's check found {_flat('; '.join(found))}",
                                  RESTORE_FIX)
        finally:
            conn.close()

    @staticmethod
    def _upgrade(db: sqlite3.Connection, old: int) -> None:
        """Bring an older schema up to ``SCHEMA_VERSION`` inside the opening transaction (the new tables are
        already created): version 1 lacks ``versions.pid``; versions 1 and 2 store each version's and step's
        spec whole, version 3 once per distinct content in ``specs``."""
        columns = {r[1] for r in db.execute("PRAGMA table_info(versions)")}
        if "pid" not in columns:
            db.execute("ALTER TABLE versions ADD COLUMN pid INTEGER")
        db.create_function("sculpt_spec_hash", 1, spec_hash, deterministic=True)
        for table in ("versions", "steps"):
            columns = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if "spec" in columns and "spec_hash" not in columns:
                db.execute(f"INSERT OR IGNORE INTO specs SELECT sculpt_spec_hash(spec), spec FROM {table}")
                db.execute(f"UPDATE {table} SET spec = sculpt_spec_hash(spec)")
                db.execute(f"ALTER TABLE {table} RENAME COLUMN spec TO spec_hash")
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        log.debug("upgraded the ledger schema from version %d to %d", old, SCHEMA_VERSION)

    @classmethod
    def for_spec(cls, spec_path: str | Path | None = None) -> Ledger:
        return cls(state_dir(spec_path) / "ledger.db")

    # -- connection ---------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = _connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def _tx(self) -> _Tx:
        """A write transaction on this thread's connection (see ``_Tx``: signals are held across it)."""
        return _Tx(self)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise LedgerError(f"ledger {self.path} has no schema version in its meta table", RESTORE_FIX)
        return _schema_int(self.path, row[0])

    # -- rows: decoded and checked, or a one-line error naming the table and row --------------------------
    def _obj(self, text: Any, table: str, rowid: Any, column: str) -> dict[str, Any]:
        obj, problem = _json_problem(text)
        if obj is None:
            raise _bad_row(self.path, table, rowid, f"{column}: {problem}")
        return obj

    def _typed(self, row: tuple[Any, ...], table: str, names: tuple[str, ...], types: tuple[Any, ...]) -> None:
        """Raise the bad-row error when a value of ``row`` (``rowid`` first) has the wrong type."""
        problem = _types_problem(row[1:], names, types)
        if problem is not None:
            raise _bad_row(self.path, table, row[0], problem)

    @staticmethod
    def _put_spec(db: sqlite3.Connection, spec: dict[str, Any]) -> str:
        """Store ``spec`` once (keyed by the hash of its JSON) and return the key."""
        text = json.dumps(spec)
        key = spec_hash(text)
        db.execute("INSERT OR IGNORE INTO specs VALUES (?, ?)", (key, text))
        return key

    def _spec(self, key: Any, table: str, rowid: Any, cache: dict[Any, dict[str, Any]]) -> dict[str, Any]:
        """The spec ``key`` refers to, read and parsed once per ledger (a content hash never changes its
        content; the same spec is the same object: read it, do not change it). ``cache`` is one call's."""
        if key in cache:
            return cache[key]
        with self._specs_lock:
            parsed = self._parsed_specs.get(key)
        if parsed is None:
            row = self._conn().execute("SELECT rowid, spec FROM specs WHERE hash=?", (key,)).fetchone()
            if row is None:
                raise _bad_row(self.path, table, rowid, f"its spec {str(key)[:16]} is missing from table specs")
            parsed = self._obj(row[1], "specs", row[0], "spec")
            if not isinstance(row[1], str) or spec_hash(row[1]) != key:  # content-addressed: damage shows
                raise _bad_row(self.path, "specs", row[0], "the spec does not match its hash")
            with self._specs_lock:
                if len(self._parsed_specs) >= 16:
                    self._parsed_specs.pop(next(iter(self._parsed_specs)))
                self._parsed_specs[key] = parsed
        cache[key] = parsed
        return parsed

    # -- versions -----------------------------------------------------------------------------------------
    _VERSION_COLUMNS = "stack, version, time, spec_hash, fleet, result, message, kind, pid"
    _VERSION_SELECT = ("SELECT v.rowid, v.stack, v.version, v.time, v.spec_hash, v.fleet, v.result, v.message, "
                       "v.kind, v.pid FROM versions v")
    _VERSION_TYPES = (("stack", "version", "time", "spec_hash", "fleet", "result", "message", "kind", "pid"),
                      (str, int, _NUM, str, str, str, str, str, _OPT_INT))

    def append_version(self, stack: str, *, spec: dict[str, Any], fleet: dict[str, Any], result: str,
                       message: str = "", kind: str = "up", when: float | None = None) -> int:
        """Append the next numbered version of ``stack`` (written by this process: ``pid``) and return its
        number."""
        with self._tx() as db:
            (n,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE stack=?", (stack,)).fetchone()
            db.execute(
                f"INSERT INTO versions ({self._VERSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (stack, n, when if when is not None else time.time(), self._put_spec(db, spec), json.dumps(fleet),
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
                (stack, version, when if when is not None else time.time(), self._put_spec(db, spec),
                 json.dumps(fleet), result, message, kind),
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
        with self._tx() as db:
            if db.execute("SELECT 1 FROM versions WHERE stack=? AND version=?", (stack, version)).fetchone() is None:
                raise NotFoundError(f"stack '{stack}' has no version {version}", "see `sculpt history` for versions")
            sets: list[str] = []
            args: list[Any] = []
            for column, value in (("result", result), ("message", message),
                                  ("spec_hash", None if spec is None else self._put_spec(db, spec)),
                                  ("fleet", None if fleet is None else json.dumps(fleet))):
                if value is not None:
                    sets.append(f"{column}=?")
                    args.append(value)
            if sets:
                db.execute(f"UPDATE versions SET {', '.join(sets)} WHERE stack=? AND version=?",
                           (*args, stack, version))

    def _version(self, row: tuple[Any, ...], cache: dict[Any, dict[str, Any]]) -> Version:
        self._typed(row, "versions", *self._VERSION_TYPES)
        spec = self._spec(row[4], "versions", row[0], cache)
        return Version(row[1], row[2], float(row[3]), spec, self._obj(row[5], "versions", row[0], "fleet"), row[6],
                       row[7], row[8], pid=row[9])

    def _select_versions(self, where: str, args: tuple[Any, ...], tail: str = "") -> list[Version]:
        rows = self._conn().execute(f"{self._VERSION_SELECT} WHERE {where} {tail}", args).fetchall()
        cache: dict[Any, dict[str, Any]] = {}
        return [self._version(r, cache) for r in rows]

    def versions(self, stack: str) -> list[Version]:
        """Every version of ``stack``, oldest first (versions with the same spec share one spec dict: read it,
        do not change it)."""
        return self._select_versions("v.stack=?", (stack,), "ORDER BY v.version")

    def version(self, stack: str, version: int) -> Version:
        got = self._select_versions("v.stack=? AND v.version=?", (stack, version))
        if not got:
            raise NotFoundError(f"stack '{stack}' has no version {version}", "see `sculpt history` for versions")
        return got[0]

    def latest_version(self, stack: str, *, succeeded_only: bool = False) -> Version | None:
        got = self._select_versions("v.stack=?" + (" AND v.result='succeeded'" if succeeded_only else ""), (stack,),
                                    "ORDER BY v.version DESC LIMIT 1")
        return got[0] if got else None

    def pending_versions(self, stack: str) -> list[Version]:
        """The versions of ``stack`` still ``pending``, oldest first (each with the ``pid`` that wrote it, so
        that a sweep can tell the pending version of a dead command from a live one's)."""
        return self._select_versions("v.stack=? AND v.result='pending'", (stack,), "ORDER BY v.version")

    def stacks(self) -> list[str]:
        rows = self._conn().execute("SELECT DISTINCT stack FROM versions ORDER BY stack").fetchall()
        if any(not isinstance(name, str) for (name,) in rows):
            rowid = next((r for r, name in self._conn().execute("SELECT rowid, stack FROM versions")
                          if not isinstance(name, str)), "?")
            raise _bad_row(self.path, "versions", rowid, "stack is not UTF-8 text")
        return [r[0] for r in rows]

    # -- steps: the stack updates of one version ----------------------------------------------------------
    _STEP_SELECT = ("SELECT st.rowid, st.stack, st.version, st.step, st.seq, st.time, st.spec_hash, st.fleet, "
                    "st.message, st.result FROM steps st")
    _STEP_TYPES = (("stack", "version", "step", "seq", "time", "spec_hash", "fleet", "message", "result"),
                   (str, int, int, int, _NUM, str, str, str, str))

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
            db.execute("INSERT INTO steps (stack, version, step, time, spec_hash, fleet, message, result) "
                       "VALUES (?,?,?,?,?,?,?,?)",
                       (stack, version, k, when if when is not None else time.time(), self._put_spec(db, spec),
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

    def _step(self, r: tuple[Any, ...], cache: dict[Any, dict[str, Any]]) -> StepRecord:
        self._typed(r, "steps", *self._STEP_TYPES)
        return StepRecord(r[1], r[2], r[3], r[4], float(r[5]), self._spec(r[6], "steps", r[0], cache),
                          self._obj(r[7], "steps", r[0], "fleet"), r[8], r[9])

    def steps(self, stack: str, version: int) -> list[StepRecord]:
        rows = self._conn().execute(f"{self._STEP_SELECT} WHERE st.stack=? AND st.version=? ORDER BY st.step",
                                    (stack, version)).fetchall()
        cache: dict[Any, dict[str, Any]] = {}
        return [self._step(r, cache) for r in rows]

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
        cache: dict[Any, dict[str, Any]] = {}
        for v in reversed(self.versions(stack)):
            row = self._conn().execute(
                f"{self._STEP_SELECT} WHERE st.stack=? AND st.version=? AND st.result='succeeded' "
                "ORDER BY st.step DESC LIMIT 1", (stack, v.version)).fetchone()
            if row is not None:
                step = self._step(row, cache)
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
            where = f"{from_region} -> {to_region}" if from_region != to_region else to_region
            self._event(db, stack, "move", f"{slot}: {from_shape} -> {to_shape} ({where}; by {origin})",
                        {"slot": slot, "origin": origin, "from_shape": from_shape, "from_region": from_region,
                         "to_shape": to_shape, "to_region": to_region, "version": version}, time)
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
            "SELECT rowid, seq, stack, time, origin, slot, from_shape, from_region, to_shape, to_region, version "
            "FROM moves WHERE stack=? AND time>=? ORDER BY time, seq", (stack, since)).fetchall()
        for r in rows:
            self._typed(r, "moves", self._MOVE_TYPES[0], self._MOVE_TYPES[1])
        return [MoveRecord(r[1], r[2], float(r[3]), *r[4:]) for r in rows]

    _MOVE_TYPES = (("seq", "stack", "time", "origin", "slot", "from_shape", "from_region", "to_shape", "to_region",
                    "version"), (int, str, _NUM, str, str, str, str, str, str, _OPT_INT))

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

    _LOCK_TYPES = (("pid", "host", "since", "purpose"), (int, str, _NUM, str))

    def acquire(self, name: str, purpose: str = "write") -> bool:
        """Take the lock; return True if this process already held it. A lock row that cannot be read (a
        damaged ledger) is taken over with a warning: locks only guard live processes."""
        me = os.getpid()
        with self._tx() as db:
            row = db.execute("SELECT rowid, pid, host, since, purpose FROM locks WHERE name=?", (name,)).fetchone()
            if row is not None and (bad := _types_problem(row[1:], *self._LOCK_TYPES)) is not None:
                log.warning("took over the unreadable lock row of '%s' (%s)", name, bad)
            elif row is not None:
                _, pid, host, since, held_for = row
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
        row = self._conn().execute("SELECT rowid, pid, host, since, purpose FROM locks WHERE name=?",
                                   (name,)).fetchone()
        if row is None or _types_problem(row[1:], *self._LOCK_TYPES) is not None:
            return None  # an unreadable lock row guards nobody (``acquire`` takes it over)
        return (row[1], float(row[3]), row[4])

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
        now = when if when is not None else time.time()
        with self._tx() as db:
            db.execute("UPDATE migrations SET result=?, reason=?, ended=? WHERE id=?",
                       (result, reason, now, migration_id))
            row = db.execute("SELECT stack, strategy FROM migrations WHERE id=?", (migration_id,)).fetchone()
            if result == "rolled_back" and row is not None:  # the event is written with the migration's end
                self._event(db, str(row[0]), "rollback", f"morph {migration_id} rolled back: {reason or 'no reason'}",
                            {"migration": migration_id, "strategy": row[1], "reason": reason}, now)

    _MIGRATION_SELECT = ("SELECT rowid, id, stack, strategy, source, target, state, result, reason, started, ended, "
                         "pid FROM migrations")
    _MIGRATION_TYPES = (("id", "stack", "strategy", "source", "target", "state", "result", "reason", "started",
                         "ended", "pid"), (str, str, str, str, str, str, _OPT_STR, _OPT_STR, _NUM, _OPT_NUM, _OPT_INT))

    def _migrations(self, where: str, args: tuple[Any, ...]) -> list[Migration]:
        """The migrations matching ``where``; a row that cannot be read is quarantined (with a warning) rather
        than stopping every verb: recovery then skips that morph."""
        out: list[Migration] = []
        bad: list[tuple[tuple[Any, ...], str]] = []
        for r in self._conn().execute(f"{self._MIGRATION_SELECT} WHERE {where} ORDER BY started", args).fetchall():
            problem = _types_problem(r[1:], *self._MIGRATION_TYPES)
            source, sp = _json_problem(r[4]) if problem is None else (None, None)
            target, tp = _json_problem(r[5]) if problem is None else (None, None)
            problem = problem or (sp and f"source: {sp}") or (tp and f"target: {tp}")
            if problem is not None or source is None or target is None:
                bad.append((r, problem or "unreadable"))
                continue
            out.append(Migration(r[1], r[2], r[3], source, target, r[6], r[7], r[8], float(r[9]),
                                 None if r[10] is None else float(r[10]), r[11]))
        if bad:
            self._quarantine("migrations", bad, "morph {id} cannot be read and is left out (its recovery is "
                                                "skipped)")
        return out

    def migration(self, migration_id: str) -> Migration:
        got = self._migrations("id=?", (migration_id,))
        if not got:
            raise NotFoundError(f"no migration '{migration_id}'", "see `sculpt history`")
        return got[0]

    def migrations(self, stack: str) -> list[Migration]:
        return self._migrations("stack=?", (stack,))

    def unfinished_migrations(self, stack: str | None = None) -> list[Migration]:
        """The migrations without a result. Their journals are read too, so that an unreadable row of a morph
        still in flight is quarantined (and warned about) by the first command that looks, whoever recovers it."""
        got = self._migrations("result IS NULL" + (" AND stack=?" if stack else ""), (stack,) if stack else ())
        for m in got:
            self.journal_entries(m.id)
        return got

    def journal_entries(self, migration_id: str) -> list[JournalEntry]:
        """The journal of ``migration_id`` in order. A row with an unknown state or unreadable data is moved
        to ``quarantine`` with a warning and left out, so recovery, ``down`` and ``status`` keep working."""
        rows = self._conn().execute(
            "SELECT rowid, seq, migration_id, stack, state, time, data FROM journal WHERE migration_id=? ORDER BY seq",
            (migration_id,),
        ).fetchall()
        out: list[JournalEntry] = []
        bad: list[tuple[tuple[Any, ...], str]] = []
        for r in rows:
            problem = (_types_problem(r[1:6], ("seq", "migration_id", "stack", "state", "time"),
                                      (int, str, str, str, _NUM)) or journal_problem(r[4], r[6]))
            if problem is not None:
                bad.append((r, problem))
                continue
            out.append(JournalEntry(r[1], r[2], r[3], r[4], float(r[5]), json.loads(r[6])))
        if bad:
            self._quarantine("journal", bad, f"journal row {{rowid}} of morph {migration_id} cannot be read and "
                                             "is left out")
        return out

    def _quarantine(self, table: str, rows: list[tuple[tuple[Any, ...], str]], what: str) -> None:
        """Move ``rows`` (``rowid`` first, each with its problem) of ``table`` to ``quarantine``, warning about
        each; ``what`` is formatted with ``rowid`` and ``id``. When the ledger cannot be written the rows are
        only left out (and warned about again next time)."""
        moved = True
        try:
            with self._tx() as db:
                for r, problem in rows:
                    db.execute("INSERT INTO quarantine (time, source, source_rowid, reason, row) VALUES (?,?,?,?,?)",
                               (time.time(), table, r[0], problem, json.dumps(list(r[1:]), default=repr)))
                    db.execute(f"DELETE FROM {table} WHERE rowid=?", (r[0],))
        except sqlite3.Error as e:
            moved = False
            log.warning("could not move unreadable rows of table %s to quarantine: %s", table, e)
        for r, problem in rows:
            log.warning("%s (%s); %s", what.format(rowid=r[0], id=r[1]), problem,
                        "moved to table quarantine: `sculpt ledger check` lists it" if moved else
                        "run `sculpt ledger check`")

    # -- model checkpoints --------------------------------------------------------------------------------
    def save_checkpoint(self, key: str, model: str, blob: bytes, meta: dict[str, Any] | None = None) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?)",
                       (key, model, time.time(), sqlite3.Binary(blob), json.dumps(meta or {})))

    def load_checkpoint(self, key: str, model: str) -> tuple[bytes, dict[str, Any]] | None:
        row = self._conn().execute("SELECT rowid, blob, meta FROM checkpoints WHERE key=? AND model=?",
                                   (key, model)).fetchone()
        if row is None:
            return None
        if not isinstance(row[1], bytes):
            raise _bad_row(self.path, "checkpoints", row[0], f"blob is {type(row[1]).__name__}")
        return bytes(row[1]), self._obj(row[2], "checkpoints", row[0], "meta")

    def checkpoints(self, key: str | None = None) -> list[tuple[str, str, float]]:
        q = ("SELECT rowid, key, model, time FROM checkpoints" + (" WHERE key=?" if key else "")
             + " ORDER BY key, model")
        rows = self._conn().execute(q, (key,) if key else ()).fetchall()
        for r in rows:
            self._typed(r, "checkpoints", ("key", "model", "time"), (str, str, _NUM))
        return [(r[1], r[2], float(r[3])) for r in rows]

    # -- metric rollups -----------------------------------------------------------------------------------
    def add_rollup(self, stack: str, instance: str, when: float, data: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO rollups VALUES (?,?,?,?)", (stack, instance, when, json.dumps(data)))

    def rollups(self, stack: str, since: float = 0.0) -> list[tuple[str, float, dict[str, Any]]]:
        rows = self._conn().execute(
            "SELECT rowid, instance, time, data FROM rollups WHERE stack=? AND time>=? ORDER BY time", (stack, since)
        ).fetchall()
        out = []
        for r in rows:
            self._typed(r[:3], "rollups", ("instance", "time"), (str, _NUM))
            out.append((r[1], float(r[2]), self._obj(r[3], "rollups", r[0], "data")))
        return out

    # -- events: decisions, policy blocks, moves, rollbacks (``sculpt events``, the webhook) ----------------
    @staticmethod
    def _event(db: sqlite3.Connection, stack: str, kind: str, summary: str, data: dict[str, Any] | None,
               when: float | None) -> int:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind '{kind}' (one of {', '.join(EVENT_KINDS)})")
        cur = db.execute("INSERT INTO events (stack, time, kind, summary, data) VALUES (?,?,?,?,?)",
                         (stack, when if when is not None else time.time(), kind, summary,
                          json.dumps(data or {}, allow_nan=False, default=str)))
        return int(cur.lastrowid or 0)

    def append_event(self, stack: str, kind: str, summary: str, data: dict[str, Any] | None = None,
                     when: float | None = None) -> int:
        """Append one event (``kind`` in ``EVENT_KINDS``); returns its ``seq`` (increasing, never reused).
        Moves and the rollbacks of failed migrations are recorded by ``record_move``/``end_migration``."""
        with self._tx() as db:
            return self._event(db, stack, kind, summary, data, when)

    def events(self, stack: str | None = None, after: int = 0, kinds: tuple[str, ...] = (),
               limit: int | None = None) -> list[Event]:
        """Events with ``seq > after`` (of ``stack``, of ``kinds`` when given), oldest first.

        >>> import tempfile; led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
        >>> _ = led.record_move("web", time=5.0, origin="watch", slot="web-0", from_shape="a", from_region="r",
        ...                     to_shape="b", to_region="r", version=None)
        >>> [(e.kind, e.summary) for e in led.events("web")]
        [('move', 'web-0: a -> b (r; by watch)')]
        """
        sql = "SELECT rowid, seq, stack, time, kind, summary, data FROM events WHERE seq > ?"
        args: list[Any] = [after]
        if stack is not None:
            sql += " AND stack = ?"
            args.append(stack)
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        out = []
        for r in self._conn().execute(sql, args).fetchall():
            self._typed(r[:6], "events", ("seq", "stack", "time", "kind", "summary"), (int, str, _NUM, str, str))
            out.append(Event(r[1], r[2], float(r[3]), r[4], r[5], self._obj(r[6], "events", r[0], "data")))
        return out

    def event_cursor(self, stack: str, sink: str) -> int:
        """The ``seq`` of the last event of ``stack`` delivered to ``sink`` (a webhook URL); 0 if none."""
        row = self._conn().execute("SELECT seq FROM event_cursors WHERE stack=? AND sink=?", (stack, sink)).fetchone()
        return int(row[0]) if row is not None and isinstance(row[0], int) else 0

    def set_event_cursor(self, stack: str, sink: str, seq: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO event_cursors (stack, sink, seq) VALUES (?,?,?) "
                       "ON CONFLICT (stack, sink) DO UPDATE SET seq = MAX(seq, excluded.seq)", (stack, sink, seq))

    # -- backup -------------------------------------------------------------------------------------------
    def backup(self, to: str | Path) -> Path:
        """Copy the ledger to ``to`` with SQLite's online backup API (see ``backup_ledger``)."""
        return backup_ledger(self.path, to)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# -- sculpt ledger backup / check: they work on a ledger that ``Ledger`` refuses to open ----------------------
def default_backup_path(ledger_path: Path, now: float | None = None) -> Path:
    """``<state dir>/backups/ledger-<UTC time>.db`` (``-2``, ``-3``... when that name is taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    base = ledger_path.parent / "backups" / f"ledger-{stamp}"
    path, n = base.with_suffix(".db"), 1
    while os.path.lexists(path):
        n += 1
        path = base.with_name(f"{base.name}-{n}.db")
    return path


def _existing_ledger(path: Path) -> None:
    if not os.path.lexists(path):
        raise NotFoundError(f"no ledger at {path}", "run a sculpt command there first (`sculpt up`), or set "
                                                    "SCULPT_HOME to the state directory that has one")
    if path.is_dir():
        raise sqlite_error(path, sqlite3.OperationalError("is a directory"))


def backup_ledger(path: str | Path, to: str | Path) -> Path:
    """Copy the ledger at ``path`` to ``to`` (a new file) with SQLite's online backup API: consistent while
    other processes write, never half-written (copied beside ``to``, then linked into place). Returns ``to``."""
    src_path, dest = Path(path), Path(to)
    _existing_ledger(src_path)
    if src_path.stat().st_size == 0:
        raise LedgerError(f"ledger {src_path} is empty (0 bytes): there is nothing to back up", RESTORE_FIX)
    if os.path.lexists(dest):
        raise ConfigError(f"backup file {dest} exists already", "pass another --to, or remove it first")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LedgerError(f"cannot create backup directory {dest.parent}: {e.strerror}",
                          f"make {dest.parent.parent} writable, or pass --to a writable place") from None
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.new")
    try:
        try:
            src = sqlite3.connect(src_path, timeout=30, isolation_level=None)
            src.execute("PRAGMA query_only=ON")
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise sqlite_error(src_path, e) from None
        try:
            try:
                dst = sqlite3.connect(tmp)
            except (sqlite3.Error, UnicodeDecodeError) as e:
                raise sqlite_error(dest, e) from None
            try:
                src.backup(dst)
                (ok,) = dst.execute("PRAGMA quick_check").fetchone()
            except (sqlite3.Error, UnicodeDecodeError) as e:
                low = str(e).lower()
                blame = dest if "full" in low or "i/o" in low or "readonly" in low or "unable to open" in low \
                    else src_path
                raise sqlite_error(blame, e) from None
            finally:
                dst.close()
        finally:
            src.close()
        if ok != "ok":
            raise LedgerError(f"ledger {src_path} is damaged: its copy fails SQLite's check ({_flat(str(ok))})",
                              RESTORE_FIX)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise ConfigError(f"backup file {dest} exists already", "pass another --to, or remove it first") \
                from None
        except OSError:
            os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return dest


@dataclass(frozen=True)
class Problem:
    """One thing ``check_ledger`` found wrong: where (table, row) and what."""

    problem: str
    table: str | None = None
    row: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "row": self.row, "problem": self.problem}

    def __str__(self) -> str:
        where = f"{self.table} row {self.row}: " if self.row is not None else f"{self.table}: " if self.table else ""
        return f"{where}{self.problem}"


MAX_PROBLEMS = 200
"""``check_ledger`` stops listing after this many problems (and says how many more there were)."""


def check_ledger(path: str | Path) -> dict[str, Any]:
    """Check the ledger at ``path`` without writing to it: SQLite's integrity check, the schema version and
    tables, that every JSON column of every row parses to an object, journal states are known, each version's
    and step's spec exists, and whether rows were quarantined. Returns ``{"path", "ok", "schema_version",
    "integrity", "rows": {table: n}, "quarantined", "problems": [{"table", "row", "problem"}]}``."""
    p = Path(path)
    _existing_ledger(p)
    problems: list[Problem] = []
    report: dict[str, Any] = {"path": str(p), "ok": False, "schema_version": None, "integrity": None, "rows": {},
                              "quarantined": 0, "problems": []}
    total = 0

    def add(problem: Problem) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(problem)

    def done() -> dict[str, Any]:
        report["problems"] = [x.to_json() for x in problems]
        if total > len(problems):
            report["problems"].append({"table": None, "row": None,
                                       "problem": f"... and {total - len(problems)} more"})
        report["ok"] = total == 0
        return report

    if p.stat().st_size == 0:
        add(Problem("the file is empty (0 bytes): its content was lost"))
        return done()
    try:
        conn = _connect(p, timeout=30, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
    except (sqlite3.Error, UnicodeDecodeError) as e:
        raise sqlite_error(p, e) from None
    try:
        try:
            lines = [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})").fetchall()]
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e).lower():
                raise sqlite_error(p, e) from None
            add(Problem(f"not a readable SQLite database ({e})"))
            return done()
        report["integrity"] = "ok" if lines == ["ok"] else lines
        if lines != ["ok"]:
            for line in lines:
                add(Problem(f"integrity check: {line}"))
        names.discard("sqlite_sequence")
        version = _check_schema(conn, names, add)
        report["schema_version"] = version
        for table in sorted(names & (set(_JSON_COLUMNS) | {"versions", "steps"})):
            _check_table(conn, table, report["rows"], add)
        if "quarantine" in names:
            n = _count(conn, "quarantine", add)
            report["quarantined"] = n
            if n:
                add(Problem(f"{n} unreadable row(s) were moved here (see SELECT * FROM quarantine); restore a "
                            "backup, or delete them once looked at", "quarantine"))
    finally:
        conn.close()
    return done()


def _count(conn: sqlite3.Connection, table: str, add: Callable[[Problem], None]) -> int:
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except (sqlite3.Error, UnicodeDecodeError) as e:
        add(Problem(f"cannot be read ({e})", table))
        return 0


def _check_schema(conn: sqlite3.Connection, names: set[str], add: Callable[[Problem], None]) -> int | None:
    if "meta" not in names:
        add(Problem("no meta table: damaged, or not a sculpt ledger" if names else "no tables: an empty database"))
        return None
    try:
        rows = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall()
    except (sqlite3.Error, UnicodeDecodeError) as e:
        add(Problem(f"cannot be read ({e})", "meta"))
        return None
    if not rows:
        add(Problem("no schema_version", "meta"))
        return None
    try:
        version = int(rows[0][0])
    except (TypeError, ValueError):
        add(Problem(f"schema version {rows[0][0]!r} is not a whole number", "meta"))
        return None
    if version > SCHEMA_VERSION:
        add(Problem(f"schema version {version} is newer than this sculpt ({SCHEMA_VERSION}): upgrade sculpt", "meta"))
        return version
    if version < 1:
        add(Problem(f"schema version {version} is below 1", "meta"))
        return version
    missing = _REQUIRED_TABLES[version] - names
    if missing:
        add(Problem(f"schema version {version} but table(s) {', '.join(sorted(missing))} are missing"))
    return version


def _check_table(conn: sqlite3.Connection, table: str, counts: dict[str, int],
                 add: Callable[[Problem], None]) -> None:
    """Every row of ``table``: its JSON columns, journal states, spec references."""
    try:
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    except (sqlite3.Error, UnicodeDecodeError) as e:
        add(Problem(f"cannot be read ({e})", table))
        return
    json_cols = [c for c in _JSON_COLUMNS.get(table, ()) if c in cols]
    if table in ("versions", "steps") and "spec" in cols:  # schema 1 or 2: the spec is stored in the row
        json_cols.append("spec")
    extra = ["state"] if table == "journal" and "state" in cols else ["hash"] if table == "specs" else []
    refs = table in ("versions", "steps") and "spec_hash" in cols
    select = ", ".join(["rowid", *json_cols, *extra])
    n = 0
    try:
        for r in conn.execute(f"SELECT {select} FROM {table}"):
            n += 1
            for col, text in zip(json_cols, r[1:], strict=False):
                _, problem = _json_problem(text)
                if problem is not None:
                    add(Problem(f"{col}: {problem}", table, r[0]))
            if table == "specs" and "hash" in cols and (not isinstance(r[1], str) or spec_hash(r[1]) != r[-1]):
                add(Problem("the spec does not match its hash", table, r[0]))
            if table == "journal" and extra:
                state, data = r[-1], r[1 + json_cols.index("data")] if "data" in json_cols else "{}"
                problem = journal_problem(state, data)
                if problem is not None and not problem.startswith("data:"):
                    add(Problem(f"{problem} (sculpt quarantines it when the morph is read)", table, r[0]))
                elif problem is not None and "ctx" in problem:
                    add(Problem(problem, table, r[0]))
        if refs and "specs" in {x[0] for x in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
            for (rowid, key) in conn.execute(f"SELECT t.rowid, t.spec_hash FROM {table} t LEFT JOIN specs s "
                                             "ON s.hash = t.spec_hash WHERE s.hash IS NULL"):
                add(Problem(f"its spec {str(key)[:16]} is missing from table specs", table, rowid))
    except (sqlite3.Error, UnicodeDecodeError) as e:
        add(Problem(f"cannot be read past row {n} ({e})", table))
    counts[table] = n
