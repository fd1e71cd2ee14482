"""The ``local`` stack engine: the desired fleet as numbered versions in the ledger, made real by a provider.

Why it exists: it is the embedded default engine (no cloud, no Pulumi CLI). One user command (``up``,
``morph``, ``rollback``, ``down``) is one numbered version, appended before anything is touched (result
``pending``); each stack update the command makes is a *step* of that version (a blue/green morph makes
several). The version ends ``succeeded`` — its fleet is then what was applied — or ``failed`` with the
reason; a plain ``up`` whose step fails re-applies the fleet that ran before, so the ledger and the running
processes agree again. A version left ``pending`` by a process that died is closed by the next command
(``sweep_dead``). ``destroy`` stops everything and records a ``down`` version with no slots, so the history
stays append-only and ``current()`` says what should run (nothing).

All writes hold the ledger lock of the stack, so two commands cannot interleave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import Any

from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, NotFoundError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec, parse_stored_spec
from sculpt.engine.base import Command, Diff, diff_fleets
from sculpt.ledger import Ledger, Version, pid_alive
from sculpt.providers.base import Provider

log = logging.getLogger("sculpt.engine.local")

SUPPORTED_PROVIDERS = ("local",)


def fleet_record(fleet: Fleet) -> dict[str, Any]:
    """What a version stores as its fleet: the slots (the spec is stored beside it)."""
    return {"slots": [s.model_dump(mode="json") for s in fleet.slots]}


def fleet_of(version: Version) -> Fleet:
    """Rebuild the ``Fleet`` a version recorded."""
    spec = parse_stored_spec(version.spec, f"version {version.version} of stack '{version.stack}'")
    return Fleet(spec=spec, slots=tuple(Slot.model_validate(s) for s in version.fleet.get("slots", [])))


def validate_fleet(fleet: Fleet, catalog: Catalog) -> None:
    """Every slot's shape and region must be in the catalog; the provider must be one this engine drives."""
    if fleet.spec.provider not in SUPPORTED_PROVIDERS:
        raise ConfigError(
            f"the local engine drives provider 'local' with `sculpt up`, not '{fleet.spec.provider}'",
            "set provider: local in sculpt.yaml ('sim' runs under `sculpt replay`)",
        )
    for slot in fleet.slots:
        try:
            catalog.offering(slot.shape, slot.region)
        except NotFoundError as e:
            raise NotFoundError(f"slot {slot.id}: {e.message}", e.fix) from None


USER_KINDS = ("up", "morph", "rollback", "down", "requirements")


class LocalEngine:
    """``StackEngine`` over the ledger and a ``Provider`` (the local provider in production).

    A *command* (``sculpt up``, ``morph``, ``rollback``, ``down``) is one user-visible version; every stack
    update it makes (a blue/green morph makes several: add green, shift, retire) is a *step* of that
    version. ``current()`` is the fleet the processes should run now: the latest version's last succeeded
    step, else the latest succeeded version.
    """

    name = "local"
    reports_health = True  # ``status()`` comes from the agent, which health-checks every instance
    moves_regions = True  # the agent's load balancer spans the local regions

    def __init__(self, stack: str, ledger: Ledger, catalog: Catalog, provider: Provider) -> None:
        self.stack = stack
        self.ledger = ledger
        self.catalog = catalog
        self.provider = provider
        self._open: int | None = None  # the command version this engine writes steps into

    # -- reads --------------------------------------------------------------------------------------------
    def preview(self, fleet: Fleet) -> Diff:
        validate_fleet(fleet, self.catalog)
        live = bool(self.provider.capabilities()["live_resize"])
        return diff_fleets(self.current(), fleet, live_resize=live)

    def history(self) -> list[Version]:
        return self.ledger.versions(self.stack)

    def current(self) -> Fleet | None:
        got = self.ledger.applied(self.stack)
        if got is None:
            return None
        version, spec, fleet = got
        return fleet_of(dataclasses.replace(version, spec=spec, fleet=fleet))

    def status(self) -> dict[str, Any] | None:
        """What the agent says runs (processes, limits, health, the load balancer's address)."""
        return self.provider.status()

    def running(self) -> bool:
        return self.provider.running()

    def outputs(self) -> dict[str, Any]:
        """A local stack has no stack outputs (the agent reports addresses in ``status``)."""
        return {}

    def adopt(self) -> int:
        """Nothing to adopt: the ledger is the only record of a local stack's history."""
        return 0

    def stepwise(self) -> LocalEngine:
        return self

    def current_version(self) -> int | None:
        """The user-visible version whose fleet runs: the open command's, else the latest succeeded."""
        if self._open is not None:
            return self._open
        v = self.ledger.latest_version(self.stack, succeeded_only=True)
        return v.version if v is not None else None

    def previous_succeeded(self) -> int | None:
        """The last succeeded user-visible version before the current one (what ``sculpt rollback`` goes
        back to); ``down`` versions (no fleet) are skipped."""
        ok = [v for v in self.history()
              if v.result == "succeeded" and v.kind in USER_KINDS and v.kind != "down" and v.fleet.get("slots")]
        return ok[-2].version if len(ok) >= 2 else None

    # -- commands -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def command(self, kind: str, message: str, target: Fleet, *, resume: int | None = None,
                record_spec: FleetSpec | None = None) -> Iterator[Command]:
        """Run one user-visible command: a pending version now, its stack updates as steps, then
        ``succeeded`` (the version's fleet becomes what was applied) or ``failed`` with the reason.

        Holds the stack lock throughout. ``resume`` continues the pending version of a dead command
        (crash recovery) instead of appending one. ``record_spec`` is the spec the version keeps (``up``: the
        spec file as the user wrote it, which the next ``up`` compares with) instead of the applied one. An
        exception marks it failed and propagates; ``Command.fail(reason)`` marks it failed without one (a
        morph that rolled back).
        """
        with self.ledger.lock(self.stack, kind):
            if resume is None:
                validate_fleet(target, self.catalog)
                spec = (record_spec or target.spec).model_dump(mode="json")
                n = self.ledger.append_version(self.stack, spec=spec, fleet=fleet_record(target),
                                               result="pending", message=message, kind=kind)
            else:
                n = resume
            cmd = Command(n, message, keep_spec=record_spec is not None)
            outer, self._open = self._open, n
            try:
                yield cmd
            except BaseException as e:
                self.end(n, "failed", f"{cmd.message} (failed: {_why(e)})")
                raise
            else:
                if cmd.reason is not None:
                    self.end(n, "failed", f"{cmd.message} (failed: {cmd.reason})")
                else:
                    self.end(n, "succeeded", keep_spec=cmd.keep_spec)
            finally:
                self._open = outer

    def begin(self, kind: str, message: str, target: Fleet) -> int:
        """Open a command version by hand (the orchestrator's morphs); close it with ``end``."""
        validate_fleet(target, self.catalog)
        n = self.ledger.append_version(self.stack, spec=target.spec.model_dump(mode="json"),
                                       fleet=fleet_record(target), result="pending", message=message, kind=kind)
        self._open = n
        return n

    def reopen(self, version: int | None) -> None:
        """Write the next steps into ``version`` (a dead command's, during crash recovery)."""
        self._open = version

    def end(self, version: int, result: str, message: str | None = None, *, keep_spec: bool = False) -> None:
        """Close a command version once (later calls are no-ops): succeeded takes the applied fleet (and
        its spec, unless ``keep_spec`` — always for an ``up``, whose version keeps the spec file as the user
        wrote it: the next ``up`` compares the file with it, whoever closes the version)."""
        row = self.ledger.version(self.stack, version)
        if row.result != "pending":
            return
        keep_spec = keep_spec or row.kind == "up"
        if result == "succeeded":
            got = self.ledger.applied(self.stack)
            if got is not None and got[0].version == version:
                self.ledger.update_version(self.stack, version, result="succeeded", fleet=got[2],
                                           spec=None if keep_spec else got[1], message=message)
                return
        self.ledger.update_version(self.stack, version, result=result, message=message)
        if self._open == version:
            self._open = None

    def sweep_dead(self, keep: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """Versions left ``pending`` by a command whose process died — but for ``keep`` (those an unfinished
        migration will close): marked failed, and the processes are brought back to the applied fleet.
        Returns them."""
        done = []
        for v in self.ledger.pending_versions(self.stack):
            pid = getattr(v, "pid", None)
            if v.version in keep or (pid and (pid == os.getpid() or pid_alive(pid))):
                continue
            self.ledger.update_version(self.stack, v.version, result="failed",
                                       message=f"{v.message} (failed: interrupted: the sculpt process that ran "
                                               f"it (pid {pid}) died)")
            done.append(v.version)
        if done and self.provider.running():
            fleet = self.current()
            try:
                with self.ledger.lock(self.stack, "sweep"):
                    if fleet is None or not fleet.slots:
                        self.provider.destroy()
                    else:
                        self.provider.apply(fleet)
            except SculptError as e:
                log.warning("could not bring stack '%s' back to its applied fleet: %s", self.stack, e)
        return done

    # -- writes -------------------------------------------------------------------------------------------
    def up(self, fleet: Fleet, message: str = "", *, kind: str = "up") -> int:
        """Apply ``fleet``: a step of the open command, else a command of its own (``kind``).

        Re-entrant under the stack lock: an orchestrator holding ``ledger.lock(stack)`` may call it.
        Returns the user-visible version number.
        """
        if self._open is not None:
            return self._step(self._open, fleet, message or kind)
        with self.command(kind, message or kind, fleet) as cmd:
            self._step(cmd.version, fleet, message or kind, restore=True)
        return cmd.version

    def rollback(self, version: int, message: str = "") -> int:
        """Re-apply version N's fleet as it is (no state hand-over: ``sculpt rollback`` morphs instead)."""
        target = self.ledger.version(self.stack, version)
        if target.result != "succeeded":
            raise ConfigError(f"version {version} of stack '{self.stack}' {target.result}; only a succeeded "
                              "version can be re-applied", "pick one marked succeeded in `sculpt history`")
        return self.up(fleet_of(target), message or f"rollback to {version}", kind="rollback")

    def destroy(self) -> None:
        with self.ledger.lock(self.stack, "down"):
            self.provider.destroy()
            last = self.ledger.latest_version(self.stack, succeeded_only=True)
            if last is not None and last.fleet.get("slots"):
                n = self.ledger.append_version(self.stack, spec=last.spec, fleet={"slots": []}, result="pending",
                                               message="down", kind="down")
                self.ledger.add_step(self.stack, n, spec=last.spec, fleet={"slots": []}, message="down",
                                     result="succeeded")
                self.ledger.update_version(self.stack, n, result="succeeded")

    def _step(self, version: int, fleet: Fleet, message: str, *, restore: bool = False) -> int:
        if fleet.name != self.stack:
            raise ConfigError(f"the fleet is named '{fleet.name}', this engine drives stack '{self.stack}'",
                              "use the engine of that stack")
        validate_fleet(fleet, self.catalog)
        with self.ledger.lock(self.stack, "apply"):
            k = self.ledger.add_step(self.stack, version, spec=fleet.spec.model_dump(mode="json"),
                                     fleet=fleet_record(fleet), message=message, result="pending")
            try:
                if fleet.slots:
                    self.provider.apply(fleet)
                else:
                    self.provider.destroy()
            except BaseException as e:
                self.ledger.set_step_result(self.stack, version, k, "failed", f"{message} (failed: {_why(e)})")
                if restore:
                    self.restore_applied(version)
                raise
            self.ledger.set_step_result(self.stack, version, k, "succeeded")
            return version

    def restore_applied(self, failed: int) -> None:
        """After a failed step, make the processes match the applied fleet again."""
        fleet = self.current()
        try:
            if fleet is None or not fleet.slots:
                self.provider.destroy()
            else:
                self.provider.apply(fleet)
        except SculptError as e:
            log.warning("version %d failed and re-applying the fleet before it failed too: %s", failed, e)


def _why(e: BaseException) -> str:
    if isinstance(e, SculptError):
        return e.message
    if isinstance(e, KeyboardInterrupt):
        return str(e) or "interrupted (Ctrl-C)"
    return f"{type(e).__name__}: {e}"
