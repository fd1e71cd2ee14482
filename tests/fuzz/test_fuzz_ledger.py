"""Fuzz: a real ledger (made by ``Ledger`` calls) truncated, with bytes flipped or pages zeroed at random
offsets, then opened and read the way the verbs read it, and ``history``/``status`` run on it in-process
(and a few times as the real CLI process). Every outcome is either a ``SculptError`` one-liner or data of
the right types — never a raw ``sqlite3`` error, a ``TypeError`` or a traceback — and a failed open never
changes the file's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.domain.errors import SculptError
from sculpt.ledger import JournalEntry, Ledger, Migration, MoveRecord, StepRecord, Version, check_ledger
from tests.helpers import write_project
from tests.unit.test_ledger_damage import SPEC, make_ledger

PAGE = 4096
EXAMPLES = int(os.environ.get("SCULPT_FUZZ_LEDGER_EXAMPLES", "500"))
"""Examples of the in-process read fuzz; the CLI fuzz runs a twentieth of it (at least 25). A longer hunt:
``SCULPT_FUZZ_LEDGER_EXAMPLES=20000 pytest -o timeout=0 tests/fuzz/test_fuzz_ledger.py`` (the suite's
300 s per-test timeout would stop it)."""
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)  # no explain phase: it reruns slow examples
_BASE: dict[str, Any] = {}


def base() -> tuple[bytes, Path]:
    """The pristine ledger's bytes (made once per session) and a project whose spec matches it."""
    if not _BASE:
        root = Path(tempfile.mkdtemp(prefix="sculpt-fuzz-ledger-"))
        p = make_ledger(root / "ledger.db", versions=4)
        _BASE["bytes"] = p.read_bytes()
        _BASE["project"] = write_project(root, SPEC)
        _BASE["root"] = root
    return _BASE["bytes"], _BASE["project"]


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    if "root" in _BASE:
        shutil.rmtree(_BASE["root"], ignore_errors=True)
        _BASE.clear()


# a mutation: (kind, where, value); offsets are fractions of the file, half of them in the first two pages
# (the header and sqlite_master), where damage changes the most
_where = st.one_of(st.integers(0, 2 * PAGE - 1).map(lambda o: ("abs", o)),
                   st.floats(0.0, 1.0, allow_nan=False).map(lambda f: ("frac", f)))
mutation = st.one_of(
    st.tuples(st.just("flip"), _where, st.integers(1, 255)),
    st.tuples(st.just("set"), _where, st.integers(0, 255)),
    st.tuples(st.just("zero_page"), _where, st.just(0)),
    st.tuples(st.just("truncate"), _where, st.just(0)),
    st.tuples(st.just("garbage"), _where, st.integers(1, 600)),
)
mutations = st.lists(mutation, min_size=1, max_size=4)


def damage(data: bytes, muts: list[tuple[str, tuple[str, Any], int]]) -> bytes:
    buf = bytearray(data)
    for kind, (how, at), value in muts:
        if not buf:
            break
        off = min(int(at) if how == "abs" else int(at * len(buf)), len(buf) - 1)
        if kind == "flip":
            buf[off] ^= value
        elif kind == "set":
            buf[off] = value
        elif kind == "zero_page":
            start = off - off % PAGE
            buf[start:start + PAGE] = bytes(len(buf[start:start + PAGE]))
        elif kind == "truncate":
            del buf[off:]
        elif kind == "garbage":
            buf[off:off + value] = bytes((off * 31 + i * 17) % 256 for i in range(value))[:len(buf) - off]
    return bytes(buf)


def _typed(obj: Any, cls: type) -> None:
    """Every field has the type the dataclass says (a damaged row must not pass through half-typed)."""
    assert isinstance(obj, cls)
    for name, want in {"stack": str, "version": int, "time": float, "spec": dict, "fleet": dict, "result": str,
                       "message": str, "kind": str, "step": int, "seq": int, "state": str, "data": dict,
                       "source": dict, "target": dict, "id": str, "origin": str, "slot": str}.items():
        if hasattr(obj, name) and not (cls is Migration and name == "result"):
            assert isinstance(getattr(obj, name), want), (cls.__name__, name, getattr(obj, name))


def read_everything(led: Ledger) -> None:
    """The read paths the verbs use (history, status, down's recovery, up's desired fleet, policy)."""
    led.schema_version()
    for stack in led.stacks() + ["web"]:
        for v in led.versions(stack):
            _typed(v, Version)
            for s in led.steps(stack, v.version):
                _typed(s, StepRecord)
        led.latest_version(stack)
        led.latest_version(stack, succeeded_only=True)
        led.pending_versions(stack)
        got = led.applied(stack)
        if got is not None:
            assert isinstance(got[1], dict) and isinstance(got[2], dict)
        for m in led.moves(stack):
            _typed(m, MoveRecord)
        led.slot_ids_ever_used(stack)
        for mig in led.migrations(stack) + led.unfinished_migrations(stack):
            _typed(mig, Migration)
            for e in led.journal_entries(mig.id):
                _typed(e, JournalEntry)
        led.lock_holder(stack)
        led.rollups(stack)
    led.checkpoints()
    led.load_checkpoint("web/general", "river")


def _one_line(e: SculptError) -> None:
    text = str(e)
    assert "\n" not in text and "To fix:" in text, text


@settings(max_examples=EXAMPLES, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(muts=mutations)
def test_a_damaged_ledger_reads_cleanly_or_fails_in_one_line(muts: list[Any]) -> None:
    data, _ = base()
    bad = damage(data, muts)
    d = Path(tempfile.mkdtemp(prefix="sculpt-fuzz-"))
    try:
        p = d / "ledger.db"
        p.write_bytes(bad)
        before = hashlib.sha256(bad).hexdigest()
        try:
            led = Ledger(p)
        except SculptError as e:
            event(f"open refused: {type(e).__name__}")
            _one_line(e)
            assert hashlib.sha256(p.read_bytes()).hexdigest() == before, "a failed open changed the file"
            assert sorted(x.name for x in d.iterdir() if x.name.endswith(".new")) == []
        else:
            try:
                read_everything(led)
                event("opened, every read clean")
            except SculptError as e:
                event(f"opened, a read refused: {type(e).__name__}")
                _one_line(e)
            finally:
                led.close()
        report = check_ledger(p)  # never raises on damage: it reports it
        assert isinstance(report["ok"], bool) and isinstance(report["problems"], list)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=max(25, EXAMPLES // 20), deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(muts=mutations)
def test_history_and_status_on_a_damaged_ledger_are_one_line_or_output(muts: list[Any]) -> None:
    data, project = base()
    home = Path(tempfile.mkdtemp(prefix="sculpt-fuzz-home-"))
    old = os.environ.get("SCULPT_HOME")
    os.environ["SCULPT_HOME"] = str(home)
    try:
        (home / "ledger.db").write_bytes(damage(data, muts))
        for verb in (["history", "--json"], ["status", "--json"], ["history"]):
            r = CliRunner().invoke(app, [*verb, "--spec", str(project)])
            assert r.exception is None or isinstance(r.exception, SystemExit), (verb, repr(r.exception))
            assert r.exit_code in (0, 1), (verb, r.exit_code, r.output)
            assert "Traceback" not in r.output
            errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
            if verb[0] == "status" and r.exit_code == 1 and not errors:  # documented: not running, JSON says so
                assert json.loads(r.stdout)["version"] is None
            else:
                assert len(errors) == (r.exit_code == 1), (verb, r.stderr)
    finally:
        if old is None:
            os.environ.pop("SCULPT_HOME", None)
        else:
            os.environ["SCULPT_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)


@settings(max_examples=5, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(muts=mutations)
def test_the_real_cli_process_on_a_damaged_ledger(muts: list[Any]) -> None:
    data, project = base()
    home = Path(tempfile.mkdtemp(prefix="sculpt-fuzz-proc-"))
    try:
        (home / "ledger.db").write_bytes(damage(data, muts))
        r = subprocess.run([sys.executable, "-m", "sculpt.cli.main", "history", "--spec", str(project)],
                           env={**os.environ, "SCULPT_HOME": str(home)}, capture_output=True, text=True, timeout=120)
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == (r.returncode == 1), r.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
