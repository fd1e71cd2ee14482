"""Fault injection for morphs: make a migration fail on purpose, the way production ones fail.

Why it exists: rollback and crash recovery are only trustworthy if they are exercised. A fault spec comes
from ``--fault`` or the ``SCULPT_FAULT`` environment variable; several faults may be joined with commas.

Two kinds, injected in two places. What the *platform* does wrong (a health check that never passes, a
restore or a traffic shift that fails) is :class:`FaultyPlatform`, a decorator around any ``Platform``
(the orchestrator wraps its platform in it when a spec asks for one). Where the *controller* stops (a step
that hangs, a crash at a step) is a hook of the state machine, which alone knows its steps (:func:`hits`).

=========================  ==========================================================================
``green-unhealthy``        no instance passes its health check: WAIT_HEALTHY times out
``restore-fails``          restoring a checkpoint into an instance fails (SYNC_STATE, at the first restore)
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.migrate.port import AppliedButFailed, Checkpoint, Instance, Platform
from sculpt.migrate.states import State, parse_state

FAULT_ENV = "SCULPT_FAULT"
_FIX = "unset SCULPT_FAULT / drop --fault"
FAULT_NAMES = ("green-unhealthy", "restore-fails", "shift-fails", "step-timeout", "crash-at", "crash-before")


class InjectedFault(ProviderError):
    """A failure a fault spec asked for (never raised without one)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"injected fault: {message}", _FIX, retryable=False)


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
    def in_platform(self) -> bool:
        """Whether any fault is the platform's (``FaultyPlatform`` injects it)."""
        return self.green_unhealthy or self.restore_fails or self.shift_fails

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


def shift_of(before: Fleet, after: Fleet) -> tuple[list[str], list[str]] | None:
    """``(from, to)`` slot ids when ``after`` moves traffic off slots and onto slots that had none (a
    blue/green shift), else ``None``.

    >>> from sculpt.domain.spec import parse_spec
    >>> f = Fleet.from_spec(parse_spec({"fleet": "web", "shape": "std-1c-1024m", "region": "local-a"}))
    >>> green = f.slots[0].model_copy(update={"id": "web-1", "weight": 0})
    >>> added = f.with_slots([*f.slots, green])
    >>> shift_of(f, added) is None
    True
    >>> shift_of(added, added.with_slots([f.slots[0].model_copy(update={"weight": 0}),
    ...                                   green.model_copy(update={"weight": 100})]))
    (['web-0'], ['web-1'])
    """
    was = {s.id: s.weight for s in before.slots}
    now = {s.id: s.weight for s in after.slots}
    gained = [sid for sid, w in now.items() if w > 0 and was.get(sid, 0) == 0]
    lost = [sid for sid, w in was.items() if w > 0 and now.get(sid, 0) == 0]
    return (lost, gained) if gained and lost else None


class FaultyPlatform:
    """A ``Platform`` that does what ``faults`` says goes wrong on the platform, else what ``inner`` does.

    ``green-unhealthy``: every health probe fails. ``restore-fails``: every state restore fails before it
    writes anything. ``shift-fails``: an update that moves traffic onto slots that had none (the shift) is
    applied, then reported failed. Everything else, and every call while the spec holds none of these, goes
    straight to ``inner``. (The ``command`` state sync restores through the user's own command, not the
    platform: ``restore-fails`` does not reach it.)
    """

    def __init__(self, inner: Platform, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults
        self.stack = inner.stack

    # -- versions -------------------------------------------------------------------------------------------
    def current(self) -> tuple[int, Fleet]:
        return self.inner.current()

    def apply(self, fleet: Fleet, message: str) -> int:
        moved = shift_of(self.inner.current()[1], fleet) if self.faults.shift_fails else None
        version = self.inner.apply(fleet, message)
        if moved is not None:
            raise AppliedButFailed(f"injected fault: shift {', '.join(moved[0])} -> {', '.join(moved[1])} failed "
                                   "after the new weights were applied", _FIX, version)
        return version

    def rollback(self, version: int, message: str, fleet: Fleet | None = None) -> int:
        return self.inner.rollback(version, message, fleet)

    def begin_command(self, kind: str, message: str, target: Fleet) -> int | None:
        return self.inner.begin_command(kind, message, target)

    def reopen_command(self, version: int | None) -> None:
        self.inner.reopen_command(version)

    def end_command(self, version: int, result: str, reason: str | None) -> None:
        self.inner.end_command(version, result, reason)

    # -- instances ------------------------------------------------------------------------------------------
    def instances(self) -> dict[str, Instance]:
        return self.inner.instances()

    def probe(self, slot_id: str) -> bool:
        if self.faults.green_unhealthy:
            return False
        return self.inner.probe(slot_id)

    def live_resize_blocker(self) -> str | None:
        return self.inner.live_resize_blocker()

    # -- traffic and routing --------------------------------------------------------------------------------
    def pause(self) -> None:
        self.inner.pause()

    def resume(self) -> None:
        self.inner.resume()

    def wait_idle(self, slot_ids: Sequence[str], timeout_s: float) -> bool:
        return self.inner.wait_idle(slot_ids, timeout_s)

    def keyed_routing(self) -> bool:
        return self.inner.keyed_routing()

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        return self.inner.owner(key, ring)

    # -- state ----------------------------------------------------------------------------------------------
    def checkpoint(self, slot_id: str, since: int | None = None) -> Checkpoint:
        return self.inner.checkpoint(slot_id, since)

    def restore(self, slot_id: str, checkpoint: Checkpoint) -> None:
        if self.faults.restore_fails:
            raise ProviderError(f"injected fault: restore into {slot_id} failed", "unset SCULPT_FAULT",
                                retryable=False)
        self.inner.restore(slot_id, checkpoint)

    def set_readonly(self, slot_id: str, on: bool) -> None:
        self.inner.set_readonly(slot_id, on)

    def moves_volume(self) -> bool:
        return self.inner.moves_volume()

    def data_dir(self, slot_id: str) -> Path | None:
        return self.inner.data_dir(slot_id)

    def instance_url(self, slot_id: str) -> str | None:
        return self.inner.instance_url(slot_id)


def with_faults(platform: Platform, faults: Faults) -> Platform:
    """``platform`` wrapped in ``FaultyPlatform`` when ``faults`` holds a platform fault, else itself."""
    return FaultyPlatform(platform, faults) if faults.in_platform else platform
