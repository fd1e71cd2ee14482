"""The ``Platform`` adapter for clouds (``engine: pulumi``, provider ``aws``): every step is a stack update.

(Provider ``gcp`` subclasses it in ``sculpt.migrate.gcp``: the same steps, MIG instances and health.)

Why it exists: the orchestrator's blue/green machine (add green at weight 0, shift the weights, remove blue)
is the same on a cloud; only the verbs differ. Here

- ``apply``/``rollback``/``current`` go through the ``StackEngine`` (``PulumiEngine``): each step is one
  ``pulumi up`` of the AWS program with a new fleet (the listener's forward weights do the shift);
- instances and their addresses come from the stack outputs (``instances``: EC2 id and private IP per
  slot, ``target_groups``: one ARN per colour), health from the ALB's target health
  (``elbv2:DescribeTargetHealth``): a slot is healthy when its update succeeded and its instance is
  ``healthy`` in its colour's target group;
- there is no pause: an ALB cannot hold requests. With ``state_sync: none`` the shift of the weights *is*
  the handover and ``pause``/``resume`` do nothing. ``http`` sync needs the controller to reach the
  instances' private addresses (inside the VPC, or over a VPN): it is refused unless the operator says
  so (``private_reachable``), and then the one-writer guarantee rests on blue's read-only switch alone —
  writes that arrive during the final delta are refused by the app, not held. ``command`` is refused (not
  built for clouds);
- ``volume`` (AWS, one replica): the program moves the EBS data volume with the traffic (``stacks/aws.py``),
  so nothing is copied (``moves_volume``). Green boots at weight 0 and waits for the volume without serving,
  so in WAIT_HEALTHY a weight-0 slot that does not hold the volume counts as ready once its EC2 instance is
  ``running``. The shift's update moves the weights, stops blue, detaches and re-attaches the volume; then
  ``apply`` waits (``Timeouts.healthy_s`` on the injected clock) until the new holder is ``healthy`` in its
  target group and raises ``ProviderError`` otherwise, so the orchestrator rolls back (the base version puts
  the volume back on blue and starts blue again). **This is an outage, not a handover**: a volume attaches
  to one instance at a time and an ALB cannot hold requests, so requests fail from the shift until green's
  app is healthy (and, in a rollback, until blue's is again);
- in place is refused: changing the type of a running EC2 instance is a stop/modify/start, not live.

Only the ``PulumiEngine`` touches ``pulumi.automation``; this module calls it as a ``StackEngine`` plus its
``outputs()``, and calls ELBv2 through boto3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sculpt.domain.clock import Clock, SystemClock
from sculpt.domain.errors import ConfigError, NotFoundError, ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import FleetSpec
from sculpt.migrate.orchestrator import Timeouts
from sculpt.migrate.port import Checkpoint, Instance, VersionPerUpdate
from sculpt.migrate.transport import fetch_checkpoint, push_restore, switch_readonly

log = logging.getLogger("sculpt.migrate.cloud")

_FIX = "is the controller inside the VPC, and does the app security group allow it?"
IN_PLACE_BLOCKER = "a cloud resize is a stop/modify/start of the instance, not live"

Health = Callable[[str, str, int], str]
"""``health(target_group_arn, instance_id, port)`` -> the ALB's target state (``healthy``, ``initial``...)."""
Ec2State = Callable[[str], str]
"""``ec2_state(instance_id)`` -> the EC2 instance state (``pending``, ``running``, ``stopped``...)."""


class AlbTargetHealth:
    """``Health`` over ``elbv2:DescribeTargetHealth`` (boto3, adaptive retries)."""

    def __init__(self, region: str, *, client: Any = None, endpoint_url: str | None = None) -> None:
        if client is None:
            from sculpt.metrics.cloudwatch import make_client

            client = make_client("elbv2", region, endpoint_url)
        self.client = client

    def __call__(self, target_group_arn: str, instance_id: str, port: int) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self.client.describe_target_health(TargetGroupArn=target_group_arn,
                                                       Targets=[{"Id": instance_id, "Port": port}])
        except (ClientError, BotoCoreError) as e:
            raise ProviderError(f"ELBv2 DescribeTargetHealth failed: {e}",
                                "check AWS credentials, region and elasticloadbalancing:DescribeTargetHealth "
                                "permission") from None
        for row in reply.get("TargetHealthDescriptions", []):
            if row.get("Target", {}).get("Id") == instance_id:
                return str(row.get("TargetHealth", {}).get("State", "unknown"))
        return "unregistered"


class Ec2InstanceState:
    """``Ec2State`` over ``ec2:DescribeInstances`` (boto3, adaptive retries)."""

    def __init__(self, region: str, *, client: Any = None, endpoint_url: str | None = None) -> None:
        if client is None:
            from sculpt.metrics.cloudwatch import make_client

            client = make_client("ec2", region, endpoint_url)
        self.client = client

    def __call__(self, instance_id: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self.client.describe_instances(InstanceIds=[instance_id])
        except (ClientError, BotoCoreError) as e:
            raise ProviderError(f"EC2 DescribeInstances failed: {e}",
                                "check AWS credentials, region and ec2:DescribeInstances permission") from None
        for reservation in reply.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                if inst.get("InstanceId") == instance_id:
                    return str(inst.get("State", {}).get("Name", "unknown"))
        return "not found"


def cloud_blocker(spec: FleetSpec, *, private_reachable: bool = False) -> str | None:
    """Why ``sculpt watch --mode auto`` cannot morph this cloud fleet (one line), or ``None``."""
    if spec.provider not in ("aws", "gcp"):
        return f"cloud morphs are built for aws and gcp, not '{spec.provider}'"
    lb = "an ALB" if spec.provider == "aws" else "a GCP URL map"  # GCP: sculpt.migrate.gcp
    sync = spec.app.state_sync.strategy
    if spec.lb.routing == "hash":
        return f"{lb} routes by weight, not by consistent hash (lb.routing: hash)"
    if sync == "command":
        return f"state_sync '{sync}' is not built for cloud morphs"
    if sync == "volume" and spec.provider != "aws":
        return f"state_sync 'volume' moves an EBS volume: built for AWS, not '{spec.provider}'"
    if sync == "volume" and spec.replicas.desired > 1:
        return (f"state_sync 'volume' moves one EBS volume, which attaches to one instance at a time: only one "
                f"replica can hold the data, not {spec.replicas.desired} (set replicas.desired: 1)")
    if sync == "http" and not private_reachable:
        return ("state_sync 'http' copies state between the instances' private addresses, which this "
                f"controller is not known to reach, and {lb} cannot pause requests")
    return None


class CloudPlatform(VersionPerUpdate):
    """``Platform`` over a cloud ``StackEngine`` with stack outputs (see the module docstring)."""

    def __init__(self, engine: Any, *, health: Health | None = None, clock: Clock | None = None,
                 private_reachable: bool = False, ec2_state: Ec2State | None = None,
                 timeouts: Timeouts | None = None) -> None:
        self.engine = engine
        self.stack: str = engine.stack
        self.clock = clock or SystemClock()
        self.private_reachable = private_reachable
        # how long a moved volume's new holder may take to serve (the morph's own timeouts when wired)
        self.timeouts = timeouts or Timeouts(healthy_s=900.0, poll_s=5.0)
        self._health = health
        self._ec2_state = ec2_state
        self._zeroed: dict[str, float] = {}  # slot -> when an update took its weight to 0 (monotonic)
        self._readonly_unsupported = False

    # -- versions ---------------------------------------------------------------------------------------
    def current(self) -> tuple[int, Fleet]:
        v, fleet = self.engine.current_version(), self.engine.current()
        if v is None or fleet is None:
            raise NotFoundError(f"stack '{self.stack}' has no running version", "run `sculpt up` first")
        return int(v), fleet

    def apply(self, fleet: Fleet, message: str) -> int:
        """One ``pulumi up``. When it moved the data volume (the shift of a ``volume`` morph), wait until the
        new holder serves: ``ProviderError`` if it does not within ``timeouts.healthy_s``."""
        volume = fleet.spec.app.state_sync.strategy == "volume"
        before, holder = self._weights(), self._holder() if volume else None
        v = int(self.engine.up(fleet, message))
        self._note_zeroed(before, fleet)
        moved_to = self._holder() if volume else None
        if moved_to is not None and moved_to != holder:
            if not self._wait_serving(moved_to):
                raise ProviderError(
                    f"{moved_to} did not become healthy with the data volume within "
                    f"{self.timeouts.healthy_s:g}s of the shift (requests fail until it does)",
                    "see the instance's console output (sculpt-data and sculpt-app units); the morph rolls "
                    "back, which gives the volume back to the previous instance and starts it again")
        return v

    def rollback(self, version: int, message: str, fleet: Fleet | None = None) -> int:
        """Re-apply ``version``. When that moves the data volume back, wait (bounded) until its holder
        serves again; a holder that does not is logged, not raised: the rollback itself is done."""
        fleet = self.engine.current()
        volume = fleet is not None and fleet.spec.app.state_sync.strategy == "volume"
        before, holder = self._weights(), self._holder() if volume else None
        v = int(self.engine.rollback(version, message))
        self._note_zeroed(before, self.current()[1])
        moved_to = self._holder() if volume else None
        if moved_to is not None and moved_to != holder and not self._wait_serving(moved_to):
            log.error("stack '%s': %s holds the data volume again but is not healthy after %gs; check it",
                      self.stack, moved_to, self.timeouts.healthy_s)
        return v

    def moves_volume(self) -> bool:
        """True: with ``state_sync: volume`` the AWS program moves the EBS volume with the traffic."""
        return True

    def _holder(self) -> str | None:
        """The slot the data volume is attached to, from the stack outputs (``None``: no volume)."""
        volume = dict(self._outputs().get("volume") or {})
        holder = volume.get("attached_to")
        return str(holder) if holder else None

    def _wait_serving(self, slot_id: str) -> bool:
        """Poll the ALB until ``slot_id`` is healthy, up to ``timeouts.healthy_s`` on the injected clock."""
        log.warning("stack '%s': the data volume moved to %s; requests fail until it is healthy", self.stack,
                    slot_id)
        deadline = self.clock.monotonic() + self.timeouts.healthy_s
        while True:
            inst = self.instances().get(slot_id)
            if inst is not None and inst.healthy:
                return True
            if self.clock.monotonic() >= deadline:
                return False
            self.clock.sleep(self.timeouts.poll_s)

    def _weights(self) -> dict[str, int]:
        fleet = self.engine.current()
        return {s.id: s.weight for s in fleet.slots} if fleet is not None else {}

    def _note_zeroed(self, before: dict[str, int], fleet: Fleet) -> None:
        now = self.clock.monotonic()
        for s in fleet.slots:
            if s.weight == 0 and before.get(s.id, 0) > 0:
                self._zeroed[s.id] = now
            elif s.weight > 0:
                self._zeroed.pop(s.id, None)

    # -- instances ----------------------------------------------------------------------------------------
    def _outputs(self) -> dict[str, Any]:
        return dict(self.engine.outputs())

    def _health_check(self) -> Health:
        if self._health is None:
            self._health = AlbTargetHealth(self.current()[1].spec.region)
        return self._health

    def instances(self) -> dict[str, Instance]:
        """The current version's slots that the stack outputs name (an instance exists), health from the ALB.

        With a data volume, a weight-0 slot that does not hold it is a standby: its app waits for the volume
        and never serves before the shift, so it counts as healthy once its EC2 instance is ``running``."""
        _, fleet = self.current()
        out = self._outputs()
        rows = dict(out.get("instances") or {})
        groups = dict(out.get("target_groups") or {})
        holder = dict(out.get("volume") or {}).get("attached_to")
        port = fleet.spec.app.port
        found = {}
        for s in fleet.slots:
            row = rows.get(s.id)
            if not row or not row.get("id"):
                continue
            if holder and s.id != holder and s.weight == 0:
                healthy = self._ec2_check()(str(row["id"])) == "running"
            else:
                healthy = self._state(groups.get(s.colour), str(row["id"]), port) == "healthy"
            ip = row.get("private_ip")
            found[s.id] = Instance(s.id, s.shape, s.region, healthy, s.weight,
                                   f"{ip}:{port}" if ip else None)
        return found

    def _ec2_check(self) -> Ec2State:
        if self._ec2_state is None:
            self._ec2_state = Ec2InstanceState(self.current()[1].spec.region)
        return self._ec2_state

    def _state(self, group: str | None, instance_id: str, port: int) -> str:
        if not group:
            return "no target group"
        return self._health_check()(str(group), instance_id, port)

    def probe(self, slot_id: str) -> bool:
        inst = self.instances().get(slot_id)
        return inst is not None and inst.healthy

    # -- traffic ------------------------------------------------------------------------------------------
    def pause(self) -> None:
        """An ALB cannot hold requests: nothing to do (the weight shift is the handover)."""
        log.info("stack '%s': an ALB cannot pause requests; the weight shift is the handover", self.stack)

    def resume(self) -> None:
        """Nothing was paused."""

    def wait_idle(self, slot_ids: Sequence[str], timeout_s: float) -> bool:
        """A slot whose weight an update took to 0 is idle once ``lb.drain_s`` has passed since (the ALB
        sends it no new requests; in-flight ones finish within the drain). A slot that still has weight
        cannot be drained on an ALB: it counts as idle (no pause; see the module docstring). A slot found at
        weight 0 that this process did not shift (a restarted controller) starts its drain when first seen."""
        fleet = self.current()[1]
        weights = {s.id: s.weight for s in fleet.slots}
        drain = float(fleet.spec.lb.drain_s)
        now = self.clock.monotonic()
        for s in slot_ids:
            if weights.get(s) == 0 and s not in self._zeroed:
                self._zeroed[s] = now
        return all(now - self._zeroed[s] >= drain for s in slot_ids if s in self._zeroed)

    def live_resize_blocker(self) -> str | None:
        return IN_PLACE_BLOCKER

    def keyed_routing(self) -> bool:
        return False  # an ALB routes by weight

    def owner(self, key: str, ring: Sequence[tuple[str, int]]) -> str:
        raise ConfigError("an ALB does not route by key", "use lb.routing: weighted on AWS")

    # -- state transport (http sync, only when the private addresses are reachable) ------------------------
    def _address(self, slot_id: str) -> str:
        if not self.private_reachable:
            raise ConfigError(f"cannot reach {slot_id}'s private address from this controller",
                              "run the controller inside the VPC and allow it, or use state_sync: none")
        inst = self.instances().get(slot_id)
        if inst is None or not inst.address:
            raise ProviderError(f"slot {slot_id} has no instance in the stack outputs", "see `sculpt status`")
        return inst.address

    def checkpoint(self, slot_id: str, since: int | None = None) -> Checkpoint:
        sync = self.current()[1].spec.app.state_sync
        return fetch_checkpoint(self._address(slot_id), slot_id, sync, since, fix=_FIX)

    def restore(self, slot_id: str, checkpoint: Checkpoint) -> None:
        sync = self.current()[1].spec.app.state_sync
        push_restore(self._address(slot_id), slot_id, sync, checkpoint, fix=_FIX)

    def set_readonly(self, slot_id: str, on: bool) -> None:
        if not self.private_reachable or self._readonly_unsupported:
            return  # state_sync none: nothing to protect
        if not switch_readonly(self._address(slot_id), slot_id, on, fix=_FIX):
            self._readonly_unsupported = True
            log.warning("the app has no /admin/readonly endpoint: without an LB pause, two instances may "
                        "take writes during the handover")

    def data_dir(self, slot_id: str) -> Path | None:
        return None

    def instance_url(self, slot_id: str) -> str | None:
        inst = self.instances().get(slot_id)
        return f"http://{inst.address}" if inst is not None and inst.address else None
