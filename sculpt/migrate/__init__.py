"""sculpt.migrate: the morph orchestrator — a journaled blue/green and in-place state machine with state
sync, rollback, crash recovery and fault injection, over a narrow ``Platform`` port.

Entry points: ``Orchestrator(platform, ledger, clock).morph(MorphRequest(...))`` and
``recover(state_dir, stack)`` (call it before any command that touches a stack).
"""

from sculpt.migrate.faults import Faults, faults_from_env, parse_faults
from sculpt.migrate.orchestrator import MorphRequest, Orchestrator, StepTimeout, Timeouts
from sculpt.migrate.recovery import recover
from sculpt.migrate.states import MorphReport, State

__all__ = ["Faults", "MorphReport", "MorphRequest", "Orchestrator", "State", "StepTimeout", "Timeouts",
           "faults_from_env", "parse_faults", "recover"]
