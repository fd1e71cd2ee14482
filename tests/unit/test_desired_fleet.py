"""`sculpt up` merges the spec into the running fleet instead of undoing what morphs chose."""

from __future__ import annotations

from sculpt.app.wiring import desired_fleet
from sculpt.domain import Fleet, Slot
from sculpt.domain.spec import parse_spec

BASE = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a",
        "replicas": {"min": 1, "max": 4, "desired": 1}}


def _morphed() -> Fleet:
    spec = parse_spec(BASE)
    return Fleet(spec=spec, slots=(Slot(id="web-1", shape="std-1c-1024m", region="local-b"),))


def test_unchanged_spec_keeps_the_morphed_slots() -> None:
    out = desired_fleet(parse_spec(BASE), _morphed())
    assert [(s.id, s.shape, s.region) for s in out.slots] == [("web-1", "std-1c-1024m", "local-b")]


def test_changed_shape_in_spec_wins_and_keeps_slot_ids() -> None:
    out = desired_fleet(parse_spec({**BASE, "shape": "std-2c-2048m"}), _morphed())
    assert [(s.id, s.shape, s.region) for s in out.slots] == [("web-1", "std-2c-2048m", "local-a")]


def test_replica_changes_add_new_ids_with_the_running_shape_and_drop_leftovers() -> None:
    current = _morphed().with_slots([
        Slot(id="web-1", shape="std-1c-1024m", region="local-b"),
        Slot(id="web-2", shape="std-0.5c-512m", region="local-a", colour="green", weight=0),
    ])
    out = desired_fleet(parse_spec({**BASE, "replicas": {"min": 1, "max": 4, "desired": 3}}), current)
    assert [s.id for s in out.slots] == ["web-1", "web-0", "web-3"]
    assert {s.shape for s in out.slots} == {"std-1c-1024m"}
    assert all(s.weight == 100 and s.colour == "blue" for s in out.slots)
    shrunk = desired_fleet(parse_spec({**BASE, "replicas": {"min": 1, "max": 4, "desired": 1}}), out)
    assert [s.id for s in shrunk.slots] == ["web-1"]
