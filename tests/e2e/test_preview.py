"""``sculpt preview`` on a real local fleet, and ``sculpt up`` keeping what a morph chose (issue 11, case 8):
``up`` → ``morph --shape std-1c-1024m`` → ``preview`` says the slot keeps the morph-chosen shape (exit 0)
and changes nothing → ``up`` with the unchanged spec keeps it → an ``app.env`` edit previews as a
blue/green replacement (exit 3). Real agent and demo-app processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sculpt.ledger import Ledger
from tests.e2e.cli_user import Cli

pytestmark = pytest.mark.e2e


def test_preview_and_up_keep_what_a_morph_chose(cli: Cli, sculpt_home: Path) -> None:
    cli.json("up")
    assert cli.json("morph", "--shape", "std-1c-1024m")["result"] == "done"
    (before,) = cli.json("status")["instances"]
    assert before["shape"] == "std-1c-1024m"
    versions = len(cli.json("history"))

    r = cli("preview")
    assert r.stdout.splitlines() == ["web: no changes", f"= {before['id']}: keeps morph-chosen std-1c-1024m"]
    data = cli.json("preview")
    assert data["changes"] == {"same": 1} and data["replacements"] == {}
    assert [k["slot"] for k in data["kept"]] == [before["id"]]
    assert len(cli.json("history")) == versions  # preview wrote nothing

    # a CI `up` of the unchanged spec keeps the morph (it used to revert it)
    cli.json("up")
    (after,) = cli.json("status")["instances"]
    assert (after["id"], after["shape"], after["pid"]) == (before["id"], "std-1c-1024m", before["pid"])
    assert cli.json("history")[-1]["kind"] == "up"

    # an env change is a blue/green replacement that keeps the morph-chosen shape
    cli.edit("health_path: /healthz", "health_path: /healthz\n  env: {MODE: fast}")
    data = cli.json("preview", code=3)
    assert data["changes"] == {"replace": 1}
    assert data["replacements"] == {before["id"]: "app.env changed"}
    assert data["slots"][0]["after"]["shape"] == "std-1c-1024m"
    (still,) = cli.json("status")["instances"]
    assert still["pid"] == before["pid"]  # nothing was applied
    led = Ledger(sculpt_home / "ledger.db")
    try:
        assert led.unfinished_migrations("web") == [] and led.pending_versions("web") == []
    finally:
        led.close()


def test_an_up_that_hands_over_records_the_spec_file_so_the_next_up_changes_nothing(cli: Cli) -> None:
    """up (shape A) → up (shape B) → rollback → morph to the other region → up with a changed env (a blue/green
    handover, closed by the orchestrator) → preview and up of the unchanged file change nothing. The handover's
    version keeps the spec file as written, not the step's rewritten spec (a bug found by the chaos bench: the
    next `up` moved the fleet back to shape B in the home region)."""
    cli.json("up")
    cli.edit("shape: std-0.5c-512m", "shape: std-1c-1024m")
    cli.json("up")
    assert cli.json("rollback")["rolled_back_to"] == 1
    assert cli.json("morph", "--region", "local-b")["result"] == "done"
    assert cli("preview").exit_code == 0  # the swapped home/allowed regions are the same set: no change
    cli.edit("health_path: /healthz", "health_path: /healthz\n  env: {MODE: fast}")
    up = cli.json("up")
    assert up["result"] == "succeeded" and len(up["replaced"]) == 1
    (moved,) = cli.json("status")["instances"]
    assert (moved["shape"], moved["region"]) == ("std-0.5c-512m", "local-b")
    assert cli("preview").exit_code == 0
    cli.json("up")
    (still,) = cli.json("status")["instances"]
    assert (still["id"], still["pid"], still["shape"], still["region"]) == (
        moved["id"], moved["pid"], "std-0.5c-512m", "local-b")
