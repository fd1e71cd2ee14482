"""The composition root: from a spec path (or a stack name) to the spec, ledger, catalog and engine.

Every CLI verb that touches a stack goes through here, so the choice of engine and provider, the state
directory (``$SCULPT_HOME`` or ``.sculpt/`` beside the spec) and the catalog are decided in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sculpt.catalog import load_catalog
from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import FleetSpec, load_spec
from sculpt.engine.local import LocalEngine
from sculpt.ledger import Ledger, state_dir


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
        """The fleet the spec asks for (``sculpt up``)."""
        if self.spec is None:
            raise ConfigError("no fleet spec was given", "pass --spec sculpt.yaml")
        return Fleet.from_spec(self.spec)

    def close(self) -> None:
        self.ledger.close()


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


def wire(spec_path: str | Path, *, apply_timeout_s: float = 30.0) -> Wiring:
    """Load the spec at ``spec_path`` and build its ledger, catalog and engine."""
    path = Path(spec_path)
    spec = load_spec(path)
    home = state_dir(path)
    ledger = Ledger(home / "ledger.db")
    catalog = load_catalog(spec.provider if spec.provider != "sim" else "sim")
    engine = make_engine(spec, ledger, catalog, home, apply_timeout_s=apply_timeout_s)
    return Wiring(spec.fleet, home, ledger, catalog, engine, spec, path)


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
    catalog = load_catalog(spec.provider)
    return Wiring(stack, home, ledger, catalog, make_engine(spec, ledger, catalog, home), spec, None)
