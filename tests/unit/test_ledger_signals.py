"""Signals never corrupt the ledger (issue 11, case 7).

A child process loops ledger writes with a SIGTERM handler that raises ``KeyboardInterrupt`` (what
``sculpt morph``/``rollback`` install; and Ctrl-C's default SIGINT handler); the parent sends it the signal
300 times, one at a time, and the child reports after each interrupt whether its connection was left inside
a transaction and whether the next write worked. Before the fix, an interrupt landing between ``BEGIN
IMMEDIATE`` and the ``try`` of ``Ledger._tx`` (or around ``COMMIT``) left the transaction open and the next
write failed with "cannot start a transaction within a transaction" (39 to 50 of 300 here). The "thread"
variant has another thread that does not block the signals (as a server thread would): the kernel hands
it the signal and Python still runs the handler in the main thread — inside the transaction, unless the
handler is held back too. Real processes, real signals, a real SQLite file.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sculpt.ledger import Ledger

SIGNALS = 300

CHILD = textwrap.dedent("""
    import json, signal, sys, threading, time
    from sculpt.ledger import Ledger

    def on_term(signum, frame):
        raise KeyboardInterrupt

    stop = []
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, lambda s, f: stop.append(1))
    if sys.argv[3] == "SIGINT":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as Python sets it up
    if sys.argv[2] == "thread":  # another thread that does not block the signals (an API server, say)
        threading.Thread(target=lambda: time.sleep(3600), daemon=True).start()
    led = Ledger(sys.argv[1])
    led.begin_migration("m", "web", "in-place", {}, {}, "PLAN")

    def write(i):
        n = led.append_version("web", spec={"i": i}, fleet={"slots": []}, result="pending")
        led.journal("m", "STEP", {"i": i})
        led.set_version_result("web", n, "succeeded")

    def check(i):
        db = led._conn()
        problems = ["open transaction"] if db.in_transaction else []
        try:
            write(-i)
        except KeyboardInterrupt:
            problems.append("second interrupt")
        except Exception as e:
            problems.append(f"next write failed: {type(e).__name__}: {e}")
        if db.in_transaction:
            db.execute("ROLLBACK")  # so that each interrupt is judged on its own
        return json.dumps({"problem": "; ".join(problems)})

    # the report of one interrupt is printed inside the try that catches the next one: the parent sends the
    # next SIGTERM only once it has read the report
    # "ready" goes the same way, so that the first signal, sent once it is read, lands inside that try too
    pending = ['"ready"']
    def run():
        i = 0
        while True:
            try:
                if pending[0] is not None:
                    print(pending[0], flush=True)
                    pending[0] = None
                if stop:
                    return
                i += 1
                write(i)
            except KeyboardInterrupt:
                pending[0] = check(i)

    write(0)
    while True:
        try:
            run()
            break
        except KeyboardInterrupt:  # landed between two iterations, outside any write
            pending[0] = check(0)
    db = led._conn()
    final = {"in_transaction": db.in_transaction}
    write(10**6)
    final["versions"] = len(led.versions("web"))
    print(json.dumps({"final": final}), flush=True)
""")


def _readline(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the child stopped answering"
    return proc.stdout.readline()


def _hammer(db: Path, mode: str, sig: str = "SIGTERM") -> list[str]:
    # its own session: only the signals this test sends reach it (not one sent to the test runner's
    # process group by whatever else runs beside it)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), mode, sig], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    problems: list[str] = []
    try:
        assert json.loads(_readline(proc)) == "ready"
        for _ in range(SIGNALS):
            proc.send_signal(getattr(signal, sig))
            line = _readline(proc)
            assert line, f"the child died: {proc.wait(10)}"
            problem = json.loads(line)["problem"]
            if problem:
                problems.append(problem)
        proc.send_signal(signal.SIGUSR1)
        final = json.loads(_readline(proc))["final"]
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert final["in_transaction"] is False
    assert final["versions"] >= 2
    return problems


@pytest.mark.parametrize(("sig", "mode"), [("SIGTERM", "main"), ("SIGTERM", "thread"), ("SIGINT", "main"),
                                         ("SIGINT", "thread")])
def test_signals_never_leave_a_transaction_open(tmp_path: Path, sig: str, mode: str) -> None:
    db = tmp_path / "ledger.db"
    problems = _hammer(db, mode, sig)
    assert problems == [], f"{len(problems)} of {SIGNALS} interrupts broke the ledger: {sorted(set(problems))}"
    # nothing is left locked or half-written: another process writes at once, and the file is sound
    conn = sqlite3.connect(db, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    led = Ledger(db)
    try:
        n = led.append_version("web", spec={}, fleet={"slots": []}, result="succeeded")
        assert led.version("web", n).result == "succeeded"
        assert led.unfinished_migrations("web")[0].state == "STEP"
    finally:
        led.close()


def test_signals_are_delivered_right_after_the_transaction(tmp_path: Path) -> None:
    """A signal that arrives inside a transaction is not lost: it is raised once the transaction is closed,
    and the write it interrupted is committed (the caller sees the interrupt, the ledger has the row)."""
    led = Ledger(tmp_path / "ledger.db")
    seen: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(KeyboardInterrupt):
            with led._tx() as db:
                os.kill(os.getpid(), signal.SIGTERM)
                assert seen == []  # held back while the transaction is open
                db.execute("INSERT INTO meta VALUES ('probe', '1')")
        assert seen == [signal.SIGTERM]
        assert not led._conn().in_transaction
        assert led._conn().execute("SELECT value FROM meta WHERE key='probe'").fetchone() == ("1",)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()  # the mask is restored
    finally:
        signal.signal(signal.SIGTERM, old)
        led.close()
