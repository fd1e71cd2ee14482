"""``LocalProvider``: the ``Provider`` port over a stack's local agent (real processes on this machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sculpt.domain.catalog import Catalog
from sculpt.domain.fleet import Fleet
from sculpt.providers.base import Capabilities
from sculpt.providers.local.client import DEFAULT_TIMEOUT_S, AgentClient, ensure_agent

STATUS_AGENT_WAIT_S = 5.0  # an agent being restarted answers well within this


def recorded_status(client: AgentClient, note: str) -> dict[str, Any]:
    """``status()`` from ``agents/<stack>.json`` alone (no agent answers): the recorded LB process and
    instances that still run, each probed for health directly."""
    from sculpt.providers.local import procs
    from sculpt.providers.local.instances import probe_health

    state = procs.load_state(client.paths)
    lb = state.get("lb") or {}
    lb_alive = procs.alive(lb)
    rows = []
    for rec in sorted(state.get("instances") or [], key=lambda r: str((r.get("slot") or {}).get("id"))):
        slot = rec.get("slot") or {}
        alive = bool(rec.get("pid")) and procs.alive(rec)
        lim = rec.get("limits") or {}
        rows.append({
            "id": slot.get("id"), "uid": rec.get("uid"), "shape": (rec.get("shape") or {}).get("name"),
            "region": slot.get("region"), "colour": slot.get("colour"), "weight": slot.get("weight"),
            "healthy": alive and probe_health(int(rec["port"]), str(rec.get("health_path") or "/healthz")),
            "pid": rec.get("pid") if alive else None, "address": f"127.0.0.1:{rec.get('port')}",
            "cpu_limit": lim.get("cpu"), "mem_limit_mb": lim.get("mem_mb"), "enforcement": state.get("enforcement"),
            "restarts": rec.get("restarts", 0), "data_dir": rec.get("data_dir"), "log": rec.get("log"),
            "health_path": rec.get("health_path"), "adopted": None, "app_current": None,
        })
    fleet = state.get("fleet") or None
    return {"stack": client.stack, "agent_pid": None, "enforcement": state.get("enforcement"),
            "live_resize": state.get("enforcement") in ("cgroup-v1", "cgroup-v2"),
            "lb": {"address": f"{lb.get('host', '127.0.0.1')}:{lb.get('port')}" if lb_alive else None},
            "lb_pid": lb.get("pid") if lb_alive else None,
            "paused_by": None,
            "fleet": {"name": fleet["spec"]["fleet"], "slots": fleet["slots"]} if fleet else None,
            "instances": rows, "notes": [note]}


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
        """What runs, or None when nothing does. With the agent dead but its LB process or instances still
        running, wait for the agent the LB process restarts (or start one): it adopts them, and reports.
        An agent that does not answer (hung): what the records say runs, with a note saying so."""
        from sculpt.domain.errors import ProviderError

        if not self.client.running():
            from sculpt.providers.local.teardown import down_in_progress

            if not self.client.owned_processes() or down_in_progress(self.client.paths):
                return None
            try:
                self.client = ensure_agent(self.state_dir, self.stack, timeout_s=STATUS_AGENT_WAIT_S)
            except ProviderError as e:
                return recorded_status(self.client, f"the agent is not answering ({e.message}): this is what "
                                                    "its records say runs")
        try:
            return self.client.status()
        except ProviderError as e:
            if not self.client.owned_processes():
                raise
            return recorded_status(self.client, f"the agent is not answering ({e.message}): this is what its "
                                                "records say runs")

    def destroy(self) -> None:
        """Stop every process of the stack, even with its agent dead (``ProviderError`` if one survives)."""
        self.client.shutdown()

    def running(self) -> bool:
        """An agent answers, or the stack's LB process or instances run without one."""
        return self.client.running() or bool(self.client.owned_processes())

    def capabilities(self) -> Capabilities:
        """From the running agent, else what this machine would give a new one."""
        if self.client.running():
            p = self.client.ping()
            return {"live_resize": bool(p["live_resize"]), "enforcement": str(p["enforcement"])}
        from sculpt.providers.local.cgroups import detect_mode

        mode = detect_mode()
        return {"live_resize": mode != "affinity+rlimit", "enforcement": mode}
