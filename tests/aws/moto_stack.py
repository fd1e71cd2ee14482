"""What a ``pulumi up`` of the AWS program would leave in AWS, played into moto's server (real HTTP).

The ``pulumi`` CLI double (tests/pulumi/cli_double.py) does not run the program, so tests give it
``MotoStack.render`` as its ``render``: for the fleet an update applied, it launches an EC2 instance per new
slot (of the slot's shape) and registers it in its colour's target group, deregisters and terminates the
slots that left, and answers ``stack output`` as the program's exports would (``instances``,
``target_groups``, ``weights``). The EC2 ids and the target health the code under test sees are moto's.
"""

from __future__ import annotations

import json
from typing import Any

from sculpt.metrics.cloudwatch import make_client


class MotoStack:
    def __init__(self, url: str, region: str = "us-east-1", port: int = 8080) -> None:
        self.ec2 = make_client("ec2", region, url)
        self.elb = make_client("elbv2", region, url)
        self.port = port
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.image = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.groups = {c: self.elb.create_target_group(Name=f"web-{c}-{vpc[-6:]}", Protocol="HTTP", Port=port,
                                                       VpcId=vpc, TargetType="instance")["TargetGroups"][0]
                       ["TargetGroupArn"] for c in ("blue", "green")}
        self.ids: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        self.colours: dict[str, str] = {}
        self.broken: set[str] = set()  # slots whose instance stops right after launch (never healthy)

    def render(self, config: dict[str, str]) -> dict[str, Any]:
        slots = json.loads(config["sculpt:fleet"])["slots"]
        wanted = {s["id"]: s for s in slots}
        for sid in [k for k in self.ids if k not in wanted]:
            self.elb.deregister_targets(TargetGroupArn=self.groups[self.colours[sid]],
                                        Targets=[{"Id": self.ids[sid], "Port": self.port}])
            self.ec2.terminate_instances(InstanceIds=[self.ids.pop(sid)])
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
        return {
            "weights": {c: sum(s["weight"] for s in slots if s["colour"] == c) for c in ("blue", "green")},
            "target_groups": dict(self.groups),
            "instances": {sid: {"id": self.ids[sid], "private_ip": self.ips[sid], "colour": self.colours[sid]}
                          for sid in wanted},
        }
