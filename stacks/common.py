"""What the AWS and GCP programs share: weights per colour, tags, the volume holder, resource creation.

Kept free of cloud SDK imports so the rules about rendering a ``Fleet`` (how weights are scaled, which
instance holds the data volume, which tags every resource carries) are plain functions with plain tests.
Resources are created through a ``Make`` callable so tests can record the resource options, which the
Pulumi mocks do not show.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from sculpt.domain.errors import ConfigError
from sculpt.domain.fleet import Colour, Fleet, Slot

COLOURS: tuple[Colour, ...] = ("blue", "green")

Make = Callable[..., Any]
"""``make(resource_class, name, *, opts=None, **props)`` -> the resource."""


def create(cls: Any, name: str, *, opts: Any = None, **props: Any) -> Any:
    """The default ``Make``: construct the resource."""
    return cls(name, opts=opts, **props)


def colour_weights(fleet: Fleet) -> dict[Colour, int]:
    """Total traffic weight of each colour that has slots (blue first)."""
    out: dict[Colour, int] = {}
    for colour in COLOURS:
        slots = slots_of(fleet, colour)
        if slots:
            out[colour] = sum(s.weight for s in slots)
    return out


def scaled(weights: Mapping[Colour, int], top: int) -> dict[Colour, int]:
    """Scale weights so none exceeds ``top`` (ALB: 999, GCP URL maps: 1000), keeping their ratio.

    A colour with a non-zero weight never rounds down to zero.

    >>> scaled({"blue": 2000, "green": 1}, 999)
    {'blue': 999, 'green': 1}
    >>> scaled({"blue": 100, "green": 0}, 999)
    {'blue': 100, 'green': 0}
    """
    biggest = max(weights.values(), default=0)
    if biggest <= top:
        return dict(weights)
    return {c: (max(1, round(w * top / biggest)) if w > 0 else 0) for c, w in weights.items()}


def slots_of(fleet: Fleet, colour: Colour) -> list[Slot]:
    return sorted((s for s in fleet.slots if s.colour == colour), key=lambda s: s.id)


def shapes_of(fleet: Fleet, colour: Colour) -> list[str]:
    return sorted({s.shape for s in slots_of(fleet, colour)})


def volume_holder(fleet: Fleet) -> Slot | None:
    """The slot the data volume is attached to (``state_sync.strategy: volume``), else ``None``.

    The volume follows traffic: it sits on the first slot of the colour with the larger total weight, so
    the migration step that shifts the weights to green also moves the volume to green. On a tie the
    volume stays on blue (the colour a blue/green morph starts from).
    """
    if fleet.spec.app.state_sync.strategy != "volume" or not fleet.slots:
        return None
    weights = colour_weights(fleet)
    colour = max(weights, key=lambda c: (weights[c], c == "blue"))
    return slots_of(fleet, colour)[0]


def tags(fleet: Fleet, *, colour: str | None = None, version: int | None = None,
         slot: str | None = None) -> dict[str, str]:
    """The user's tags plus sculpt's own (``sculpt:fleet``, ``sculpt:colour``, ``sculpt:version``)."""
    out = dict(fleet.spec.tags)
    out["sculpt:fleet"] = fleet.name
    if colour is not None:
        out["sculpt:colour"] = colour
    if version is not None:
        out["sculpt:version"] = str(version)
    if slot is not None:
        out["sculpt:slot"] = slot
        out["Name"] = slot
    return out


def gcp_labels(tag_map: Mapping[str, str]) -> dict[str, str]:
    """GCP labels allow only lowercase letters, digits, ``-`` and ``_``: ``sculpt:fleet`` -> ``sculpt-fleet``."""

    def clean(text: str) -> str:
        return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]

    return {clean(k): clean(v) for k, v in tag_map.items() if k != "Name"}


def app_argv(fleet: Fleet, data_dir: str = "/data") -> list[str]:
    """The application's command line on a cloud instance (the demo app when none is given)."""
    port = str(fleet.spec.app.port)
    cmd = fleet.spec.app.command or ["python3", "-m", "sculpt.demoapp", "--port", "{port}", "--data-dir", "{data_dir}"]
    return [a.replace("{port}", port).replace("{data_dir}", data_dir) for a in cmd]


def startup_script(fleet: Fleet, *, mount_device: str | None = None) -> str:
    """A boot script: mount the data volume when asked, then run the app as a systemd service."""
    env = "".join(f"Environment={shlex.quote(f'{k}={v}')}\n" for k, v in sorted(fleet.spec.app.env.items()))
    mount = ""
    if mount_device:
        mount = (
            "mkdir -p /data\n"
            f"for i in $(seq 60); do [ -e {mount_device} ] && break; sleep 2; done\n"
            f"blkid {mount_device} || mkfs -t ext4 {mount_device}\n"
            f"mount {mount_device} /data || true\n"
        )
    return (
        "#!/bin/bash\nset -eu\n" + mount +
        "cat > /etc/systemd/system/sculpt-app.service <<'UNIT'\n[Unit]\nDescription=sculpt application\n"
        f"[Service]\nExecStart={shlex.join(app_argv(fleet))}\n{env}Restart=always\n"
        "[Install]\nWantedBy=multi-user.target\nUNIT\n"
        "systemctl daemon-reload\nsystemctl enable --now sculpt-app.service\n"
    )


def lb_port(fleet: Fleet) -> int:
    """Port of the cloud load balancer's listener (``lb.port``; 0, the local 'pick one', means 80)."""
    return fleet.spec.lb.port or 80


def check_renderable(fleet: Fleet) -> None:
    """Refuse fleets the cloud programs cannot render, with the fix (called before Pulumi runs)."""
    if fleet.spec.provider not in ("aws", "gcp"):
        raise ConfigError(f"the Pulumi stacks render aws or gcp fleets, not '{fleet.spec.provider}'",
                          "set provider: aws or provider: gcp (or engine: local)")
    regions = sorted({s.region for s in fleet.slots} - {fleet.spec.region})
    if regions:
        raise ConfigError(
            f"fleet '{fleet.name}' has slots in {', '.join(regions)}, outside its load balancer's region "
            f"{fleet.spec.region}; cross-region blue/green on {fleet.spec.provider} is not built yet",
            f"keep regions: [{fleet.spec.region}] for engine: pulumi, or change region in sculpt.yaml",
        )
    if fleet.spec.provider == "gcp" and fleet.spec.app.state_sync.strategy == "volume":
        raise ConfigError("state_sync 'volume' is not built for GCP managed instance groups",
                          "use state_sync.strategy: http (checkpoint/restore endpoints) on GCP")
