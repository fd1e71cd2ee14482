"""Slot ids to EC2 instance ids, so CloudWatch (keyed by ``InstanceId``) can answer for slots.

Why it exists: sculpt names instances by slot (``web-0``), CloudWatch by EC2 instance id (``i-0abc...``).
The AWS stack program exports, per slot, its instance id and private IP (``instances`` output, see
``stacks/aws.py``); :func:`ec2_targets` reads that output, and :class:`SlotCloudWatchSource` wraps a
``CloudWatchSource`` so the sculptor asks by slot id and gets samples keyed by slot id, with
``CPUUtilization`` (percent of the instance) turned into ``cpu_cores`` with the slot shape's vCPUs.

A slot the outputs do not name yet (an update in flight) maps to an empty list: the loop holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sculpt.metrics.base import MetricPoint, MetricSource


@dataclass(frozen=True)
class Ec2Target:
    """One slot's EC2 instance, as the stack outputs name it."""

    slot_id: str
    instance_id: str
    private_ip: str | None = None
    colour: str | None = None


def ec2_targets(outputs: Mapping[str, Any]) -> dict[str, Ec2Target]:
    """The ``instances`` stack output (``{slot: {id, private_ip, colour}}``) by slot id.

    >>> ec2_targets({"instances": {"web-0": {"id": "i-1", "private_ip": "10.0.0.5", "colour": "blue"}}})
    {'web-0': Ec2Target(slot_id='web-0', instance_id='i-1', private_ip='10.0.0.5', colour='blue')}
    >>> ec2_targets({})
    {}
    """
    out: dict[str, Ec2Target] = {}
    for slot, row in dict(outputs.get("instances") or {}).items():
        if not isinstance(row, Mapping) or not row.get("id"):
            continue
        ip = row.get("private_ip")
        out[str(slot)] = Ec2Target(str(slot), str(row["id"]), str(ip) if ip else None,
                                   str(row["colour"]) if row.get("colour") else None)
    return out


@dataclass(frozen=True)
class SlotTarget:
    """What reading one slot needs: its instance id, and its shape's vCPUs (``None``: unknown shape)."""

    instance_id: str
    vcpus: float | None = None


class SlotCloudWatchSource:
    """A ``MetricSource`` by slot id over one by EC2 instance id (``CloudWatchSource``).

    ``resolve`` is asked once per ``read`` (ids change with every blue/green step).
    """

    def __init__(self, source: MetricSource, resolve: Callable[[], Mapping[str, SlotTarget]]) -> None:
        self.source = source
        self.resolve = resolve

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        targets = self.resolve()
        known = [s for s in instances if s in targets]
        by_id = self.source.read([targets[s].instance_id for s in known], start, end, step) if known else {}
        out: dict[str, list[MetricPoint]] = {}
        for slot in instances:
            t = targets.get(slot)
            samples = by_id.get(t.instance_id, []) if t is not None else []
            out[slot] = [with_cores(s, t.vcpus if t is not None else None) for s in samples]
        return out


def with_cores(sample: MetricPoint, vcpus: float | None) -> MetricPoint:
    """Add ``cpu_cores`` (``cpu_pct`` / 100 x vCPUs) when the shape is known.

    >>> with_cores(MetricPoint(0.0, {"cpu_pct": 50.0}), 4).values["cpu_cores"]
    2.0
    """
    pct = sample.values.get("cpu_pct")
    if pct is None or vcpus is None:
        return sample
    return MetricPoint(sample.time, {**sample.values, "cpu_cores": float(pct) / 100.0 * float(vcpus)})
