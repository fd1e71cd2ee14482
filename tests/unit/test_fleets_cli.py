"""``sculpt fleets``: every stack of a state directory from its ledger alone (nothing running), in-process
through typer's runner; the ledger is written by the real ``Ledger`` calls the engine and watcher make."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from sculpt.cli import fleets
from sculpt.cli.main import SculptGroup
from sculpt.cli.main import app as main_app
from sculpt.domain.fleet import Fleet
from sculpt.engine.local import fleet_record
from sculpt.ledger import Ledger
from tests.sculptor.fakes import spec as make_spec

T0 = 1_780_000_000.0


@pytest.fixture
def app() -> typer.Typer:
    """The real ``sculpt`` app once ``fleets`` is registered there; until then the same verb in a group
    that handles errors the same way."""
    if any(c.name == "fleets" for c in main_app.registered_commands):
        return main_app
    own = typer.Typer(cls=SculptGroup)
    own.command("fleets")(fleets.command)
    own.command("noop")(lambda: None)  # two commands, so typer keeps the verb's name
    return own


def invoke(app: typer.Typer, home: Path, *args: str) -> Any:
    r = CliRunner().invoke(app, ["fleets", *args], env={"SCULPT_HOME": str(home)})
    return r


def version(ledger: Ledger, stack: str, shapes: list[tuple[str, str]], message: str, when: float,
            result: str = "succeeded") -> int:
    sp = make_spec(fleet=stack, shape=shapes[0][0], replicas={"min": 1, "max": 4, "desired": len(shapes)})
    f = Fleet.from_spec(sp)
    slots = tuple(s.model_copy(update={"shape": sh, "region": rg}) for s, (sh, rg) in zip(f.slots, shapes, strict=True))
    return ledger.append_version(stack, spec=sp.model_dump(mode="json"), fleet=fleet_record(f.with_slots(slots)),
                                 result=result, message=message, when=when)


def test_lists_every_stack_with_version_shape_mix_and_last_decision(app: typer.Typer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ledger = Ledger(home / "ledger.db")
    try:
        version(ledger, "web", [("std-0.5c-512m", "local-a")], "up", T0)
        v2 = version(ledger, "web", [("std-1c-1024m", "local-a"), ("std-1c-1024m", "local-a"),
                                     ("std-2c-2048m", "local-b")], "bigger", T0 + 60)
        ledger.record_move("web", time=T0 + 120, origin="watch", slot="web-2", from_shape="std-1c-1024m",
                           from_region="local-a", to_shape="std-2c-2048m", to_region="local-b", version=v2)
        version(ledger, "api", [("std-0.25c-256m", "local-a")], "up", T0 + 10)
        version(ledger, "api", [("std-1c-1024m", "local-a")], "too big", T0 + 200, result="failed")
        ledger.acquire(fleets.watch_lock("api"), "sculpt watch")  # this process "watches" api
    finally:
        ledger.close()
    before = (home / "ledger.db").read_bytes()
    r = invoke(app, home, "--json")
    assert r.exit_code == 0, r.output
    rows = {row["stack"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"web", "api"}
    web, api = rows["web"], rows["api"]
    assert (web["version"], web["result"], web["current_version"], web["slots"]) == (2, "succeeded", 2, 3)
    assert web["shapes"] == {"std-1c-1024m@local-a": 2, "std-2c-2048m@local-b": 1}
    # the move is the newest thing that happened to web: its event (written with the move) names it
    last = web["last_decision"]
    assert (last["source"], last["kind"], last["time"]) == ("event", "move", T0 + 120)
    assert "web-2" in last["summary"] and "std-2c-2048m" in last["summary"]
    assert web["watcher_pid"] is None
    # the failed version is the latest, the fleet still runs the one before it
    assert (api["version"], api["result"], api["current_version"]) == (2, "failed", 1)
    assert api["shapes"] == {"std-0.25c-256m@local-a": 1}
    assert api["last_decision"]["source"] == "version" and "too big" in api["last_decision"]["summary"]
    assert api["watcher_pid"] == os.getpid()
    text = invoke(app, home)
    assert text.exit_code == 0
    assert "2× std-1c-1024m@local-a, 1× std-2c-2048m@local-b" in text.stdout
    assert "v2 (failed; running v1)" in text.stdout and f"pid {os.getpid()}" in text.stdout
    assert (home / "ledger.db").read_bytes() == before  # a read: nothing written


def test_the_newest_decision_event_wins_when_the_ledger_records_events(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        version(ledger, "web", [("std-0.5c-512m", "local-a")], "up", T0)
        ledger.append_event("web", "decision", "hold: the current shape is the best fit", {}, when=T0 + 30)
        (row,) = fleets.overview(ledger)
    finally:
        ledger.close()
    assert row["last_decision"] == {"summary": "hold: the current shape is the best fit", "kind": "decision",
                                    "time": T0 + 30, "source": "event"}


def test_a_move_without_its_event_still_counts(tmp_path: Path) -> None:
    """Ledgers written before the events table hold moves with no event: the move itself is read."""
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        v = version(ledger, "web", [("std-0.5c-512m", "local-a")], "up", T0)
        ledger.record_move("web", time=T0 + 50, origin="morph", slot="web-0", from_shape="std-0.5c-512m",
                           from_region="local-a", to_shape="std-1c-1024m", to_region="local-a", version=v)
        ledger._conn().execute("DELETE FROM events")
        ledger._conn().commit()
        (row,) = fleets.overview(ledger)
    finally:
        ledger.close()
    assert row["last_decision"] == {"summary": "web-0: std-0.5c-512m -> std-1c-1024m (morph)", "kind": "move",
                                    "time": T0 + 50, "source": "move"}


def test_an_empty_or_missing_state_dir_is_a_hint_and_exit_0(app: typer.Typer, tmp_path: Path) -> None:
    home = tmp_path / "nothing"
    r = invoke(app, home)
    assert r.exit_code == 0 and len(r.stdout.strip().splitlines()) == 1 and "sculpt up" in r.stdout
    assert not home.exists()  # listing does not create a state dir or a ledger
    r = invoke(app, home, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    home.mkdir()
    Ledger(home / "ledger.db").close()  # a ledger with no stack
    r = invoke(app, home)
    assert r.exit_code == 0 and "no stacks" in r.stdout


def test_a_damaged_ledger_is_one_error_line(app: typer.Typer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "ledger.db").write_bytes(b"garbage" * 100)
    r = CliRunner().invoke(app, ["fleets"], env={"SCULPT_HOME": str(home)})
    assert r.exit_code == 1
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.output


def test_the_watch_lock_name_is_the_watchers() -> None:
    from sculpt.loop.service import watch_lock

    assert fleets.watch_lock("web") == watch_lock("web")
