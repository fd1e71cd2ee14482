"""Fault injection for morphs: make a migration fail on purpose, the way production ones fail.

Why it exists: rollback and crash recovery are only trustworthy if they are exercised. A fault spec comes
from ``--fault`` or the ``SCULPT_FAULT`` environment variable; several faults may be joined with commas.

=========================  ==========================================================================
``green-unhealthy``        green never passes its health check: WAIT_HEALTHY times out
``restore-fails``          restoring the checkpoint into green fails (SYNC_STATE)
``shift-fails``            the traffic shift fails after the new weights were applied (SHIFT)
``step-timeout[:STATE]``   the step (default SYNC_STATE) hangs until its deadline passes
``crash-at:STATE|N``       the controller is killed (SIGKILL) right after doing STATE (or the N-th step)
``crash-before:STATE|N``   the controller is killed right after journaling STATE, before doing it
=========================  ==========================================================================

>>> f = parse_faults("green-unhealthy, crash-at:sync_state")
>>> f.green_unhealthy, f.crash_at
(True, 'SYNC_STATE')
>>> parse_faults("").active
False
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.migrate.states import State, parse_state

FAULT_ENV = "SCULPT_FAULT"
FAULT_NAMES = ("green-unhealthy", "restore-fails", "shift-fails", "step-timeout", "crash-at", "crash-before")


class InjectedFault(ProviderError):
    """A failure a fault spec asked for (never raised without one)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"injected fault: {message}", "unset SCULPT_FAULT / drop --fault", retryable=False)


@dataclass(frozen=True)
class Faults:
    """Which faults to inject. States are stored as names; a step number (1-based) is kept as ``#N``."""

    green_unhealthy: bool = False
    restore_fails: bool = False
    shift_fails: bool = False
    timeout_at: str | None = None
    crash_at: str | None = None
    crash_before: str | None = None

    @property
    def active(self) -> bool:
        return any((self.green_unhealthy, self.restore_fails, self.shift_fails, self.timeout_at,
                    self.crash_at, self.crash_before))

    def __str__(self) -> str:
        parts = [n for n, on in (("green-unhealthy", self.green_unhealthy), ("restore-fails", self.restore_fails),
                                 ("shift-fails", self.shift_fails)) if on]
        for name, where in (("step-timeout", self.timeout_at), ("crash-at", self.crash_at),
                            ("crash-before", self.crash_before)):
            if where:
                parts.append(f"{name}:{where.lstrip('#')}")
        return ",".join(parts) or "none"


def _where(name: str, arg: str) -> str:
    if arg.isdigit():
        if int(arg) < 1:
            raise ConfigError(f"fault '{name}:{arg}': steps count from 1", f"write {name}:1 or a state name")
        return f"#{int(arg)}"
    try:
        return parse_state(arg).value
    except ValueError:
        names = ", ".join(s.value for s in State if s not in (State.PLAN, State.DONE, State.ROLLBACK,
                                                               State.ROLLED_BACK))
        raise ConfigError(f"fault '{name}:{arg}' names no morph step", f"use a step number or one of: {names}") from None


def parse_faults(text: str | None) -> Faults:
    """Parse a fault spec (see the module docstring); ``ConfigError`` on anything unknown."""
    kw: dict[str, object] = {}
    for raw in (text or "").split(","):
        item = raw.strip().lower()
        if not item or item == "none":
            continue
        name, _, arg = item.partition(":")
        if name == "green-unhealthy":
            kw["green_unhealthy"] = True
        elif name == "restore-fails":
            kw["restore_fails"] = True
        elif name == "shift-fails":
            kw["shift_fails"] = True
        elif name == "step-timeout":
            kw["timeout_at"] = _where(name, arg) if arg else State.SYNC_STATE.value
        elif name in ("crash-at", "crash-before"):
            if not arg:
                raise ConfigError(f"fault '{name}' needs a step", f"write e.g. {name}:SYNC_STATE or {name}:3")
            kw["crash_at" if name == "crash-at" else "crash_before"] = _where(name, arg)
        else:
            raise ConfigError(f"unknown fault '{item}'", f"use one of: {', '.join(FAULT_NAMES)}")
    return Faults(**kw)  # type: ignore[arg-type]


def faults_from_env(env: Mapping[str, str] | None = None) -> Faults:
    return parse_faults((env if env is not None else os.environ).get(FAULT_ENV))


def hits(where: str | None, state: State, step_no: int) -> bool:
    """Whether a fault placed at ``where`` (a state name or ``#N``) fires at this step."""
    if where is None:
        return False
    if where.startswith("#"):
        return int(where[1:]) == step_no
    return where == state.value


def kill_self() -> None:
    """What a real controller crash looks like: SIGKILL, no cleanup, no finally blocks."""
    os.kill(os.getpid(), signal.SIGKILL)


Crash = Callable[[], None]
