"""The ``Platform`` adapter for the local provider: the local engine (stack versions) + the stack's agent.

Why it exists: it is the one place where the orchestrator's narrow port meets real processes. Each method
is a thin translation: fleet versions go through the step-wise engine it is given (so every step is a
numbered stack version), traffic control and instance facts through the stack's ``AgentClient``, key
ownership through the load balancer's own ring (``sculpt.domain.ring``), and state moves over HTTP straight
to the instances (the app's checkpoint/restore endpoints, as ``sculpt.yaml`` names them). It builds no
engine or provider itself: ``open_local`` does, for crash recovery, which has only a ledger.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sculpt.domain.errors import NotFoundError, ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.domain.ring import HashRing, ring_of
from sculpt.engine.base import StepwiseEngine
from sculpt.ledger import Ledger
from sculpt.migrate.port import Checkpoint, Instance
from sculpt.migrate.transport import fetch_checkpoint, http_call, push_restore, switch_readonly
from sculpt.providers.local.client import AgentClient

log = logging.getLogger("sculpt.migrate.local")

_FIX = "see `sculpt status` and the instance log"


class LocalPlatform:
    """``Platform`` over a step-wise engine (the local one) and its stack's agent (see ``sculpt.migrate.port``).

    ``engine`` runs the versions and, through its ``provider``, says whether instances resize live;
    ``client`` talks to the stack's agent (default: the one under ``state_dir``).
    """

    def __init__(self, engine: StepwiseEngine, state_dir: str | Path, *, client: AgentClient | None = None,
                 auto_resume_s: float | None = None) -> None:
        self.engine = engine
        self.stack: str = engine.stack
        self.state_dir = Path(state_dir)
        self.client = client if client is not None else AgentClient(self.state_dir, self.stack)
        self.auto_resume_s = auto_resume_s
        self._readonly_unsupported = False
        self._rings: dict[tuple[tuple[str, int], ...], tuple[HashRing, dict[str, str]]] = {}

    # -- versions -----------------------------------------------------------------------------------------
    def current(self) -> tuple[int, Fleet]:
        v, fleet = self.engine.current_version(), self.engine.current()
        if v is None or fleet is None:
            raise NotFoundError(f"stack '{self.stack}' has no running version", "run `sculpt up` first")
        return int(v), fleet

    def apply(self, fleet: Fleet, message: str) -> int:
        self._rings.clear()
        return int(self.engine.up(fleet, message, kind="morph"))

    def rollback(self, version: int, message: str, fleet: Fleet | None = None) -> int:
        self._rings.clear()
        if fleet is not None:
            return int(self.engine.up(fleet, message, kind="morph"))
        return int(self.engine.rollback(version, message))

    def begin_command(self, kind: str, message: str, target: Fleet) -> int | None:
        return int(self.engine.begin(kind, message, target))

    def reopen_command(self, version: int | None) -> None:
        self.engine.reopen(version)

    def end_command(self, version: int, result: str, reason: str | None) -> None:
        row = self.engine.ledger.version(self.stack, version)
        self.engine.end(version, result, f"{row.message} (failed: {reason})" if result == "failed" and reason
                        else None)

    # -- instances ----------------------------------------------------------------------------------------
    def _rows(self) -> dict[str, dict[str, Any]]:
        """The agent's instances by slot id; none when no agent runs (it died: so did its LB and pause)."""
        try:
            status = self.client.status()
        except ProviderError:
            if self.client.running():
                raise
            return {}
        return {str(r["id"]): r for r in status.get("instances", [])}

    def instances(self) -> dict[str, Instance]:
        out = {}
        for sid, r in self._rows().items():
            out[sid] = Instance(sid, str(r["shape"]), str(r["region"]), bool(r["healthy"]), int(r["weight"]),
                                r.get("address"), r.get("pid"), Path(r["data_dir"]) if r.get("data_dir") else None)
        return out

    def probe(self, slot_id: str) -> bool:
        row = self._rows().get(slot_id)
        if row is None or not row.get("address"):
            return False
        path = self.current()[1].spec.app.health_path
        try:
            status, _ = http_call(str(row["address"]), "GET", path, timeout_s=2.0)
        except ProviderError:
            return False
        return 200 <= status < 300

    def pause(self) -> None:
        """Hold new requests, leased to this process for ``lb.pause_lease_s``: should it die or overrun
        the lease, the agent finishes or undoes the handover itself (``sculpt.migrate.recovery``)."""
        lease = self.current()[1].spec.lb.pause_lease_s if self.auto_resume_s is None else self.auto_resume_s
        self.client.pause(auto_resume_s=lease, owner_pid=os.getpid())

    def resume(self) -> None:
        """Release held requests. With no agent running there is no paused LB to release (recovery after
        the agent died too): nothing to do."""
        try:
            self.client.resume()
        except ProviderError:
            if self.client.running():
                raise

    def wait_idle(self, slot_ids: Sequence[str], timeout_s: float) -> bool:
        rows = self._rows()
        uids = [str(rows[s]["uid"]) for s in slot_ids if s in rows]
        if not uids:
            return True
        deadline = time.monotonic() + timeout_s
        while True:
            backends = self.client.stats().get("backends", {})
            if all(int(backends.get(u, {}).get("in_flight", 0)) == 0 for u in uids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def live_resize_blocker(self) -> str | None:
        caps = self.engine.provider.capabilities()  # the provider the engine applies with
        if caps.get("live_resize"):
            return None
        return (f"this machine's cgroups are not writable (enforcement: {caps.get('enforcement')}), so a running "
                "instance's CPU and memory limits cannot change live")

    def keyed_routing(self) -> bool:
        return self.current()[1].spec.lb.routing == "hash"

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        """The load balancer's ring over the slots' backend ids (the agent's instance uids) with these weights,
        so the keys a handover copies are the keys the LB sends to the new owner.

        Every member counts as up: this is who owns a key, not where a request goes while its owner is
        down (the LB then sends it to the next member clockwise until the owner is back)."""
        members = tuple(ring)
        if members not in self._rings:  # one agent round trip per ring, not per key
            rows = self._rows()
            uid_of = {sid: str(rows[sid]["uid"]) if sid in rows else sid for sid, _ in members}
            self._rings[members] = (ring_of(tuple((uid_of[sid], w) for sid, w in members)),
                                    {u: s for s, u in uid_of.items()})
        hashed, slot_of = self._rings[members]
        uid = hashed.owner(key)
        if uid is None:
            raise ProviderError("no slot takes traffic", "give a slot a weight above 0")
        return slot_of[uid]

    # -- state transport ----------------------------------------------------------------------------------
    def _address(self, slot_id: str) -> str:
        row = self._rows().get(slot_id)
        if row is None or not row.get("address"):
            raise ProviderError(f"slot {slot_id} has no running instance", "see `sculpt status`")
        return str(row["address"])

    def checkpoint(self, slot_id: str, since: int | None = None) -> Checkpoint:
        sync = self.current()[1].spec.app.state_sync
        return fetch_checkpoint(self._address(slot_id), slot_id, sync, since, fix=_FIX)

    def restore(self, slot_id: str, checkpoint: Checkpoint) -> None:
        sync = self.current()[1].spec.app.state_sync
        push_restore(self._address(slot_id), slot_id, sync, checkpoint, fix=_FIX)

    def set_readonly(self, slot_id: str, on: bool) -> None:
        if self._readonly_unsupported:
            return
        if not switch_readonly(self._address(slot_id), slot_id, on, fix=_FIX):
            self._readonly_unsupported = True
            log.warning("the app has no /admin/readonly endpoint: one writer rests on the LB pause alone")

    def moves_volume(self) -> bool:
        return False  # 'volume' copies the data directory before green starts (sculpt.migrate.sync)

    def data_dir(self, slot_id: str) -> Path | None:
        row = self._rows().get(slot_id)
        if row is not None and row.get("data_dir"):
            return Path(row["data_dir"])
        return self.state_dir / "instances" / self.stack / slot_id

    def instance_url(self, slot_id: str) -> str | None:
        return f"http://{self._address(slot_id)}"


def open_local(state_dir: str | Path, stack: str, ledger: Ledger) -> LocalPlatform:
    """The platform of an existing local stack, from its ledger alone (what crash recovery has): the local
    engine over the local provider under ``state_dir``."""
    from sculpt.catalog import load_catalog
    from sculpt.engine.local import LocalEngine
    from sculpt.providers.local.provider import LocalProvider

    return LocalPlatform(LocalEngine(stack, ledger, load_catalog("local"), LocalProvider(state_dir, stack)), state_dir)
