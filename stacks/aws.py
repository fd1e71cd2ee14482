"""The AWS program: a ``Fleet`` as EC2 instances behind an ALB with one target group per colour.

Per colour: a launch template per shape, one instance per slot (``replace_on_changes=["instanceType"]``,
because changing the type of a running instance is a stop/modify/start, not a live resize) and a target
group. One listener forwards to both target groups with the fleet's weights, which is how a blue/green
morph shifts traffic: every migration step is one stack update. With ``state_sync.strategy: volume`` an EBS
data volume is attached to the instance ``common.volume_holder`` picks, so the step that gives green the
traffic also moves the volume. How that move goes, in one ``pulumi up``:

1. the listener's weights change first (the attachment ``depends_on`` it), so blue takes no new requests;
2. the old attachment is deleted before the new one is created (delete-before-replace: a volume has one
   attachment at a time) with ``stop_instance_before_detaching``: blue is stopped (a clean shutdown stops
   the app, then unmounts /data) before the volume is detached;
3. the volume is attached to green, whose boot script has been waiting for it with no time bound
   (``common.startup_script``): green mounts it and only then starts the app;
4. an ``InstanceState`` (``state: running``) on the holder: when a rollback re-applies the version where
   blue held the volume, blue (stopped in step 2) is started again once the volume is back.

**The window.** An EBS volume attaches to one instance at a time and an ALB cannot hold requests, so from
the listener update until green's app answers its health check, requests fail (the ALB answers 5xx): a
stop, a detach, an attach, a mount and an app start, typically a minute or two. No acknowledged write is
lost: blue's writes are on the volume, unmounted cleanly, before green mounts it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from sculpt.domain.fleet import Colour, Fleet
from stacks.common import (
    COLOURS,
    Make,
    colour_weights,
    create,
    lb_port,
    scaled,
    shapes_of,
    slots_of,
    startup_script,
    tags,
    volume_holder,
)

ALB_MAX_WEIGHT = 999
DATA_DEVICE = "/dev/sdf"
DATA_VOLUME_GIB = 20


@dataclass(frozen=True)
class Network:
    """Where instances go. ``None`` fields are looked up (the region's default VPC and its subnets)."""

    vpc_id: pulumi.Input[str] | None = None
    subnet_ids: pulumi.Input[list[str]] | None = None
    availability_zone: pulumi.Input[str] | None = None


def _network(fleet: Fleet, net: Network | None) -> tuple[pulumi.Output[str], pulumi.Output[list[str]], pulumi.Output[str]]:
    region = fleet.spec.region
    net = net or Network()
    vpc_id = pulumi.Output.from_input(net.vpc_id) if net.vpc_id is not None else \
        aws.ec2.get_vpc_output(default=True, region=region).id
    if net.subnet_ids is not None:
        subnet_ids = pulumi.Output.from_input(net.subnet_ids)
    else:
        subnet_ids = aws.ec2.get_subnets_output(filters=[{"name": "vpc-id", "values": [vpc_id]}], region=region).ids
    if net.availability_zone is not None:
        az = pulumi.Output.from_input(net.availability_zone)
    else:
        az = aws.ec2.get_subnet_output(id=subnet_ids[0], region=region).availability_zone
    return vpc_id, subnet_ids, az


def _image(fleet: Fleet, shape: str) -> pulumi.Input[str]:
    if fleet.spec.app.image:
        return fleet.spec.app.image
    arch = "x86_64"
    try:
        from sculpt.catalog import load_catalog

        arch = load_catalog("aws").shape(shape).arch
    except Exception:  # noqa: BLE001 - an unknown shape keeps the x86_64 image
        pass
    return aws.ec2.get_ami_output(most_recent=True, owners=["amazon"], region=fleet.spec.region,
                                  filters=[{"name": "name", "values": [f"al2023-ami-2023.*-{arch}"]}]).id


def _user_data(fleet: Fleet, volume_id: str | None) -> str:
    script = startup_script(fleet, data_volume=volume_id, device=DATA_DEVICE)
    return base64.b64encode(script.encode()).decode()


def build(fleet: Fleet, version: int = 0, *, make: Make = create, network: Network | None = None) -> dict[str, Any]:
    """Declare the fleet's AWS resources; return the stack outputs."""
    spec, region, name = fleet.spec, fleet.spec.region, fleet.name
    port = spec.app.port
    vpc_id, subnet_ids, az = _network(fleet, network)
    holder = volume_holder(fleet)
    one_az = holder is not None  # an EBS volume lives in one AZ: keep every instance there

    lb_sg = make(aws.ec2.SecurityGroup, f"{name}-lb", vpc_id=vpc_id, region=region,
                 description=f"sculpt {name}: load balancer",
                 ingress=[{"protocol": "tcp", "from_port": lb_port(fleet), "to_port": lb_port(fleet),
                           "cidr_blocks": ["0.0.0.0/0"]}],
                 egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
                 tags=tags(fleet))
    app_sg = make(aws.ec2.SecurityGroup, f"{name}-app", vpc_id=vpc_id, region=region,
                  description=f"sculpt {name}: instances (app port from the LB and from each other for state sync)",
                  ingress=[{"protocol": "tcp", "from_port": port, "to_port": port, "security_groups": [lb_sg.id]},
                           {"protocol": "tcp", "from_port": port, "to_port": port, "self": True}],
                  egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
                  tags=tags(fleet))
    alb = make(aws.lb.LoadBalancer, f"{name}-alb", load_balancer_type="application", region=region,
               security_groups=[lb_sg.id], subnets=subnet_ids, tags=tags(fleet))

    volume = None
    if holder is not None:
        volume = make(aws.ebs.Volume, f"{name}-data", availability_zone=az, size=DATA_VOLUME_GIB, type="gp3",
                      region=region, tags={**tags(fleet), "Name": spec.app.state_sync.volume or f"{name}-data"},
                      opts=pulumi.ResourceOptions(retain_on_delete=True))
    user_data = (volume.id.apply(lambda vid: _user_data(fleet, vid)) if volume is not None
                 else _user_data(fleet, None))

    weights = scaled(colour_weights(fleet), ALB_MAX_WEIGHT)
    target_groups: dict[Colour, Any] = {}
    instances: dict[str, Any] = {}
    for colour in COLOURS:
        target_groups[colour] = make(
            aws.lb.TargetGroup, f"{name}-{colour}", port=port, protocol="HTTP", vpc_id=vpc_id, region=region,
            target_type="instance", deregistration_delay=int(spec.lb.drain_s),
            health_check={"path": spec.app.health_path, "port": "traffic-port", "healthy_threshold": 2,
                          "interval": 10},
            tags={**tags(fleet, colour=colour), "sculpt:weight": str(weights.get(colour, 0))})
        templates = {
            shape: make(
                aws.ec2.LaunchTemplate, f"{name}-{colour}-{shape}", region=region, image_id=_image(fleet, shape),
                instance_type=shape,
                user_data=user_data,
                tag_specifications=[{"resource_type": "instance", "tags": tags(fleet, colour=colour)}],
                tags=tags(fleet, colour=colour))
            for shape in shapes_of(fleet, colour)
        }
        for i, slot in enumerate(slots_of(fleet, colour)):
            template = templates[slot.shape]
            subnet = subnet_ids.apply(lambda ids, i=i: ids[0] if one_az else ids[i % len(ids)])
            inst = make(
                aws.ec2.Instance, slot.id, region=region, instance_type=slot.shape, subnet_id=subnet,
                vpc_security_group_ids=[app_sg.id], associate_public_ip_address=spec.policy.allow_public_ip,
                launch_template={"id": template.id, "version": template.latest_version.apply(str)},
                tags=tags(fleet, colour=colour, version=version, slot=slot.id),
                opts=pulumi.ResourceOptions(replace_on_changes=["instanceType"], delete_before_replace=False))
            make(aws.lb.TargetGroupAttachment, f"{slot.id}-tg", region=region,
                 target_group_arn=target_groups[colour].arn, target_id=inst.id, port=port)
            instances[slot.id] = inst

    listener = make(
        aws.lb.Listener, f"{name}-http", load_balancer_arn=alb.arn, port=lb_port(fleet), protocol="HTTP",
        region=region, tags=tags(fleet),
        default_actions=[{"type": "forward", "forward": {"target_groups": [
            {"arn": target_groups[c].arn, "weight": weights.get(c, 0)} for c in COLOURS
        ]}}])

    outputs: dict[str, Any] = {
        "url": alb.dns_name.apply(lambda d: f"http://{d}:{lb_port(fleet)}"),
        "listener": listener.arn,
        "weights": {c: weights.get(c, 0) for c in COLOURS},
        "target_groups": {c: tg.arn for c, tg in target_groups.items()},
        "instances": {sid: {"id": inst.id, "private_ip": inst.private_ip,
                            "colour": next(s.colour for s in fleet.slots if s.id == sid)}
                      for sid, inst in instances.items()},
    }
    if holder is not None and volume is not None:
        # After the listener: a shift first takes blue's traffic, then stops blue (a clean shutdown unmounts
        # the volume), detaches, and attaches to green. Delete-before-replace: one attachment at a time.
        attachment = make(aws.ec2.VolumeAttachment, f"{name}-data-attachment", device_name=DATA_DEVICE,
                          region=region, volume_id=volume.id, instance_id=instances[holder.id].id,
                          stop_instance_before_detaching=True,
                          opts=pulumi.ResourceOptions(delete_before_replace=True, depends_on=[listener]))
        # The holder runs: a rollback gives the volume back to a blue the shift stopped, and this starts it
        # (PulumiEngine.rollback refreshes first, so a stopped holder shows up as a change).
        make(aws.ec2transitgateway.InstanceState, f"{holder.id}-running", region=region,
             instance_id=instances[holder.id].id, state="running",
             opts=pulumi.ResourceOptions(depends_on=[attachment]))
        outputs["volume"] = {"id": volume.id, "attached_to": holder.id, "colour": holder.colour}
    return outputs
