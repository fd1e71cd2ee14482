"""``LocalProvider``: the ``Provider`` port over a stack's local agent (real processes on this machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sculpt.domain.catalog import Catalog
from sculpt.domain.fleet import Fleet
from sculpt.providers.base import Capabilities
from sculpt.providers.local.client import DEFAULT_TIMEOUT_S, AgentClient, ensure_agent


class LocalProvider:
    """Starts the agent on first ``apply``; ``destroy`` shuts it down (instances, LB, cgroups)."""

    name = "local"

    def __init__(self, state_dir: str | Path, stack: str, *, catalog: Catalog | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.state_dir = Path(state_dir)
        self.stack = stack
        self.catalog = catalog
        self.timeout_s = timeout_s
        self.client = AgentClient(self.state_dir, stack)

    def apply(self, fleet: Fleet) -> dict[str, Any]:
        """Start the agent if needed and reconcile; shapes come from ``catalog`` when one was given."""
        shapes = {s.shape: self.catalog.shape(s.shape) for s in fleet.slots} if self.catalog else None
        self.client = ensure_agent(self.state_dir, self.stack)
        return self.client.apply(fleet, self.timeout_s, shapes=shapes)

    def status(self) -> dict[str, Any] | None:
        if not self.client.running():
            return None
        return self.client.status()

    def destroy(self) -> None:
        self.client.shutdown()

    def running(self) -> bool:
        return self.client.running()

    def capabilities(self) -> Capabilities:
        """From the running agent, else what this machine would give a new one."""
        if self.client.running():
            p = self.client.ping()
            return {"live_resize": bool(p["live_resize"]), "enforcement": str(p["enforcement"])}
        from sculpt.providers.local.cgroups import detect_mode

        mode = detect_mode()
        return {"live_resize": mode != "affinity+rlimit", "enforcement": mode}
