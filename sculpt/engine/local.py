"""The ``local`` stack engine: the desired fleet as numbered versions in the ledger, made real by a provider.

Why it exists: it is the embedded default engine (no cloud, no Pulumi CLI). Every ``up`` appends a version
before touching anything (result ``pending``), applies it through the provider, then records
``succeeded`` — or ``failed`` with the reason, after re-applying the last succeeded version so the ledger
and the running processes agree again. ``rollback(N)`` re-applies version N's fleet as a *new* version
(kind ``rollback``); ``destroy`` stops everything and records a ``down`` version with no slots, so the
history stays append-only and ``current()`` says what should run (nothing).

All writes hold the ledger lock of the stack, so two ``sculpt up`` cannot interleave.
"""

from __future__ import annotations

import logging
from typing import Any

from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, NotFoundError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import parse_spec
from sculpt.engine.base import Diff, diff_fleets
from sculpt.ledger import Ledger, Version
from sculpt.providers.base import Provider

log = logging.getLogger("sculpt.engine.local")

SUPPORTED_PROVIDERS = ("local",)


def fleet_record(fleet: Fleet) -> dict[str, Any]:
    """What a version stores as its fleet: the slots (the spec is stored beside it)."""
    return {"slots": [s.model_dump(mode="json") for s in fleet.slots]}


def fleet_of(version: Version) -> Fleet:
    """Rebuild the ``Fleet`` a version recorded."""
    spec = parse_spec(version.spec, f"version {version.version} of stack '{version.stack}'")
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


class LocalEngine:
    """``StackEngine`` over the ledger and a ``Provider`` (the local provider in production)."""

    name = "local"

    def __init__(self, stack: str, ledger: Ledger, catalog: Catalog, provider: Provider) -> None:
        self.stack = stack
        self.ledger = ledger
        self.catalog = catalog
        self.provider = provider

    # -- reads --------------------------------------------------------------------------------------------
    def preview(self, fleet: Fleet) -> Diff:
        validate_fleet(fleet, self.catalog)
        live = bool(self.provider.capabilities()["live_resize"])
        return diff_fleets(self.current(), fleet, live_resize=live)

    def history(self) -> list[Version]:
        return self.ledger.versions(self.stack)

    def current(self) -> Fleet | None:
        v = self.ledger.latest_version(self.stack, succeeded_only=True)
        return fleet_of(v) if v is not None else None

    def current_version(self) -> int | None:
        v = self.ledger.latest_version(self.stack, succeeded_only=True)
        return v.version if v is not None else None

    def previous_succeeded(self) -> int | None:
        """The succeeded version before the current one (what ``sculpt rollback`` goes back to)."""
        ok = [v.version for v in self.history() if v.result == "succeeded"]
        return ok[-2] if len(ok) >= 2 else None

    # -- writes -------------------------------------------------------------------------------------------
    def up(self, fleet: Fleet, message: str = "", *, kind: str = "up") -> int:
        """Apply ``fleet`` as a new version; ``kind`` labels who wrote it (``up``, ``morph``, ...).

        Re-entrant under the stack lock: an orchestrator holding ``ledger.lock(stack)`` may call it.
        """
        return self._apply(fleet, message or kind, kind=kind)

    def rollback(self, version: int, message: str = "") -> int:
        target = self.ledger.version(self.stack, version)
        if target.result != "succeeded":
            raise ConfigError(f"version {version} of stack '{self.stack}' {target.result}; only a succeeded "
                              "version can be re-applied", "pick one marked succeeded in `sculpt history`")
        return self._apply(fleet_of(target), message or f"rollback to {version}", kind="rollback")

    def destroy(self) -> None:
        with self.ledger.lock(self.stack, "down"):
            self.provider.destroy()
            last = self.ledger.latest_version(self.stack, succeeded_only=True)
            if last is not None and last.fleet.get("slots"):
                self.ledger.append_version(self.stack, spec=last.spec, fleet={"slots": []}, result="succeeded",
                                           message="down", kind="down")

    def _apply(self, fleet: Fleet, message: str, *, kind: str) -> int:
        if fleet.name != self.stack:
            raise ConfigError(f"the fleet is named '{fleet.name}', this engine drives stack '{self.stack}'",
                              "use the engine of that stack")
        validate_fleet(fleet, self.catalog)
        with self.ledger.lock(self.stack, kind):
            n = self.ledger.append_version(self.stack, spec=fleet.spec.model_dump(mode="json"),
                                           fleet=fleet_record(fleet), result="pending", message=message, kind=kind)
            try:
                if fleet.slots:
                    self.provider.apply(fleet)
                else:
                    self.provider.destroy()
            except BaseException as e:
                reason = e.message if isinstance(e, SculptError) else f"{type(e).__name__}: {e}"
                self.ledger.set_version_result(self.stack, n, "failed", f"{message} (failed: {reason})")
                self._restore_last_good(n)
                raise
            self.ledger.set_version_result(self.stack, n, "succeeded")
            return n

    def _restore_last_good(self, failed: int) -> None:
        """After a failed version, make the processes match the last succeeded version again."""
        last = self.ledger.latest_version(self.stack, succeeded_only=True)
        try:
            if last is None or not last.fleet.get("slots"):
                self.provider.destroy()
            else:
                self.provider.apply(fleet_of(last))
        except SculptError as e:
            log.warning("version %d failed and re-applying version %s failed too: %s", failed,
                        last.version if last else "-", e)
