"""Crash recovery: finish what a dead controller left half-done, from the journal.

Why it exists: a controller can die (kill -9, power loss) between any two steps of a morph — possibly with
the load balancer paused and blue read-only. Every sculpt command that touches a stack calls
:func:`recover` first; it finds migrations with no result whose controller is gone and, under the stack
lock, rolls each forward (traffic had already reached green: resume, drain, retire, continue) or back
(re-apply the version the replica started from, make blue writable, resume). It is idempotent: running it
again after it was itself interrupted picks up from the journal again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sculpt.domain.clock import Clock, SystemClock
from sculpt.domain.errors import ProviderError
from sculpt.migrate.orchestrator import Orchestrator, Progress, Timeouts
from sculpt.migrate.states import MorphReport

log = logging.getLogger("sculpt.migrate")


def orphaned(ledger: Any, stack: str) -> list[Any]:
    """Unfinished migrations of ``stack`` whose controller process is gone."""
    from sculpt.ledger import pid_alive

    return [m for m in ledger.unfinished_migrations(stack)
            if not m.pid or (m.pid != os.getpid() and not pid_alive(m.pid))]


def recover(state_dir: str | Path, stack: str, *, platform: Any = None, ledger: Any = None,
            clock: Clock | None = None, timeouts: Timeouts | None = None,
            progress: Progress | None = None) -> list[MorphReport]:
    """Resume or roll back every orphaned migration of ``stack``; returns one report per migration.

    Cheap when there is nothing to do (one SQLite query). ``platform``/``ledger`` default to the local
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
        todo = orphaned(ledger, stack)
        if not todo:
            return []
        if platform is None:
            from sculpt.migrate.local import LocalPlatform

            platform = LocalPlatform.open(state_dir, stack, ledger)
        reports = []
        for m in todo:
            orch = Orchestrator(platform, ledger, clock or SystemClock(), timeouts=timeouts, progress=progress)
            try:
                reports.append(orch.recover(m))
            except ProviderError as e:
                log.warning("could not recover morph %s of stack '%s' yet: %s", m.id, stack, e)
        return reports
    finally:
        if own_ledger:
            ledger.close()
