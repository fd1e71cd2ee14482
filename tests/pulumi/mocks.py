"""Pulumi mocks for the stack programs, and a recorder of resource options (the mocks do not see them).

Imported only by tests that need the aws/gcp extras (they ``importorskip`` pulumi first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi


def _import_cloud_sdks() -> None:
    """Import pulumi-aws/gcp once, here, ignoring only the DeprecationWarnings their modules emit on import
    (pulumi-aws declares deprecated resource classes at module level; sculpt uses none of them)."""
    import importlib
    import warnings

    for name in ("pulumi_aws", "pulumi_aws.ec2", "pulumi_aws.lb", "pulumi_aws.ebs", "pulumi_gcp",
                 "pulumi_gcp.compute"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_(aws|gcp)\..*")
            try:
                getattr(importlib.import_module(name), "_utilities", None)  # lazy modules load on access
            except ImportError:
                pass


_import_cloud_sdks()

class CloudMocks(pulumi.runtime.Mocks):
    """Pulumi's mock monitor: records every resource and answers the lookups the programs make."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        state = dict(args.inputs)
        state.setdefault("arn", f"arn:aws:mock:{args.name}")
        if args.typ == "aws:ec2/instance:Instance":
            state["privateIp"] = f"10.0.0.{len(self.resources)}"
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state["dnsName"] = f"{args.name}.elb.example"
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        if args.typ == "gcp:compute/globalForwardingRule:GlobalForwardingRule":
            state["ipAddress"] = "203.0.113.10"
        if args.typ == "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
            state["instanceGroup"] = f"https://compute.example/groups/{args.name}"
        if args.typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            state["selfLinkUnique"] = f"https://compute.example/templates/{args.name}?uid=1"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]] | dict[str, Any]:
        self.calls.append(args.token)
        if args.token == "aws:ec2/getVpc:getVpc":
            return {"id": "vpc-default"}
        if args.token == "aws:ec2/getSubnets:getSubnets":
            return {"id": "x", "ids": ["subnet-a", "subnet-b"]}
        if args.token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args.args.get("id"), "availabilityZone": "us-east-1a"}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-123", "imageId": "ami-123"}
        return {}

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        (found,) = [r for r in self.resources if r.name == name]
        return found


@dataclass
class OptionsRecorder:
    """A ``stacks.common.Make`` that creates the resource and keeps its options (mocks do not see them)."""

    opts: dict[str, Any] = field(default_factory=dict)

    def __call__(self, cls: Any, name: str, *, opts: Any = None, **props: Any) -> Any:
        self.opts[name] = opts
        return cls(name, opts=opts, **props)
