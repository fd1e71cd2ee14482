"""The ``Platform`` adapter for GCP (``engine: pulumi``, provider ``gcp``): ``CloudPlatform`` with MIG health.

Why it exists: on GCP every morph step is a stack update exactly as on AWS (``stacks/gcp.py`` renders one
regional managed instance group per colour, sized to its slots, behind a URL map whose weighted backend
services shift the traffic), so versions, rollback, drain and ``http`` sync come from ``CloudPlatform``.
What differs is how instances and their health are seen:

- the stack outputs name each colour's MIG (``managed_groups``: name, region, project). The MIG's
  instances and their health come from the Compute API (``listManagedInstances``, see
  ``sculpt.providers.gcp``): an instance is healthy when it is ``RUNNING``, the MIG has no action pending on
  it (``NONE``) and the autohealing health check (the same check the backend services use) says
  ``HEALTHY``;
- **MIG instances have no slot identity.** A colour's slots sorted by id are matched to its instances
  sorted healthy first, then by name (instances the MIG is deleting are left out): with ``h`` healthy
  instances the first ``h`` slots are healthy. So the newest slot (the one a morph waits for) is healthy
  only when the whole group is, never because an older instance is. During a one-replica morph each colour
  has one slot and one instance, so the match is exact; that is also the only case where an address matters
  (``http`` sync is refused for weighted multi-replica fleets by the orchestrator);
- an instance's private address (``networkInterfaces[0].networkIP``) is read only when the controller may
  reach it (``SCULPT_PRIVATE_REACHABLE``), and kept for the instance's life.

The project: the MIG's own ``project`` output (what the Pulumi provider used), else ``gcp_project`` from
the spec, else the provider's environment variables (``GOOGLE_PROJECT``...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sculpt.domain.clock import Clock
from sculpt.domain.errors import ConfigError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.migrate.cloud import CloudPlatform
from sculpt.migrate.port import Instance
from sculpt.providers.gcp import PROJECT_ENVS, ComputeClient, ManagedInstance, env_project

log = logging.getLogger("sculpt.migrate.gcp")

COLOURS = ("blue", "green")


@dataclass(frozen=True)
class GroupRef:
    """Where a colour's managed instance group lives."""

    project: str
    region: str
    name: str


def match_slots(slots: Sequence[Slot], managed: Sequence[ManagedInstance]) -> dict[str, ManagedInstance]:
    """A colour's slots (sorted by id) matched to its MIG's instances (healthy first, then by name).

    Instances being deleted are left out; slots beyond the instances present get none (not created yet).

    >>> from sculpt.domain.fleet import Slot
    >>> s = [Slot(id=i, shape="n2-standard-2", region="r", colour="green", weight=0) for i in ("web-3", "web-4")]
    >>> up = ManagedInstance("web-green-zz", "u1", "RUNNING", "NONE", ("HEALTHY",))
    >>> booting = ManagedInstance("web-green-aa", "u2", "RUNNING", "VERIFYING", ())
    >>> {k: v.name for k, v in match_slots(s, [booting, up]).items()}
    {'web-3': 'web-green-zz', 'web-4': 'web-green-aa'}
    """
    live = sorted((m for m in managed if not m.leaving), key=lambda m: (not m.healthy, m.name))
    return {s.id: m for s, m in zip(sorted(slots, key=lambda s: s.id), live, strict=False)}


class GcpPlatform(CloudPlatform):
    """``CloudPlatform`` whose instances are a MIG's, seen through the Compute API (see the module docstring)."""

    def __init__(self, engine: Any, *, compute: ComputeClient | None = None, clock: Clock | None = None,
                 private_reachable: bool = False) -> None:
        super().__init__(engine, clock=clock, private_reachable=private_reachable)
        self._compute = compute
        self._ips: dict[str, str | None] = {}  # instance link -> private IP (fixed for the instance's life)

    @property
    def compute(self) -> ComputeClient:
        if self._compute is None:
            self._compute = ComputeClient(sleep=self.clock.sleep)
        return self._compute

    def preflight(self) -> None:
        """Fail now, in one line, when there are no credentials for the Compute API (before any update)."""
        self.compute.token_source()

    # -- instances ----------------------------------------------------------------------------------------
    def groups(self, fleet: Fleet) -> dict[str, GroupRef]:
        """Each colour's MIG from the stack outputs (colours without slots have none)."""
        rows = dict(self._outputs().get("managed_groups") or {})
        out = {}
        for colour in COLOURS:
            row = rows.get(colour)
            if not isinstance(row, dict) or not row.get("name"):
                continue
            project = row.get("project") or fleet.spec.gcp_project or env_project()
            if not project:
                raise ConfigError(f"the GCP project of stack '{self.stack}' is not known",
                                  f"set gcp_project in sculpt.yaml (or {PROJECT_ENVS[0]}) and run `sculpt up`")
            out[colour] = GroupRef(str(project), str(row.get("region") or fleet.spec.region), str(row["name"]))
        return out

    def matched(self, fleet: Fleet) -> dict[str, tuple[GroupRef, ManagedInstance]]:
        """Each slot of ``fleet`` with its colour's MIG and the managed instance it maps to (``match_slots``),
        one ``listManagedInstances`` per colour. Slots no instance stands for yet are left out."""
        out: dict[str, tuple[GroupRef, ManagedInstance]] = {}
        for colour, ref in self.groups(fleet).items():
            slots = [s for s in fleet.slots if s.colour == colour]
            if not slots:
                continue
            managed = self.compute.list_managed_instances(ref.project, ref.region, ref.name)
            for sid, m in match_slots(slots, managed).items():
                out[sid] = (ref, m)
        return out

    def instances(self) -> dict[str, Instance]:
        """The current version's slots matched to their colour's MIG instances, with MIG health."""
        _, fleet = self.current()
        port = fleet.spec.app.port
        by_slot = self.matched(fleet)
        found: dict[str, Instance] = {}
        for s in fleet.slots:
            if s.id not in by_slot:
                continue
            m = by_slot[s.id][1]
            ip = self._ip(m) if self.private_reachable else None
            found[s.id] = Instance(s.id, s.shape, s.region, m.healthy, s.weight, f"{ip}:{port}" if ip else None)
        return found

    def _ip(self, m: ManagedInstance) -> str | None:
        if m.url not in self._ips or self._ips[m.url] is None:
            self._ips[m.url] = self.compute.network_ip(m.url) if m.url else None
        return self._ips[m.url]

    # -- traffic ------------------------------------------------------------------------------------------
    def pause(self) -> None:
        """A URL map cannot hold requests: nothing to do (the weight shift is the handover)."""
        log.info("stack '%s': a GCP URL map cannot pause requests; the weight shift is the handover", self.stack)

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        raise ConfigError("a GCP URL map does not route by key", "use lb.routing: weighted on GCP")

    def moves_volume(self) -> bool:
        return False  # state_sync 'volume' is refused on GCP (stacks/common.py, cloud_blocker)
