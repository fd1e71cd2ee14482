"""What ``sculpt watch``/``plan`` need for a cloud fleet (``engine: pulumi``): readings and a platform.

Why it exists: the live loop (``sculpt.loop``) is the same for every engine; on a Pulumi stack two
things differ, and they are wired here so the loop stays engine-agnostic:

- **readings**: CloudWatch is keyed by EC2 instance id, the loop by slot id. The engine's stack outputs
  map one to the other (``sculpt.metrics.aws_ids``), and the current version's slot shapes give the vCPUs
  that turn ``CPUUtilization`` into cores. On GCP (``--source gcp-monitoring``) Cloud Monitoring is keyed
  by instance name and MIG instances have no slot identity: ``GcpPlatform``'s own slot-to-instance match
  (``sculpt.migrate.gcp.match_slots`` over the Compute API's listing) names each slot's instance
  (``sculpt.metrics.gcp_monitoring``);
- **the actuator's platform**: every morph step is a stack update, with timeouts measured in cloud
  minutes, not seconds. On AWS ``sculpt.migrate.cloud.CloudPlatform`` (health from the ALB's target
  health), on GCP ``sculpt.migrate.gcp.GcpPlatform`` (health of the colour's managed instance group from
  the Compute API).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.spec import FleetSpec
from sculpt.engine.base import StackEngine
from sculpt.metrics.aws_ids import SlotCloudWatchSource, SlotTarget, ec2_targets

if TYPE_CHECKING:
    from sculpt.metrics.gcp_monitoring import GceTarget, SlotMonitoringSource
    from sculpt.migrate.cloud import CloudPlatform
    from sculpt.migrate.gcp import GcpPlatform
    from sculpt.migrate.orchestrator import Timeouts
    from sculpt.providers.gcp import MonitoringClient

log = logging.getLogger("sculpt.cloud")

REACHABLE_ENV = "SCULPT_PRIVATE_REACHABLE"
"""Set to 1 when this controller can reach the instances' private addresses (inside the VPC, AWS or GCP):
allows ``state_sync: http`` morphs on the cloud (see ``sculpt.migrate.cloud``)."""


def private_reachable() -> bool:
    """Whether the operator said (``SCULPT_PRIVATE_REACHABLE``) this controller reaches the private addresses."""
    return os.environ.get(REACHABLE_ENV, "") in ("1", "true", "yes")


def slot_targets(engine: StackEngine, catalog: Catalog) -> dict[str, SlotTarget]:
    """Slot id -> (EC2 instance id, vCPUs of the slot's shape) from the engine's outputs and current fleet.

    An engine that cannot answer (CLI missing, stack gone) gives none: the loop holds with a warning."""
    try:
        targets = ec2_targets(engine.outputs())
        fleet = engine.current()
    except SculptError as e:
        log.warning("cannot map slots to EC2 instances: %s", e)
        return {}
    shapes = {s.id: s.shape for s in (fleet.slots if fleet else ())}
    return {slot: SlotTarget(t.instance_id, _vcpus(catalog, shapes.get(slot))) for slot, t in targets.items()}


def _vcpus(catalog: Catalog, shape: str | None) -> float | None:
    """The vCPUs of ``shape`` from the catalog (``None``: no shape, or one the catalog does not know)."""
    if shape is None:
        return None
    try:
        return float(catalog.shape(shape).vcpu)
    except SculptError:
        return None


def cloudwatch_by_slot(engine: StackEngine, catalog: Catalog, region: str, *, endpoint_url: str | None = None,
                       client: Any = None) -> SlotCloudWatchSource:
    """CloudWatch for a Pulumi stack's slots (``--source cloudwatch``)."""
    from sculpt.metrics.cloudwatch import CloudWatchSource

    src = CloudWatchSource(region, client=client, endpoint_url=endpoint_url)
    return SlotCloudWatchSource(src, lambda: slot_targets(engine, catalog))


def gce_targets(platform: GcpPlatform, catalog: Catalog) -> dict[str, GceTarget]:
    """Slot id -> (project, MIG instance name, vCPUs of the slot's shape) for the current version's slots.

    The same match ``GcpPlatform.instances`` makes (a colour's slots by id to its MIG's instances, healthy
    first), so a slot's readings are those of the instance its health is read from. Errors (no version,
    the Compute API refusing) are raised: the readings hold the tick, the backfill says why it has none."""
    from sculpt.metrics.gcp_monitoring import GceTarget

    _, fleet = platform.current()
    shapes = {s.id: s.shape for s in fleet.slots}
    return {sid: GceTarget(ref.project, m.name, _vcpus(catalog, shapes[sid]))
            for sid, (ref, m) in platform.matched(fleet).items()}


def monitoring_by_slot(platform: GcpPlatform, catalog: Catalog, *,
                       client: MonitoringClient | None = None) -> SlotMonitoringSource:
    """Cloud Monitoring for a GCP stack's slots (``--source gcp-monitoring``); backoff sleeps on the
    platform's clock."""
    from sculpt.metrics.gcp_monitoring import MonitoringSource, SlotMonitoringSource
    from sculpt.providers.gcp import MonitoringClient

    api = client or MonitoringClient(sleep=platform.clock.sleep)
    return SlotMonitoringSource(lambda project: MonitoringSource(project, api),
                                lambda: gce_targets(platform, catalog))


@dataclass
class CloudWiring:
    """The cloud parts of a live sculptor: a readings factory and (auto mode) the platform and timeouts."""

    engine: StackEngine
    catalog: Catalog
    spec: FleetSpec
    platform: CloudPlatform | None = None  # GcpPlatform on GCP; None on a provider morphs are not built for
    timeouts: Timeouts | None = None

    @classmethod
    def of(cls, engine: StackEngine, catalog: Catalog, spec: FleetSpec, *, mode: str,
           check_credentials: bool = False) -> CloudWiring:
        """For ``engine: pulumi``. On AWS and GCP the platform is built in every mode (crash recovery of a
        morph needs it); in auto mode what cannot be morphed safely is refused here (one line, with the
        fix). In auto mode (or with ``check_credentials``) a GCP platform also checks now that there are
        credentials for the Compute API, so a morph never adds green it cannot watch."""
        from sculpt.migrate.cloud import CloudPlatform, cloud_blocker
        from sculpt.migrate.orchestrator import Timeouts

        reachable = private_reachable()
        if mode == "auto":
            why = cloud_blocker(spec, private_reachable=reachable)
            if why:
                raise ConfigError(f"auto mode cannot morph '{spec.fleet}' on the cloud: {why}",
                                  "set app.state_sync.strategy: none for a stateless app (the load balancer's "
                                  f"weight shift is the handover), set {REACHABLE_ENV}=1 when this controller "
                                  "runs inside the VPC, or use --mode recommend")
        w = cls(engine, catalog, spec)
        if spec.provider == "aws":
            w.platform = CloudPlatform(engine, private_reachable=reachable)
        elif spec.provider == "gcp":
            from sculpt.migrate.gcp import GcpPlatform

            gcp = GcpPlatform(engine, private_reachable=reachable)
            if mode == "auto" or check_credentials:
                gcp.preflight()
            w.platform = gcp
        # instances take minutes to boot and pass two health checks; the drain is the load balancer's
        w.timeouts = Timeouts(healthy_s=900.0, step_s=1800.0, drain_s=float(spec.lb.drain_s) + 120.0, poll_s=5.0)
        if isinstance(w.platform, CloudPlatform):
            w.platform.timeouts = w.timeouts  # how long a moved volume's new holder may take to serve
        return w

    def readings_source(self, source: str) -> Any:
        """The metric source for ``--source``: CloudWatch (AWS) or Cloud Monitoring (GCP) by slot id, else
        ``None`` (the generic ones)."""
        kind, _, arg = source.partition("=")
        if kind == "gcp-monitoring":
            return self._gcp_monitoring(arg)
        if kind != "cloudwatch":
            return None
        if self.spec.provider != "aws":
            raise ConfigError(f"--source cloudwatch reads AWS, not '{self.spec.provider}'",
                              "use --source gcp-monitoring on GCP, or --source prometheus=URL")
        return cloudwatch_by_slot(self.engine, self.catalog, arg or self.spec.region,
                                  endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _gcp_monitoring(self, arg: str) -> SlotMonitoringSource:
        """``--source gcp-monitoring``: refused off GCP, and without credentials now rather than every tick."""
        from sculpt.migrate.gcp import GcpPlatform
        from sculpt.providers.gcp import MonitoringClient

        if self.spec.provider != "gcp":
            raise ConfigError(f"--source gcp-monitoring reads GCP Cloud Monitoring, not '{self.spec.provider}'",
                              "use --source cloudwatch on AWS, or --source prometheus=URL")
        if arg:
            raise ConfigError(f"--source gcp-monitoring takes no argument (got '{arg}')",
                              "pass --source gcp-monitoring: the project comes from the stack (gcp_project)")
        platform = self.platform if isinstance(self.platform, GcpPlatform) else GcpPlatform(self.engine)
        client = MonitoringClient(sleep=platform.clock.sleep)
        platform.preflight()  # the slot-to-instance map reads the Compute API
        client.token_source()
        return monitoring_by_slot(platform, self.catalog, client=client)
