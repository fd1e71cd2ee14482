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


DATA_MOUNT_SCRIPT = "/usr/local/sbin/sculpt-data-mount"


def data_device_paths(volume_id: str, device: str) -> list[str]:
    """Where an attached EBS volume shows up, most specific first.

    On Nitro instances a volume attached as ``/dev/sdf`` is an NVMe device (``/dev/nvme1n1``), found by
    its volume id (without the dash) under ``/dev/disk/by-id``; on Xen instances it is ``/dev/xvdf``.

    >>> data_device_paths("vol-0abc", "/dev/sdf")
    ['/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc', '/dev/sdf', '/dev/xvdf']
    """
    paths = [f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}", device]
    if device.startswith("/dev/sd"):
        paths.append("/dev/xvd" + device[len("/dev/sd"):])
    return paths


def _data_mount(volume_id: str, device: str) -> str:
    """A script that waits for the data volume without a time bound, formats it only when it holds no
    filesystem at all, and mounts it at /data. Any failure is retried rather than given up: an instance
    never serves without its data, and never gives up waiting for it."""
    paths = " ".join(shlex.quote(p) for p in data_device_paths(volume_id, device))
    return (
        "#!/bin/bash\n"
        "# sculpt: wait for the data volume (no time bound), then mount it at /data.\n"
        "set -u\n"
        "mkdir -p /data\n"
        "while ! mountpoint -q /data; do\n"
        "  dev=''\n"
        f"  for p in {paths}; do\n"
        "    if [ -b \"$p\" ]; then dev=$(readlink -f \"$p\"); break; fi\n"
        "  done\n"
        "  if [ -z \"$dev\" ]; then sleep 2; continue; fi\n"
        "  blkid -p \"$dev\" >/dev/null 2>&1; probe=$?\n"
        "  # blkid exits 2 only when it found no filesystem signature: a new, empty volume\n"
        "  if [ \"$probe\" -eq 2 ]; then mkfs -t ext4 -q \"$dev\" || { sleep 2; continue; }\n"
        "  elif [ \"$probe\" -ne 0 ]; then sleep 2; continue; fi\n"
        "  mount -o noatime \"$dev\" /data || sleep 2\n"
        "done\n"
    )


def startup_script(fleet: Fleet, *, data_volume: str | None = None, device: str = "/dev/sdf") -> str:
    """A boot script that runs the app as a systemd service (``sculpt-app``).

    With ``data_volume`` (an EBS volume id) the app's unit requires and follows ``sculpt-data``, a oneshot
    unit that waits for the volume without a time bound and mounts it at /data: an instance that does not
    hold the volume boots, waits, and never starts the app (the load balancer never sees it healthy). The
    units are enabled, so a stopped instance that is started again (a rollback gives blue its volume back)
    waits and mounts the same way; stopping the instance stops the app, then unmounts /data cleanly. The
    app is started without blocking, so the boot script itself never waits for the volume.
    """
    env = "".join(f"Environment={shlex.quote(f'{k}={v}')}\n" for k, v in sorted(fleet.spec.app.env.items()))
    unit = ("[Unit]\nDescription=sculpt application\n"
            + ("Requires=sculpt-data.service\nAfter=sculpt-data.service\n" if data_volume else "")
            + f"[Service]\nExecStart={shlex.join(app_argv(fleet))}\n{env}Restart=always\n"
            "[Install]\nWantedBy=multi-user.target\n")
    out = "#!/bin/bash\nset -eu\n"
    if data_volume:
        out += (
            f"cat > {DATA_MOUNT_SCRIPT} <<'SCRIPT'\n{_data_mount(data_volume, device)}SCRIPT\n"
            f"chmod 0755 {DATA_MOUNT_SCRIPT}\n"
            "cat > /etc/systemd/system/sculpt-data.service <<'UNIT'\n[Unit]\n"
            "Description=sculpt data volume at /data (waits for it without a time bound)\n"
            f"[Service]\nType=oneshot\nRemainAfterExit=yes\nTimeoutStartSec=infinity\nExecStart={DATA_MOUNT_SCRIPT}\n"
            "ExecStop=/bin/umount /data\nUNIT\n"
        )
    out += f"cat > /etc/systemd/system/sculpt-app.service <<'UNIT'\n{unit}UNIT\nsystemctl daemon-reload\n"
    if data_volume:
        return out + "systemctl enable sculpt-app.service\nsystemctl start --no-block sculpt-app.service\n"
    return out + "systemctl enable --now sculpt-app.service\n"


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
    serving = [s for s in fleet.slots if s.weight > 0]
    if fleet.spec.app.state_sync.strategy == "volume" and len(serving) > 1:
        raise ConfigError(
            f"fleet '{fleet.name}' has {len(serving)} serving replicas but one data volume, which attaches to one "
            "instance at a time: the others would wait for it forever",
            "set replicas.desired: 1 for state_sync.strategy: volume, or use http to sync between replicas")
