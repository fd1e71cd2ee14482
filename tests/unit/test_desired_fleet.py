"""`sculpt up` merges the spec into the running fleet instead of undoing what morphs chose (issue 11, case 8).

The spec file is compared with the spec of the last succeeded ``up`` — not with the spec a morph rewrote —
field by field (shape, region, replicas, app); a new slot id never reuses one any version used. The
history is written to a real ledger the way the engine writes it (versions of kind up/morph/rollback with
their steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sculpt.app.wiring import Wiring, desired_fleet, ids_ever_used, last_up_spec
from sculpt.catalog import load_catalog
from sculpt.domain import Fleet, Slot
from sculpt.domain.spec import FleetSpec, parse_spec
from sculpt.engine.base import diff_fleets, replacements
from sculpt.ledger import Ledger

BASE: dict[str, Any] = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", "regions": ["local-b"],
                        "replicas": {"min": 1, "max": 4, "desired": 1}}


def _morphed() -> Fleet:
    spec = parse_spec(BASE)
    return Fleet(spec=spec, slots=(Slot(id="web-1", shape="std-1c-1024m", region="local-b"),))


def test_unchanged_spec_keeps_the_morphed_slots() -> None:
    out = desired_fleet(parse_spec(BASE), _morphed())
    assert [(s.id, s.shape, s.region) for s in out.slots] == [("web-1", "std-1c-1024m", "local-b")]


def test_a_changed_shape_wins_field_by_field_and_keeps_slot_ids() -> None:
    out = desired_fleet(parse_spec({**BASE, "shape": "std-2c-2048m"}), _morphed())
    # the shape the user changed wins; the region they did not change stays where the morph took it
    assert [(s.id, s.shape, s.region) for s in out.slots] == [("web-1", "std-2c-2048m", "local-b")]
    moved = desired_fleet(parse_spec({**BASE, "region": "local-b", "regions": ["local-a"]}), _morphed())
    assert [(s.id, s.shape, s.region) for s in moved.slots] == [("web-1", "std-1c-1024m", "local-b")]


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


# -- through the ledger, as `sculpt up` sees it ----------------------------------------------------------------
class History:
    """Writes versions the way the engine does: a pending version, its steps, then its result."""

    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path)

    def version(self, kind: str, spec: FleetSpec, slots: list[Slot], *, result: str = "succeeded",
                steps: list[list[Slot]] | None = None) -> int:
        js = spec.model_dump(mode="json")
        record = {"slots": [s.model_dump(mode="json") for s in slots]}
        n = self.ledger.append_version("web", spec=js, fleet=record, result="pending", message=kind, kind=kind)
        for i, step in enumerate(steps or [slots]):
            self.ledger.add_step("web", n, spec=js, fleet={"slots": [s.model_dump(mode="json") for s in step]},
                                 message=f"step {i + 1}", result="succeeded" if result == "succeeded" else "failed")
        self.ledger.update_version("web", n, result=result)
        return n

    def wiring(self, spec: FleetSpec) -> Wiring:
        return Wiring("web", self.ledger.path.parent, self.ledger, load_catalog("local"), None, spec, None)


@pytest.fixture
def history(tmp_path: Path) -> History:
    h = History(tmp_path / "ledger.db")
    yield h
    h.ledger.close()


def _slot(sid: str, shape: str = "std-0.5c-512m", region: str = "local-a") -> Slot:
    return Slot(id=sid, shape=shape, region=region)


def _up_then_blue_green_morph(history: History) -> FleetSpec:
    """`sculpt up` (web-0 on std-0.5c-512m), then `sculpt morph --shape std-1c-1024m --strategy blue-green`
    (green web-1 added, shifted, blue retired); the morph's version carries the spec it rewrote."""
    spec = parse_spec(BASE)
    history.version("up", spec, [_slot("web-0")])
    big = _slot("web-1", "std-1c-1024m")
    green = big.model_copy(update={"colour": "green", "weight": 0})
    history.version("morph", spec.with_changes(shape="std-1c-1024m"), [big],
                    steps=[[_slot("web-0"), green], [_slot("web-0").model_copy(update={"weight": 0}),
                                                     big.model_copy(update={"colour": "green"})], [big]])
    return spec


def test_up_with_an_unchanged_spec_after_a_morph_keeps_the_morph_and_says_so(history: History) -> None:
    spec = _up_then_blue_green_morph(history)
    w = history.wiring(spec)
    fleet = w.fleet()
    assert [(s.id, s.shape, s.region) for s in fleet.slots] == [("web-1", "std-1c-1024m", "local-a")]
    assert fleet.spec.shape == "std-0.5c-512m"  # the file's word, for the next `up` to compare with
    got = history.ledger.applied("web")
    current = Fleet(spec=parse_spec(got[1]), slots=tuple(Slot.model_validate(s) for s in got[2]["slots"]))
    diff = diff_fleets(current, fleet, live_resize=True)
    assert diff.empty and diff.summary == {"same": 1}
    assert [c.kept for c in diff.kept] == ["keeps morph-chosen std-1c-1024m"]
    assert str(diff) == "no changes\n= web-1: keeps morph-chosen std-1c-1024m"
    assert diff.to_json()["kept"] == [{"slot": "web-1", "shape": "std-1c-1024m", "region": "local-a",
                                       "note": "keeps morph-chosen std-1c-1024m"}]
    assert diff.replacements == {}
    # and the same after that `up` is recorded: a second unchanged `up` still keeps it
    history.version("up", fleet.spec, list(fleet.slots))
    again = history.wiring(spec).fleet()
    assert [(s.id, s.shape) for s in again.slots] == [("web-1", "std-1c-1024m")]


def test_a_shape_the_user_changed_since_the_last_up_wins(history: History) -> None:
    _up_then_blue_green_morph(history)
    spec = parse_spec({**BASE, "shape": "std-2c-2048m"})
    fleet = history.wiring(spec).fleet()
    assert [(s.id, s.shape) for s in fleet.slots] == [("web-1", "std-2c-2048m")]


def test_a_failed_up_is_not_the_base_so_a_retry_still_applies_the_change(history: History) -> None:
    spec = parse_spec(BASE)
    history.version("up", spec, [_slot("web-0")])
    changed = parse_spec({**BASE, "shape": "std-1c-1024m"})
    history.version("up", changed, [_slot("web-0", "std-1c-1024m")], result="failed")
    assert last_up_spec(history.ledger, "web") == spec
    fleet = history.wiring(changed).fleet()
    assert [(s.id, s.shape) for s in fleet.slots] == [("web-0", "std-1c-1024m")]


def test_an_env_change_wins_and_needs_a_blue_green_replacement(history: History) -> None:
    spec = _up_then_blue_green_morph(history)
    changed = spec.with_changes(app={"env": {"MODE": "fast"}})
    fleet = history.wiring(changed).fleet()
    assert fleet.spec.app.env == {"MODE": "fast"}
    assert [(s.id, s.shape) for s in fleet.slots] == [("web-1", "std-1c-1024m")]  # the shape is kept
    got = history.ledger.applied("web")
    current = Fleet(spec=parse_spec(got[1]), slots=tuple(Slot.model_validate(s) for s in got[2]["slots"]))
    assert replacements(current, fleet, live_resize=True) == {"web-1": "app.env changed"}
    diff = diff_fleets(current, fleet, live_resize=True)
    assert diff.summary == {"replace": 1} and diff.replacements == {"web-1": "app.env changed"}
    assert str(diff).splitlines()[0] == ("+- web-1: replace (blue/green: app.env changed); "
                                         "keeps morph-chosen std-1c-1024m")


def test_an_unchanged_app_keeps_what_a_rollback_restored(history: History) -> None:
    old = parse_spec({**BASE, "app": {"env": {"MODE": "slow"}}})
    history.version("up", old, [_slot("web-0")])
    new = old.with_changes(app={"env": {"MODE": "fast"}})
    history.version("up", new, [_slot("web-1")])
    history.version("rollback", old, [_slot("web-2")])  # a rollback is a morph to version 1's fleet
    fleet = history.wiring(new).fleet()  # the file still says what the last `up` applied
    assert fleet.spec.app.env == {"MODE": "slow"} and [s.id for s in fleet.slots] == ["web-2"]


def test_replicas_the_user_did_not_change_stay_as_sculpt_scaled_them(history: History) -> None:
    spec = parse_spec(BASE)
    history.version("up", spec, [_slot("web-0")])
    history.version("morph", spec, [_slot("web-0"), _slot("web-1")])  # scaled out to 2
    fleet = history.wiring(spec).fleet()
    assert [s.id for s in fleet.slots] == ["web-0", "web-1"]


def test_new_slot_ids_never_reuse_an_id_any_version_used(history: History) -> None:
    spec = _up_then_blue_green_morph(history)  # web-0 retired, web-1 serves
    # a morph that failed after adding green web-2 (only its steps name it), rolled back to web-1
    history.version("morph", spec.with_changes(shape="std-2c-2048m"), [_slot("web-1", "std-1c-1024m")],
                    steps=[[_slot("web-1", "std-1c-1024m"), _slot("web-2", "std-2c-2048m")]], result="failed")
    assert ids_ever_used(history.ledger, "web") == {"web-0", "web-1", "web-2"}
    more = parse_spec({**BASE, "replicas": {"min": 1, "max": 4, "desired": 3}})
    fleet = history.wiring(more).fleet()
    assert [(s.id, s.shape) for s in fleet.slots] == [("web-1", "std-1c-1024m"), ("web-3", "std-1c-1024m"),
                                                      ("web-4", "std-1c-1024m")]
    # after `sculpt down` the next `up` starts fresh, still on new ids (the old ones' data dirs are theirs)
    history.version("down", spec, [])
    fresh = history.wiring(spec).fleet()
    assert [(s.id, s.shape) for s in fresh.slots] == [("web-3", "std-0.5c-512m")]


def test_a_new_stack_gets_the_spec_fleet(history: History) -> None:
    spec = parse_spec({**BASE, "replicas": {"min": 1, "max": 4, "desired": 2}})
    assert history.wiring(spec).fleet() == Fleet.from_spec(spec)


def test_replacements_name_each_reason_and_skip_new_and_removed_slots() -> None:
    spec = parse_spec({**BASE, "replicas": {"min": 1, "max": 4, "desired": 2}})
    cur = Fleet.from_spec(spec)
    assert replacements(None, cur, live_resize=False) == {}
    assert replacements(cur, cur, live_resize=False) == {}
    moved = cur.with_slots([cur.slots[0].model_copy(update={"region": "local-b"}),
                            cur.slots[1].model_copy(update={"shape": "std-1c-1024m"}), _slot("web-5")])
    assert replacements(cur, moved, live_resize=True) == {"web-0": "region changed"}
    assert replacements(cur, moved, live_resize=False) == {"web-0": "region changed",
                                                           "web-1": "shape changed without live resize"}
    app = Fleet(spec=spec.with_changes(app={"command": ["myapp", "--port={port}"], "health_path": "/up"}),
                slots=cur.slots[:1])
    assert replacements(cur, app, live_resize=True) == {"web-0": "app.command changed, app.health_path changed"}
    # a live resize is an update, not a replacement
    diff = diff_fleets(cur, moved, live_resize=True)
    assert [(c.slot_id, c.op) for c in diff.changes] == [("web-0", "replace"), ("web-1", "update"),
                                                         ("web-5", "create")]
    assert "+- web-0: region: local-a -> local-b; replace (blue/green: region changed)" in str(diff)
