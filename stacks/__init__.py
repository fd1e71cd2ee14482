"""Pulumi programs for sculpt's fleets: ``build(fleet, version)`` renders any ``Fleet`` on AWS or GCP.

The ``pulumi`` engine (``sculpt.engine.pulumi_engine``) runs ``program`` inline through the Automation
API, with the desired fleet in the stack config (``sculpt:fleet``, JSON) and the ledger's version number
(``sculpt:version``). ``Pulumi.yaml`` at the repository root runs the same ``program`` through
``stacks/__main__.py``, so ``pulumi preview`` from a checkout shows the same resources.

Every blue/green step (add green at weight 0, shift weights, remove blue) is one update of this program
with a different fleet; nothing here knows about migrations.
"""

from __future__ import annotations

import json
from typing import Any

from sculpt.domain.errors import ConfigError
from sculpt.domain.fleet import Fleet
from stacks.common import Make, check_renderable, create

CONFIG_NAMESPACE = "sculpt"


def build(fleet: Fleet, version: int = 0, *, make: Make = create, **network: Any) -> dict[str, Any]:
    """Declare ``fleet``'s resources on its provider and return the stack outputs."""
    check_renderable(fleet)
    if fleet.spec.provider == "aws":
        from stacks import aws

        return aws.build(fleet, version, make=make, **network)
    from stacks import gcp

    return gcp.build(fleet, version, make=make, **network)


def fleet_from_config() -> tuple[Fleet, int]:
    """The fleet and version the stack config carries (set by the engine, or by hand for ``pulumi up``)."""
    import pulumi

    cfg = pulumi.Config(CONFIG_NAMESPACE)
    raw = cfg.get("fleet")
    if not raw:
        raise ConfigError("stack config 'sculpt:fleet' is not set",
                          "run `sculpt up` (it sets it), or `pulumi config set sculpt:fleet \"$(cat fleet.json)\"`")
    try:
        fleet = Fleet.model_validate(json.loads(raw))
    except ValueError as e:
        raise ConfigError(f"stack config 'sculpt:fleet' is not a valid fleet: {str(e).splitlines()[0]}",
                          "set it from `sculpt up` rather than by hand") from None
    return fleet, cfg.get_int("version") or 0


def program() -> None:
    """The Pulumi program: read the fleet from config, declare it, export the outputs."""
    import pulumi

    fleet, version = fleet_from_config()
    for key, value in build(fleet, version).items():
        pulumi.export(key, value)
