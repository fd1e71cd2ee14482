"""Pure pieces of the migration package: states, faults, ids, key ranges, checkpoints."""

from __future__ import annotations

import pytest

from sculpt.domain.errors import ConfigError
from sculpt.domain.ring import owner_of
from sculpt.migrate.faults import hits, parse_faults
from sculpt.migrate.orchestrator import next_slot_ids, with_spec_of
from sculpt.migrate.port import Checkpoint
from sculpt.migrate.states import BLUE_GREEN_STEPS, State, can_follow, committed, parse_state
from sculpt.migrate.sync import StateHandover, moving_keys


def test_blue_green_steps_form_a_legal_chain_and_rollback_follows_any_of_them() -> None:
    prev = State.PLAN
    for s in BLUE_GREEN_STEPS:
        assert can_follow(s, prev), (prev, s)
        assert can_follow(State.ROLLBACK, s)
        prev = s
    assert can_follow(State.DONE, prev)
    assert not can_follow(State.SHIFT, State.SYNC_STATE)  # no shift without the final delta
    assert not can_follow(State.ROLLBACK, State.DONE)
    assert can_follow(State.ROLLED_BACK, State.ROLLBACK)


def test_the_shift_and_every_state_after_it_count_as_committed() -> None:
    assert [s for s in BLUE_GREEN_STEPS if committed(s)] == [State.SHIFT, State.RESUME, State.DRAIN_BLUE,
                                                              State.RETIRE_BLUE]


def test_fault_specs_parse_with_states_numbers_and_lists() -> None:
    f = parse_faults("green-unhealthy,crash-at:sync-state, step-timeout:3,crash-before:shift")
    assert f.green_unhealthy and not f.restore_fails
    assert (f.crash_at, f.timeout_at, f.crash_before) == ("SYNC_STATE", "#3", "SHIFT")
    assert hits(f.timeout_at, State.SYNC_STATE, 3) and not hits(f.timeout_at, State.SYNC_STATE, 2)
    assert hits(f.crash_at, State.SYNC_STATE, 9)
    assert parse_faults("step-timeout").timeout_at == "SYNC_STATE"
    assert parse_state("pause") is State.PAUSE_FINAL_DELTA
    assert str(parse_faults("shift-fails,crash-at:2")) == "shift-fails,crash-at:2"


@pytest.mark.parametrize("bad", ["explode", "crash-at", "crash-at:NOWHERE", "step-timeout:0"])
def test_bad_fault_specs_are_one_line_config_errors_with_a_fix(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_faults(bad)
    assert "To fix:" in str(e.value) and "\n" not in str(e.value)


def test_new_slot_ids_never_reuse_an_id_from_history() -> None:
    assert next_slot_ids("web", ["web-0"], 1) == ["web-1"]
    assert next_slot_ids("web", ["web-2", "web-10", "api-99"], 2) == ["web-11", "web-12"]
    assert next_slot_ids("api", [], 1) == ["api-0"]


def test_only_keys_whose_owner_changes_move_and_each_goes_to_its_new_owner() -> None:
    keys = [f"k{i}" for i in range(400)]
    before = (("a", 100), ("b", 100), ("c", 100))
    after = (("g", 100), ("b", 100), ("c", 100))
    own = lambda k, ring: owner_of(k, ring)  # noqa: E731 - the load balancer's ring
    moved_from_a = moving_keys(keys, "a", before, after, own)
    owned_by_a = {k for k in keys if own(k, before) == "a"}
    assert set().union(*moved_from_a.values()) == owned_by_a  # a leaves the ring: all its keys move
    for dest, ks in moved_from_a.items():
        assert all(own(k, after) == dest for k in ks)
    moved_from_b = moving_keys(keys, "b", before, after, own)
    # consistent hashing: b loses only keys that land on the newcomer's points, never keys to c
    assert set(moved_from_b) <= {"g"}
    assert all(own(k, before) == "b" and own(k, after) == "g" for k in moved_from_b.get("g", ()))
    stay = [k for k in keys if own(k, before) == own(k, after)]
    assert stay and all(not any(k in ks for ks in moving_keys([k], own(k, before), before, after, own).values())
                        for k in stay)


def test_checkpoints_and_handovers_round_trip_through_json() -> None:
    cp = Checkpoint.from_json({"seq": 7, "items": {"a": "1", "b": "2"}, "deleted": ["c"]})
    assert cp.only({"a", "c"}) == Checkpoint(7, {"a": "1"}, ("c",))
    assert Checkpoint.from_json(cp.to_json()) == cp
    h = StateHandover({"b0": "g0"}, (("b0", 100), ("b1", 50)), (("g0", 100), ("b1", 50)), True, {"b0": 3})
    assert StateHandover.from_json(h.to_json()) == h
    assert h.sources() == ["b0", "b1"] and h.reversed().pairs == {"g0": "b0"}


def test_a_version_whose_slots_agree_on_a_shape_carries_it_in_its_spec() -> None:
    from sculpt.domain.fleet import Fleet
    from sculpt.domain.spec import parse_spec

    f = Fleet.from_spec(parse_spec({"fleet": "web", "shape": "std-1c-1024m", "region": "local-a",
                                    "regions": ["local-b"]}))
    moved = with_spec_of(f.with_slots([f.slots[0].model_copy(update={"shape": "std-2c-2048m",
                                                                      "region": "local-b"})]))
    assert (moved.spec.shape, moved.spec.region, moved.spec.regions) == ("std-2c-2048m", "local-b", ["local-a"])
    mixed = f.with_slots([*f.slots, f.slots[0].model_copy(update={"id": "web-1", "shape": "std-2c-2048m"})])
    assert with_spec_of(mixed).spec == f.spec


def test_faults_a_strategy_never_reaches_are_named() -> None:
    from sculpt.migrate.orchestrator import unreachable_faults

    f = parse_faults("restore-fails,crash-at:SYNC_STATE,step-timeout:WAIT_HEALTHY")
    assert unreachable_faults(f, "in-place") == ["restore-fails", "crash-at:SYNC_STATE"]
    assert unreachable_faults(f, "blue-green") == []
    assert unreachable_faults(parse_faults("crash-at:RESIZE,crash-before:3"), "blue-green") == ["crash-at:RESIZE"]


def test_cli_turns_a_bad_fault_into_one_line_and_exit_1(sculpt_home: object) -> None:
    from typer.testing import CliRunner

    from sculpt.cli.main import app

    r = CliRunner().invoke(app, ["morph", "--fault", "explode", "--shape", "std-1c-1024m"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "error: unknown fault 'explode'. To fix: use one of: green-unhealthy, restore-fails, shift-fails, "
        "step-timeout, crash-at, crash-before."]


@pytest.mark.parametrize("module", ["states", "faults", "sync", "orchestrator"])
def test_the_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module(f"sculpt.migrate.{module}")
    failed, attempted = doctest.testmod(mod)
    assert attempted > 0 and failed == 0
