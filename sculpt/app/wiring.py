"""The composition root: from a spec path (or a stack name) to the spec, ledger, catalog and engine.

Every CLI verb that touches a stack goes through here, so the choice of engine and provider, the state
directory (``$SCULPT_HOME`` or ``.sculpt/`` beside the spec) and the catalog are decided in one place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sculpt.catalog import load_catalog, refreshed_path
from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec, load_spec
from sculpt.engine.local import LocalEngine
from sculpt.ledger import Ledger, state_dir

log = logging.getLogger("sculpt.wiring")


@dataclass
class Wiring:
    """Everything a verb needs about one stack."""

    stack: str
    state_dir: Path
    ledger: Ledger
    catalog: Catalog
    engine: Any  # a StackEngine
    spec: FleetSpec | None = None
    spec_path: Path | None = None

    def fleet(self) -> Fleet:
        """The fleet ``sculpt up`` should apply: the spec, merged with what sculpt has already changed.

        See ``desired_fleet``: after a morph, re-running ``up`` with an unchanged spec keeps the shapes and
        slots sculpt chose instead of undoing them.
        """
        if self.spec is None:
            raise ConfigError("no fleet spec was given", "pass --spec sculpt.yaml")
        last = self.ledger.latest_version(self.stack, succeeded_only=True)
        if last is None or not last.fleet.get("slots"):
            return Fleet.from_spec(self.spec)
        from sculpt.engine.local import fleet_of

        try:
            current = fleet_of(last)
        except SculptError:
            return Fleet.from_spec(self.spec)
        return desired_fleet(self.spec, current)

    def close(self) -> None:
        self.ledger.close()


def desired_fleet(spec: FleetSpec, current: Fleet) -> Fleet:
    """Merge the spec into the running fleet.

    The spec's ``shape``/``region`` are the user's word: when they differ from the spec the current
    version was made from, every serving slot takes them (same slot ids, so the provider resizes or
    replaces in place and keeps each instance's data). When they are unchanged, the slots keep the shapes,
    regions and ids that morphs or the sculptor chose. ``replicas.desired`` adds or removes slots either
    way. Blue/green leftovers (weight 0) are dropped: a finished morph leaves none.
    """
    before = current.spec
    slots = [s for s in current.slots if s.weight > 0] or list(current.slots)
    if spec.shape != before.shape or spec.region != before.region:
        slots = [s.model_copy(update={"shape": spec.shape, "region": spec.region}) for s in slots]
    n = spec.replicas.desired
    if len(slots) > n:
        slots = slots[:n]
    used = {s.id for s in slots}
    template = slots[0] if slots else None
    i = 0
    while len(slots) < n:
        sid = f"{spec.fleet}-{i}"
        i += 1
        if sid in used or any(s.id == sid for s in current.slots):
            continue
        slots.append(Slot(id=sid, shape=template.shape if template else spec.shape,
                          region=template.region if template else spec.region))
        used.add(sid)
    return Fleet(spec=spec, slots=tuple(s.model_copy(update={"colour": "blue", "weight": 100}) for s in slots))


def make_engine(spec: FleetSpec, ledger: Ledger, catalog: Catalog, home: Path, *,
                apply_timeout_s: float = 30.0) -> Any:
    """The engine for ``spec.engine``/``spec.provider`` (``apply_timeout_s``: how long local instances may
    take to become healthy)."""
    if spec.engine == "local":
        if spec.provider != "local":
            raise ConfigError(f"`sculpt up` runs provider 'local' on the local engine, not '{spec.provider}'",
                              "set provider: local in sculpt.yaml ('sim' runs under `sculpt replay`)")
        from sculpt.providers.local.provider import LocalProvider

        provider = LocalProvider(home, spec.fleet, catalog=catalog, timeout_s=apply_timeout_s)
        return LocalEngine(spec.fleet, ledger, catalog, provider)
    try:
        from sculpt.engine import pulumi_engine
    except ImportError:
        raise ConfigError(f"engine '{spec.engine}' is not available in this installation",
                          "set engine: local, or install sculpt[aws] / sculpt[gcp]") from None
    factory = getattr(pulumi_engine, "make_engine", None)
    if factory is None:
        raise ConfigError(f"engine '{spec.engine}' is not available in this installation",
                          "set engine: local")
    return factory(spec, ledger, catalog, home)


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
    ledger = Ledger(home / "ledger.db")
    catalog = catalog_for(spec, home, path.resolve().parent)
    engine = make_engine(spec, ledger, catalog, home, apply_timeout_s=apply_timeout_s)
    adopt_backend_history(engine)
    return Wiring(spec.fleet, home, ledger, catalog, engine, spec, path)


def adopt_backend_history(engine: Any) -> None:
    """Bring this machine's ledger up to the stack's history when the engine keeps it elsewhere (a shared
    Pulumi backend; see ``PulumiEngine.adopt``). A backend that cannot be read (no CLI, no credentials) is
    left for the verb itself to report, in its own words."""
    adopt = getattr(engine, "adopt", None)
    if adopt is None:
        return
    try:
        n = adopt()
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
    from sculpt.domain.spec import parse_spec

    spec = parse_spec(last.spec, f"stack '{stack}'")
    catalog = catalog_for(spec, home)
    engine = make_engine(spec, ledger, catalog, home)
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

    if getattr(w.engine, "name", None) == "local":
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


def morph_platform(w: Wiring) -> tuple[Any, Any]:
    """The migration platform and step timeouts for ``sculpt morph`` on this stack's engine.

    ``local``: the agent's platform (the agent must be running). ``pulumi`` on AWS or GCP: the cloud
    platform (each step a stack update, health from the ALB or from the colour's managed instance group);
    what it cannot morph safely, and GCP without Compute API credentials, is refused in one line.
    """
    from sculpt.domain.errors import ProviderError
    from sculpt.migrate import Timeouts

    assert w.spec is not None
    if w.engine.name == "local":
        from sculpt.migrate.local import LocalPlatform

        platform = LocalPlatform(w.engine, w.state_dir)
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
