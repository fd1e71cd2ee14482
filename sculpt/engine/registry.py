"""Which ``StackEngine`` runs a stack: ``engine:`` in sculpt.yaml names one of ``ENGINES``.

Why it exists: the composition root (``sculpt.app.wiring``) asks for "the engine of this spec" and gets a
``StackEngine``; it never imports an engine module or checks which one it got. The Pulumi engine's module
is imported only when a spec names it (it imports the Pulumi SDK lazily itself), so ``sculpt --help`` and
every local verb start without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError
from sculpt.domain.spec import FleetSpec
from sculpt.engine.base import StackEngine
from sculpt.ledger import Ledger

Factory = Callable[[FleetSpec, Path, Ledger, Catalog, float], StackEngine]
"""``(spec, state_dir, ledger, catalog, apply_timeout_s) -> engine``."""


def _local(spec: FleetSpec, state_dir: Path, ledger: Ledger, catalog: Catalog, apply_timeout_s: float) -> StackEngine:
    if spec.provider != "local":
        raise ConfigError(f"`sculpt up` runs provider 'local' on the local engine, not '{spec.provider}'",
                          "set provider: local in sculpt.yaml ('sim' runs under `sculpt replay`)")
    from sculpt.engine.local import LocalEngine
    from sculpt.providers.local.provider import LocalProvider

    provider = LocalProvider(state_dir, spec.fleet, catalog=catalog, timeout_s=apply_timeout_s)
    return LocalEngine(spec.fleet, ledger, catalog, provider)


def _pulumi(spec: FleetSpec, state_dir: Path, ledger: Ledger, catalog: Catalog, apply_timeout_s: float) -> StackEngine:
    del apply_timeout_s  # cloud instances are waited for by Pulumi and the morph platform's timeouts
    try:
        from sculpt.engine import pulumi_engine
    except ImportError:
        raise ConfigError(f"engine '{spec.engine}' is not available in this installation",
                          "set engine: local, or install sculpt[aws] / sculpt[gcp]") from None
    # looked up at call time: tests replace ``pulumi_engine.make_engine`` to inject a Pulumi CLI double
    return pulumi_engine.make_engine(spec, ledger, catalog, state_dir)


ENGINES: dict[str, Factory] = {"local": _local, "pulumi": _pulumi}


def engine_for(spec: FleetSpec, state_dir: Path, ledger: Ledger, catalog: Catalog, *,
               apply_timeout_s: float = 30.0) -> StackEngine:
    """The engine ``spec.engine`` names, over ``ledger`` and the state directory ``state_dir``
    (``apply_timeout_s``: how long local instances may take to become healthy).

    >>> sorted(ENGINES)
    ['local', 'pulumi']
    """
    factory = ENGINES.get(spec.engine)
    if factory is None:
        raise ConfigError(f"engine '{spec.engine}' is not available in this installation", "set engine: local")
    return factory(spec, Path(state_dir), ledger, catalog, apply_timeout_s)
