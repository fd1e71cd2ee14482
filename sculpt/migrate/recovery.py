"""Crash recovery: finish what a dead controller left half-done, from the journal.

Why it exists: a controller can die (kill -9, power loss) between any two steps of a morph — possibly with
the load balancer paused and blue read-only. Every sculpt command that touches a stack calls
:func:`recover` first, and the local agent runs this module (``python -m sculpt.migrate.recovery``) as soon
as the process that paused its load balancer is gone or has overrun its lease. It finds migrations with no
result whose controller is gone and, under the stack lock, rolls each forward (the shift was requested:
green holds the writes — shift, resume, drain, retire, continue) or back (re-apply the fleet the replica
started from, make blue writable, resume). Then it closes versions that dead commands left ``pending``. It
is idempotent: running it again after it was itself interrupted picks up from the journal again.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from sculpt.domain.clock import Clock, SystemClock
from sculpt.domain.errors import LockedError, ProviderError, SculptError
from sculpt.migrate.orchestrator import Orchestrator, Progress, Timeouts
from sculpt.migrate.port import Platform
from sculpt.migrate.states import MorphReport

log = logging.getLogger("sculpt.migrate")

LOCK_WAIT_S = 60.0


def orphaned(ledger: Any, stack: str) -> list[Any]:
    """Unfinished migrations of ``stack`` whose controller process is gone."""
    from sculpt.ledger import pid_alive

    return [m for m in ledger.unfinished_migrations(stack)
            if not m.pid or (m.pid != os.getpid() and not pid_alive(m.pid))]


def _commands_of_unfinished(ledger: Any, stack: str) -> set[int]:
    """The command versions that unfinished migrations will close themselves."""
    out = set()
    for m in ledger.unfinished_migrations(stack):
        for e in ledger.journal_entries(m.id):
            if e.data.get("command") is not None:
                out.add(int(e.data["command"]))
                break
    return out


def _recover_one(orch: Orchestrator, ledger: Any, stack: str, migration: Any) -> MorphReport | None:
    """Recover ``migration``; when another process is recovering it already, wait for it (bounded)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return orch.recover(migration)
        except LockedError:
            holder = ledger.lock_holder(stack)
            if holder is None or not str(holder[2]).startswith("recover") or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            if all(m.id != migration.id for m in ledger.unfinished_migrations(stack)):
                return None  # the other process finished it


def recover(state_dir: str | Path, stack: str, *, platform: Platform | None = None, ledger: Any = None,
            clock: Clock | None = None, timeouts: Timeouts | None = None,
            progress: Progress | None = None) -> list[MorphReport]:
    """Resume or roll back every orphaned migration of ``stack``; returns one report per migration.

    Cheap when there is nothing to do (a few SQLite queries). ``platform``/``ledger`` default to the local
    provider's under ``state_dir``. A platform that cannot be reached (no agent) leaves the migration for
    the next call and logs a warning instead of failing the caller's command.
    """
    own_ledger = ledger is None
    if ledger is None:
        from sculpt.ledger import Ledger

        db = Path(state_dir) / "ledger.db"
        if not db.exists():
            return []
        ledger = Ledger(db)
    try:
        from sculpt.migrate.local import LocalPlatform, open_local

        todo = orphaned(ledger, stack)
        local = platform is None or isinstance(platform, LocalPlatform)
        if not todo and not (local and ledger.pending_versions(stack)):
            return []
        if platform is None:
            platform = open_local(state_dir, stack, ledger)
        reports = []
        for m in todo:
            orch = Orchestrator(platform, ledger, clock or SystemClock(), timeouts=timeouts, progress=progress)
            try:
                rep = _recover_one(orch, ledger, stack, m)
                if rep is not None:
                    reports.append(rep)
            except ProviderError as e:
                log.warning("could not recover morph %s of stack '%s' yet: %s", m.id, stack, e)
        if isinstance(platform, LocalPlatform):
            swept = platform.engine.sweep_dead(keep=_commands_of_unfinished(ledger, stack))
            for v in swept:
                log.warning("version %d of stack '%s' was left pending by a sculpt process that died; "
                            "marked failed", v, stack)
        return reports
    finally:
        if own_ledger:
            ledger.close()


def release_orphaned_pause(state_dir: str | Path, stack: str) -> bool:
    """Resume the stack's LB when it is still paused by a process that is gone and no migration is left
    to finish (a pause outside a morph). True when it resumed."""
    from sculpt.ledger import pid_alive
    from sculpt.providers.local.client import AgentClient

    client = AgentClient(state_dir, stack)
    try:
        stats = client.stats()
    except ProviderError:
        return False
    by = stats.get("paused_by") or {}
    pid = int(by.get("pid") or 0)
    if not stats.get("paused") or (pid and pid != os.getpid() and pid_alive(pid)):
        return False
    client.resume()
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m sculpt.migrate.recovery --state-dir D --stack S``: what the agent runs when a morph's
    controller died (or overran its lease) with the load balancer paused."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sculpt.migrate.recovery",
                                 description="finish or undo a morph whose controller died")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--stack", required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s[recovery %(process)d]: %(message)s")
    try:
        reports = recover(a.state_dir, a.stack)
        for r in reports:
            log.info("recovered morph %s: %s%s", r.migration_id, r.result, f" ({r.reason})" if r.reason else "")
        from sculpt.ledger import Ledger

        ledger = Ledger(Path(a.state_dir) / "ledger.db")
        try:
            unfinished = ledger.unfinished_migrations(a.stack)
        finally:
            ledger.close()
        if unfinished:  # a migration that could not be finished yet keeps its pause: retried by the agent
            log.warning("morph %s of stack '%s' is not finished yet", unfinished[0].id, a.stack)
            return 1
        if release_orphaned_pause(a.state_dir, a.stack):
            log.info("released a pause whose owner is gone")
    except SculptError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
