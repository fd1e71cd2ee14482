"""The hostile inputs of issue 14, each through the real ``sculpt`` process: one ``error:`` line, no
traceback, the documented exit code, nothing started and nothing lost.

Each case is what a user (or a tester) actually did: a spec that is not UTF-8, a ledger truncated by a
full disk, a journal row written by a newer sculpt, a Prometheus that answers garbage. Every named case of
the issue is taken in process by ``tests/unit/test_spec_limits.py``, ``tests/unit/test_ledger_damage.py``
and ``tests/metrics/test_prometheus_malformed.py``, and ``tests/fuzz/`` searches the same surfaces at
random; this file runs a representative few of each surface as the user's real process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import psutil
import pytest

from sculpt.ledger import Ledger
from tests.helpers import gone, serving, wait_until

SPEC = """\
fleet: web
engine: local
provider: local
shape: std-0.5c-512m
region: local-a
regions: [local-b]
replicas: {min: 1, max: 2, desired: 1}
"""


def sculpt(home: Path, cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCULPT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "sculpt.cli.main", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, input=stdin)


def one_error(r: subprocess.CompletedProcess[str], codes: tuple[int, ...] = (1, 2)) -> str:
    """The one ``error:`` line of a failed run (and nothing that looks like a crash)."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode in codes, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert len(errors) == 1, f"expected one error line, got:\n{r.stderr}"
    assert "To fix:" in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "sculpt.yaml").write_text(SPEC)
    return d


@pytest.fixture
def home(tmp_path: Path, proj: Path) -> Iterator[Path]:
    """The state dir; whatever a case started (a bad input that was accepted, say) is stopped after it, and
    any process still running for this state dir fails the test."""
    home = tmp_path / "home"
    yield home

    def running() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["pid", "cmdline"])
                if any(str(home) in a for a in (p.info["cmdline"] or []))]

    if running():
        sculpt(home, proj, "down")
    left = running()
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not left, f"processes left running: {[p.info['cmdline'] for p in left]}"


# -- the spec --------------------------------------------------------------------------------------------

def _deep(n: int) -> str:
    return SPEC + "tags: " + "[" * n + "]" * n + "\n"


SPEC_CASES = {
    "binary-garbage": lambda p: p.write_bytes(bytes(range(256)) * 8),
    "20000-deep-nesting": lambda p: p.write_text(_deep(20_000)),
    "duplicate-key": lambda p: p.write_text(SPEC + "shape: std-1c-1024m\n"),
    "unknown-region": lambda p: p.write_text(SPEC.replace("[local-b]", "[local-b, mars-1]")),
    "infinite-drain": lambda p: p.write_text(SPEC + "lb: {drain_s: .inf}\n"),
    "over-1-MB": lambda p: p.write_text(SPEC + "tags: {big: '" + "x" * 1_100_000 + "'}\n"),
}


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_a_bad_spec_is_one_line_and_starts_nothing(case: str, proj: Path, home: Path) -> None:
    SPEC_CASES[case](proj / "sculpt.yaml")
    one_error(sculpt(home, proj, "up"))
    # nothing was written: the state directory holds no version of the stack
    if (home / "ledger.db").exists():
        led = Ledger(home / "ledger.db")
        try:
            assert led.versions("web") == []
        finally:
            led.close()


def test_a_spec_path_that_is_a_directory(proj: Path, home: Path) -> None:
    (proj / "adir").mkdir()
    line = one_error(sculpt(home, proj, "preview", "--spec", "adir"))
    assert "adir" in line


# -- the ledger ------------------------------------------------------------------------------------------

def _ledger(home: Path) -> Path:
    """A ledger with a real history: two versions of ``web`` (no processes: nothing is running)."""
    led = Ledger(home / "ledger.db")
    spec = {"fleet": "web", "provider": "local", "shape": "std-0.5c-512m", "region": "local-a"}
    led.append_version("web", spec=spec, fleet={"slots": []}, result="succeeded", message="up", kind="up")
    led.append_version("web", spec=spec, fleet={"slots": []}, result="succeeded", message="down", kind="down")
    led.close()
    return home / "ledger.db"


def _sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    for s in statements:
        conn.execute(s)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _flip_middle(db: Path) -> None:
    """Garbage over the first 512 bytes of a page in the middle of the file (a page's header: bytes inside a
    page's unused space would damage nothing anyone can read)."""
    data = bytearray(db.read_bytes())
    start = (len(data) // 3) // 4096 * 4096
    for i in range(start, start + 512):
        data[i] ^= 0x5A
    db.write_bytes(bytes(data))


LEDGER_CASES = {
    "truncated-to-100-bytes": lambda db: db.write_bytes(db.read_bytes()[:100]),
    "garbage": lambda db: db.write_bytes(os.urandom(8192)),
    "garbage-mid-file": _flip_middle,
    "emptied-to-0-bytes": lambda db: db.write_bytes(b""),
    "versions-table-dropped": lambda db: _sql(db, "DROP TABLE versions"),
    "schema-version-not-an-integer": lambda db: _sql(db, "UPDATE meta SET value='two' WHERE key='schema_version'"),
}


def _checkpoint(db: Path) -> None:
    """Fold the WAL into the file, so that damaging the file damages what a reader sees."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)


@pytest.mark.parametrize("case", sorted(LEDGER_CASES))
@pytest.mark.parametrize("verb", ["status", "up"])  # history: in-process in tests/fuzz/test_fuzz_ledger.py
def test_a_damaged_ledger_is_one_line_and_never_recreated(case: str, verb: str, proj: Path, home: Path) -> None:
    db = _ledger(home)
    _checkpoint(db)
    LEDGER_CASES[case](db)
    before = db.read_bytes()
    line = one_error(sculpt(home, proj, verb))
    assert "ledger" in line.lower(), line
    assert db.read_bytes() == before, "a failed command changed the damaged ledger"
    assert not (home / "agents").exists() or not any((home / "agents").iterdir())


def test_the_ledger_path_is_a_directory(proj: Path, home: Path) -> None:
    (home / "ledger.db").mkdir(parents=True)
    line = one_error(sculpt(home, proj, "status"))
    assert "ledger.db" in line


def test_a_bad_json_row_in_history_names_the_row(proj: Path, home: Path) -> None:
    db = _ledger(home)
    _sql(db, "UPDATE versions SET fleet='{not json' WHERE version=2")
    r = sculpt(home, proj, "history")
    if r.returncode == 0:  # shown without the unreadable fleet, and said so
        assert "version 2" in r.stderr and "Traceback" not in r.stderr
    else:
        assert "2" in one_error(r)


def test_down_stops_a_running_stack_whose_ledger_is_damaged(proj: Path, home: Path) -> None:
    """The ledger is unreadable, yet ``down`` stops every process of the stack (found from the state
    directory's own records), then fails in one line because it could record no version."""
    r = sculpt(home, proj, "up")
    assert r.returncode == 0, r.stderr
    st = json.loads(sculpt(home, proj, "status", "--json").stdout)
    pids = [i["pid"] for i in st["instances"]] + [st["agent_pid"]]
    try:
        db = home / "ledger.db"
        _checkpoint(db)
        db.write_bytes(db.read_bytes()[:100])
        line = one_error(sculpt(home, proj, "down"))
        assert "ledger" in line
        wait_until(lambda: all(gone(p) for p in pids), 30, "the stack's processes to stop")
    finally:
        for p in pids:
            if not gone(p):
                os.kill(p, 9)


def test_an_unknown_journal_state_never_bricks_down(proj: Path, home: Path) -> None:
    """A journal row sculpt cannot read (a newer sculpt's state, say) is set aside with a warning: status
    and down still work, and down stops every process of the stack."""
    r = sculpt(home, proj, "up", "--json")
    assert r.returncode == 0, r.stderr
    pids = [i["pid"] for i in json.loads(sculpt(home, proj, "status", "--json").stdout)["instances"]]
    assert pids
    db = home / "ledger.db"
    _sql(db, "INSERT INTO migrations (id, stack, strategy, source, target, state, started, pid) "
             "VALUES ('m-x', 'web', 'blue-green', '{}', '{}', 'WARP_DRIVE', 1.0, 1)",
         "INSERT INTO journal (migration_id, stack, state, time, data) VALUES ('m-x', 'web', 'WARP_DRIVE', 1.0, '{')")
    try:
        st = sculpt(home, proj, "status")
        assert st.returncode == 0, st.stderr
        assert "Traceback" not in st.stderr and "warning:" in st.stderr
        down = sculpt(home, proj, "down")
        assert down.returncode == 0, down.stderr
        wait_until(lambda: all(gone(p) for p in pids), 30, "the instances to stop")
    finally:
        sculpt(home, proj, "down")


# -- metric sources and plan files -----------------------------------------------------------------------

class _Garbage(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[tuple[str, type[_Garbage]]]:
    handler = type("Handler", (_Garbage,), {})
    with serving(handler) as url:
        yield url, handler


PROM_BODIES = {
    "data-null": {"status": "success", "data": None},
    "series-a-string": {"status": "success", "data": {"resultType": "matrix", "result": ["web-0"]}},
    "not-json": None,
}


@pytest.mark.parametrize("case", sorted(PROM_BODIES))
def test_a_prometheus_answering_garbage_exits_3_not_0(case: str, proj: Path, home: Path,
                                                      prometheus: tuple[str, type[_Garbage]]) -> None:
    url, handler = prometheus
    body = PROM_BODIES[case]
    handler.body = b"<html>oops" if body is None else json.dumps(body).encode()
    r = sculpt(home, proj, "plan", "--source", f"prometheus={url}", "--backfill", "0", "--model", "river")
    assert r.returncode in (1, 3), f"exit {r.returncode}: {r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    if r.returncode == 1:
        one_error(r)


def test_a_prometheus_that_refuses_exits_3(proj: Path, home: Path) -> None:
    r = sculpt(home, proj, "watch", "--once", "--source", "prometheus=http://127.0.0.1:1", "--model", "river")
    assert r.returncode == 3, f"exit {r.returncode}: {r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr


def test_policy_check_with_an_action_missing_kind(proj: Path, home: Path) -> None:
    plan = {"fleet": "web", "actions": [{"instance": "web-0", "to_shape": "std-1c-1024m"}]}
    (proj / "plan.json").write_text(json.dumps(plan))
    line = one_error(sculpt(home, proj, "policy", "check", "--plan", "plan.json"))
    assert "kind" in line
