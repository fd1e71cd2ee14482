"""What a ``pulumi up`` of the AWS program would leave in AWS, played into moto's server (real HTTP).

The ``pulumi`` CLI double (tests/pulumi/cli_double.py) does not run the program, so tests give it
``MotoStack.render`` as its ``render``: for the fleet an update applied, it launches an EC2 instance per new
slot (of the slot's shape) and registers it in its colour's target group, deregisters and terminates the
slots that left, and answers ``stack output`` as the program's exports would (``instances``,
``target_groups``, ``weights``). The EC2 ids and the target health the code under test sees are moto's.

With ``state_sync: volume`` it also plays the data volume the way ``stacks/aws.py`` declares it, in the
order Pulumi would take the steps: new instances first; then the attachment (which ``depends_on`` the
listener) — created once on the first holder, and on a holder change the old holder is stopped
(``stop_instance_before_detaching``), the volume detached and attached to the new holder; then the
``InstanceState`` (``running``) of the holder starts it if it is stopped; removed instances last.
``events`` records each of these moves with the EC2 state moto reported for that instance at the time.
This is a model of what the program declares (the declaration itself is tested under Pulumi's mocks in
tests/pulumi/test_stacks_aws.py), not Pulumi's engine.
"""

from __future__ import annotations

import json
from typing import Any

from sculpt.domain.fleet import Fleet
from sculpt.metrics.cloudwatch import make_client
from stacks.common import volume_holder


class MotoStack:
    def __init__(self, url: str, region: str = "us-east-1", port: int = 8080) -> None:
        self.ec2 = make_client("ec2", region, url)
        self.elb = make_client("elbv2", region, url)
        self.port = port
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]
        self.subnet, self.az = subnet["SubnetId"], subnet["AvailabilityZone"]
        self.image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.groups = {c: self.elb.create_target_group(Name=f"web-{c}-{vpc[-6:]}", Protocol="HTTP", Port=port,
                                                       VpcId=vpc, TargetType="instance")["TargetGroups"][0]
                       ["TargetGroupArn"] for c in ("blue", "green")}
        self.ids: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        self.colours: dict[str, str] = {}
        self.broken: set[str] = set()  # slots whose instance stops right after launch (never healthy)
        self.volume_id: str | None = None
        self.holder: str | None = None  # the slot the data volume is attached to
        self.events: list[tuple[str, str, str]] = []  # (stop|detach|attach|start, slot, EC2 state seen then)

    def state(self, sid: str) -> str:
        """The EC2 state moto reports for the slot's instance."""
        reply = self.ec2.describe_instances(InstanceIds=[self.ids[sid]])
        return str(reply["Reservations"][0]["Instances"][0]["State"]["Name"])

    def render(self, config: dict[str, str]) -> dict[str, Any]:
        fleet = Fleet.model_validate_json(config["sculpt:fleet"])
        slots = json.loads(config["sculpt:fleet"])["slots"]
        wanted = {s["id"]: s for s in slots}
        self._launch(wanted)
        holder = volume_holder(fleet)
        if holder is not None:
            self._move_volume(holder.id)
        for sid in [k for k in self.ids if k not in wanted]:
            self.elb.deregister_targets(TargetGroupArn=self.groups[self.colours[sid]],
                                        Targets=[{"Id": self.ids[sid], "Port": self.port}])
            self.ec2.terminate_instances(InstanceIds=[self.ids.pop(sid)])
        out: dict[str, Any] = {
            "weights": {c: sum(s["weight"] for s in slots if s["colour"] == c) for c in ("blue", "green")},
            "target_groups": dict(self.groups),
            "instances": {sid: {"id": self.ids[sid], "private_ip": self.ips[sid], "colour": self.colours[sid]}
                          for sid in wanted},
        }
        if holder is not None:
            out["volume"] = {"id": self.volume_id, "attached_to": holder.id, "colour": holder.colour}
        return out

    def _move_volume(self, holder: str) -> None:
        if self.volume_id is None:
            self.volume_id = self.ec2.create_volume(AvailabilityZone=self.az, Size=20, VolumeType="gp3")["VolumeId"]
        if self.holder != holder:
            old = self.holder
            if old is not None and old in self.ids:
                self.ec2.stop_instances(InstanceIds=[self.ids[old]])
                self.events.append(("stop", old, self.state(old)))
                self.events.append(("detach", old, self.state(old)))
                self.ec2.detach_volume(VolumeId=self.volume_id, InstanceId=self.ids[old], Device="/dev/sdf")
            self.ec2.attach_volume(VolumeId=self.volume_id, InstanceId=self.ids[holder], Device="/dev/sdf")
            self.events.append(("attach", holder, self.state(holder)))
            self.holder = holder
        if self.state(holder) == "stopped":
            self.ec2.start_instances(InstanceIds=[self.ids[holder]])
            self.events.append(("start", holder, self.state(holder)))

    def _launch(self, wanted: dict[str, Any]) -> None:
        for sid, s in wanted.items():
            if sid in self.ids:
                continue
            inst = self.ec2.run_instances(ImageId=self.image, MinCount=1, MaxCount=1, InstanceType=s["shape"],
                                          SubnetId=self.subnet)["Instances"][0]
            self.ids[sid], self.ips[sid], self.colours[sid] = inst["InstanceId"], inst["PrivateIpAddress"], s["colour"]
            self.elb.register_targets(TargetGroupArn=self.groups[s["colour"]],
                                      Targets=[{"Id": inst["InstanceId"], "Port": self.port}])
            if sid in self.broken:
                self.ec2.stop_instances(InstanceIds=[inst["InstanceId"]])
