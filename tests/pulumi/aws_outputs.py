"""What the AWS program's outputs look like after an update, rendered from the config the update applied.

The ``pulumi`` CLI double does not run the program (the real CLI does, through the SDK's language server),
so tests give it this function as ``render``: it answers ``stack output`` the way the program's
``pulumi.export``s would (``stacks/aws.py``: ``instances``, ``target_groups``, ``weights``), with
deterministic EC2 ids per slot.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

TARGET_GROUPS = {"blue": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-blue/1",
                 "green": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/2"}


def instance_id(slot: str) -> str:
    return f"i-{zlib.crc32(slot.encode()):017x}"


def render_aws(config: dict[str, str]) -> dict[str, Any]:
    fleet = json.loads(config["sculpt:fleet"])
    slots = fleet["slots"]
    weights = {c: sum(s["weight"] for s in slots if s["colour"] == c) for c in ("blue", "green")}
    return {
        "url": "http://web-alb.elb.example:80",
        "weights": weights,
        "target_groups": dict(TARGET_GROUPS),
        "instances": {s["id"]: {"id": instance_id(s["id"]), "private_ip": f"10.0.0.{10 + i}", "colour": s["colour"]}
                      for i, s in enumerate(slots)},
    }
