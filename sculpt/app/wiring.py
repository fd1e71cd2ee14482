"""The composition root: from a spec path (or a stack name) to the spec, ledger, catalog and engine.

Every CLI verb that touches a stack goes through here, so the choice of engine and provider, the state
directory (``$SCULPT_HOME`` or ``.sculpt/`` beside the spec) and the catalog are decided in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sculpt.catalog import load_catalog, refreshed_path
from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec, check_regions, load_spec, parse_stored_spec
from sculpt.engine.base import StackEngine
from sculpt.engine.registry import engine_for
from sculpt.ledger import Ledger, state_dir

if TYPE_CHECKING:
    from sculpt.migrate.cloud import CloudPlatform
    from sculpt.migrate.local import LocalPlatform
    from sculpt.migrate.orchestrator import Timeouts

log = logging.getLogger("sculpt.wiring")


@dataclass
class Wiring:
    """Everything a verb needs about one stack."""

    stack: str
    state_dir: Path
    ledger: Ledger
    catalog: Catalog
    engine: StackEngine
    spec: FleetSpec | None = None
    spec_path: Path | None = None

    def fleet(self) -> Fleet:
        """The fleet ``sculpt up`` should apply: the spec, merged with what sculpt has already changed.

        See ``desired_fleet``: the spec file is compared with the spec of the last succeeded ``up``, so after
        a morph (or the sculptor's move, or a rollback) re-running ``up`` with an unchanged spec keeps the
        shapes, regions, replica count and slots sculpt chose instead of undoing them. Reads only.
        """
        if self.spec is None:
            raise ConfigError("no fleet spec was given", "pass --spec sculpt.yaml")
        used = ids_ever_used(self.ledger, self.stack)
        got = self.ledger.applied(self.stack)
        current: Fleet | None = None
        if got is not None and got[2].get("slots"):
            try:
                current = Fleet(spec=parse_stored_spec(got[1], f"version {got[0].version} of stack '{self.stack}'"),
                                slots=tuple(Slot.model_validate(s) for s in got[2]["slots"]))
            except (SculptError, ValueError):
                current = None
        if current is None:
            return desired_fleet(self.spec, None, used=used)
        return desired_fleet(self.spec, current, base=last_up_spec(self.ledger, self.stack), used=used)

    def deliver_events(self, budget_s: float = 5.0) -> int:
        """Send the stack's undelivered events to the spec's webhook, for at most ``budget_s`` (a command
        that changed the fleet calls this at its end; what is left goes with the next command or tick)."""
        from sculpt.app.events import flush

        return flush(self.ledger, self.stack, self.spec.events.webhook_url if self.spec else None, budget_s)

    def close(self) -> None:
        self.ledger.close()


def last_up_spec(ledger: Ledger, stack: str) -> FleetSpec | None:
    """The spec of the last succeeded version of kind ``up``: what the spec file said the last time the user
    applied it (``None`` when there is none or it cannot be read)."""
    last = next((v for v in reversed(ledger.versions(stack)) if v.kind == "up" and v.result == "succeeded"), None)
    if last is None:
        return None
    try:
        return parse_stored_spec(last.spec, f"version {last.version} of stack '{stack}'")
    except SculptError:
        return None


def ids_ever_used(ledger: Ledger, stack: str) -> set[str]:
    """Every slot id any version of ``stack`` used (see ``Ledger.slot_ids_ever_used``)."""
    return ledger.slot_ids_ever_used(stack)


def desired_fleet(spec: FleetSpec, current: Fleet | None, *, base: FleetSpec | None = None,
                  used: Iterable[str] = ()) -> Fleet:
    """Merge the spec file into the running fleet, field by field.

    ``base`` is the spec of the last ``up`` (default: ``current``'s own spec). A field the user changed in
    the file since then wins; a field they did not change keeps what morphs, the sculptor or a rollback
    chose:

    * ``shape`` / ``region``: changed, every serving slot takes it (same slot ids: the orchestrator resizes
      in place or hands over blue/green, keeping each instance's data); unchanged, each slot keeps its own;
    * ``replicas``: changed, ``replicas.desired`` slots; unchanged, as many as serve now (within min/max);
    * ``app``: changed, the file's (the slots are replaced, see ``replacements``); unchanged, the running one.

    Every other field is the file's. The fleet's spec keeps the file's ``shape``/``region``/``replicas`` (the
    next ``up`` compares against it; the slots say what runs). A new slot id never reuses one in ``used``
    (any version's) or ``current``'s. Blue/green leftovers (weight 0) are dropped.
    """
    taken = set(used)
    if current is None or not current.slots:
        slots: list[Slot] = []
        n = spec.replicas.desired
        app = spec.app
    else:
        base = base or current.spec
        taken |= {s.id for s in current.slots}
        slots = [s for s in current.slots if s.weight > 0] or list(current.slots)
        change: dict[str, str] = {}
        if spec.shape != base.shape:
            change["shape"] = spec.shape
        if spec.region != base.region:
            change["region"] = spec.region
        if change:
            slots = [s.model_copy(update=change) for s in slots]
        lo, hi = spec.replicas.min, spec.replicas.max
        n = spec.replicas.desired if spec.replicas != base.replicas else min(max(len(slots), lo), hi)
        app = spec.app if spec.app != base.app else current.spec.app
    slots = slots[:n]
    template = slots[0] if slots else None
    i = 0
    while len(slots) < n:
        sid = f"{spec.fleet}-{i}"
        i += 1
        if sid in taken:
            continue
        slots.append(Slot(id=sid, shape=template.shape if template else spec.shape,
                          region=template.region if template else spec.region))
        taken.add(sid)
    out = spec if app == spec.app else spec.with_changes(app=app.model_dump())
    # every slot serves; each keeps its colour (a green that won a morph stays green: relabelling it would
    # be a change with nothing to do locally, and on a cloud would move it to the other colour's group)
    return Fleet(spec=out, slots=tuple(s.model_copy(update={"weight": 100}) for s in slots))


def catalog_for(spec: FleetSpec, home: Path, spec_dir: Path | None = None) -> Catalog:
    """The catalog a stack prices with: ``catalog_file`` from the spec (relative to the spec), else the one
    ``sculpt catalog refresh`` wrote to ``<state dir>/catalog/<provider>.csv``, else the built-in one."""
    provider = spec.provider
    if spec.catalog_file:
        p = Path(spec.catalog_file)
        return load_catalog(provider, p if p.is_absolute() or spec_dir is None else spec_dir / p)
    return load_catalog(provider, refreshed_path(provider, home))


def wire(spec_path: str | Path, *, apply_timeout_s: float = 30.0) -> Wiring:
    """Load the spec at ``spec_path`` and build its ledger, catalog and engine."""
    path = Path(spec_path)
    spec = load_spec(path)
    home = state_dir(path)
    catalog = catalog_for(spec, home, path.resolve().parent)
    check_regions(spec, catalog.regions(), str(path))  # before the ledger: a refused spec writes nothing
    ledger = Ledger(home / "ledger.db")
    engine = engine_for(spec, home, ledger, catalog, apply_timeout_s=apply_timeout_s)
    adopt_backend_history(engine)
    return Wiring(spec.fleet, home, ledger, catalog, engine, spec, path)


def adopt_backend_history(engine: StackEngine) -> None:
    """Bring this machine's ledger up to the stack's history when the engine keeps it elsewhere (a shared
    Pulumi backend; see ``PulumiEngine.adopt``; the local engine has nothing to adopt). A backend that cannot
    be read (no CLI, no credentials) is left for the verb itself to report, in its own words."""
    try:
        n = engine.adopt()
    except SculptError as e:
        log.debug("could not read the stack's history from its backend: %s", e)
        return
    if n:
        log.warning("adopted %d version(s) of stack '%s' from its Pulumi backend", n, engine.stack)


def wire_stack(stack: str | None, spec_path: str | Path) -> Wiring:
    """For read/stop verbs: the stack named by ``--stack``, else by the spec; the engine of its last version.

    Works without a spec file when ``stack`` is given and the ledger knows it.
    """
    path = Path(spec_path)
    if stack is None or path.exists():
        w = wire(path)
        if stack is None or stack == w.stack:
            return w
        w.close()
    home = state_dir(path if path.exists() else None)
    ledger = Ledger(home / "ledger.db")
    last = ledger.latest_version(stack)
    if last is None:
        ledger.close()
        from sculpt.domain.errors import NotFoundError

        raise NotFoundError(f"stack '{stack}' has no history in {home}", "run `sculpt up` first")
    spec = parse_stored_spec(last.spec, f"stack '{stack}'")
    catalog = catalog_for(spec, home)
    engine = engine_for(spec, home, ledger, catalog)
    adopt_backend_history(engine)
    return Wiring(stack, home, ledger, catalog, engine, spec, None)


def recover_unfinished(w: Wiring) -> list[str]:
    """Resume or roll back any morph a dead controller left half-done (see ``sculpt.migrate.recover``).

    Every verb that touches a stack calls this first; it costs one SQLite query when there is nothing to
    do. On ``engine: pulumi`` the platform is the cloud one (each recovery step a stack update). Returns one
    line per recovered migration for the verb to print.
    """
    from sculpt.migrate import recover
    from sculpt.migrate.recovery import orphaned

    if w.engine.stepwise() is not None:  # the local migration platform, rebuilt from the ledger
        reports = recover(w.state_dir, w.stack, ledger=w.ledger)
    else:
        if not orphaned(w.ledger, w.stack) or w.spec is None:
            return []
        from sculpt.app.cloud import CloudWiring

        cw = CloudWiring.of(w.engine, w.catalog, w.spec, mode="recommend")
        if cw.platform is None:
            return [f"an interrupted morph of '{w.stack}' is left as it is: morphs on provider "
                    f"'{w.spec.provider}' are not built"]
        reports = recover(w.state_dir, w.stack, ledger=w.ledger, platform=cw.platform, timeouts=cw.timeouts)
    return [f"recovered interrupted morph {r.migration_id}: {r.result}" for r in reports]


def morph_platform(w: Wiring) -> tuple[LocalPlatform, None] | tuple[CloudPlatform, Timeouts]:
    """The migration platform and step timeouts for ``sculpt morph`` on this stack's engine.

    A step-wise engine (``local``): the agent's platform (the agent must be running), no timeouts (the
    verb's defaults). ``pulumi`` on AWS or GCP: the cloud platform (each step a stack update, health from the ALB or from the colour's managed instance group);
    what it cannot morph safely, and GCP without Compute API credentials, is refused in one line.
    """
    from sculpt.domain.errors import ProviderError
    from sculpt.migrate import Timeouts

    assert w.spec is not None
    stepwise = w.engine.stepwise()
    if stepwise is not None:
        from sculpt.migrate.local import LocalPlatform

        platform = LocalPlatform(stepwise, w.state_dir)
        if not platform.client.running():
            raise ProviderError(f"no agent is running for stack '{w.stack}'", "run `sculpt up` first")
        return platform, None
    from sculpt.app.cloud import REACHABLE_ENV, CloudWiring, private_reachable
    from sculpt.migrate.cloud import cloud_blocker

    why = cloud_blocker(w.spec, private_reachable=private_reachable())
    if why:
        raise ConfigError(f"cannot morph '{w.stack}' on the cloud: {why}",
                          "set app.state_sync.strategy: none for a stateless app (the load balancer's weight "
                          f"shift is the handover), or set {REACHABLE_ENV}=1 when this controller runs inside "
                          "the VPC")
    cw = CloudWiring.of(w.engine, w.catalog, w.spec, mode="recommend", check_credentials=True)
    if cw.platform is None:
        raise ConfigError(f"`sculpt morph` on provider '{w.spec.provider}' is not built yet",
                          "use provider aws or gcp, or change the shape in sculpt.yaml and run `sculpt up`")
    assert isinstance(cw.timeouts, Timeouts)
    return cw.platform, cw.timeouts
