"""``sculpt history`` nests each version's steps; ``sculpt preview`` shows the diff ``up`` would apply and
applies nothing (exit 0 no change, 3 changes, 1 errors). A real ledger, the CLI through CliRunner, no
running fleet (``tests/e2e/test_preview.py`` runs one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.domain.fleet import Slot
from sculpt.domain.spec import parse_spec
from sculpt.ledger import Ledger
from sculpt.providers.local.client import AgentClient
from tests.helpers import write_project

SPEC: dict[str, Any] = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a",
                        "replicas": {"min": 1, "max": 3, "desired": 1}}


@pytest.fixture
def project(sculpt_home: Path, tmp_path: Path) -> Path:
    return write_project(tmp_path, SPEC)


def _record(led: Ledger, kind: str, spec: dict[str, Any], slots: list[Slot], steps: list[tuple[str, str]],
            result: str = "succeeded", message: str = "") -> int:
    js = parse_spec(spec).model_dump(mode="json")
    fleet = {"slots": [s.model_dump(mode="json") for s in slots]}
    n = led.append_version("web", spec=js, fleet=fleet, result="pending", message=message or kind, kind=kind,
                           when=1_780_000_000.0)
    for msg, res in steps:
        led.add_step("web", n, spec=js, fleet=fleet, message=msg, result=res, when=1_780_000_001.0)
    led.update_version("web", n, result=result)
    return n


def _up_and_morph(home: Path) -> None:
    led = Ledger(home / "ledger.db")
    _record(led, "up", SPEC, [Slot(id="web-0", shape="std-0.5c-512m", region="local-a")], [("up", "succeeded")])
    _record(led, "morph", {**SPEC, "shape": "std-1c-1024m"}, [Slot(id="web-1", shape="std-1c-1024m",
                                                                   region="local-a")],
            [("add green web-1", "succeeded"), ("shift traffic to green", "succeeded"),
             ("retire blue web-0", "succeeded")], message="morph to std-1c-1024m")
    led.close()


def test_history_nests_each_versions_steps(project: Path, sculpt_home: Path) -> None:
    _up_and_morph(sculpt_home)
    runner = CliRunner()
    r = runner.invoke(app, ["history", "--spec", str(project), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [(v["version"], v["kind"], v["result"]) for v in data] == [(1, "up", "succeeded"),
                                                                       (2, "morph", "succeeded")]
    assert set(data[0]) == {"version", "time", "result", "message", "kind", "fleet", "steps"}
    assert data[0]["steps"] == [{"step": 1, "time": 1_780_000_001.0, "result": "succeeded", "message": "up"}]
    assert [(s["step"], s["message"]) for s in data[1]["steps"]] == [
        (1, "add green web-1"), (2, "shift traffic to green"), (3, "retire blue web-0")]
    text = runner.invoke(app, ["history", "--spec", str(project)])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    morph = next(i for i, line in enumerate(lines) if "morph to std-1c-1024m" in line)
    steps = [line for line in lines[morph + 1:] if "step " in line]
    assert len(steps) == 3 and "  step 1" in steps[0] and "add green web-1" in steps[0]
    # a plain `up` (one step repeating its version) is not repeated under it
    assert not any("step 1" in line and "  up" in line for line in lines[:morph])


def test_preview_of_a_new_stack_lists_what_up_would_create_and_writes_nothing(project: Path,
                                                                              sculpt_home: Path) -> None:
    r = CliRunner().invoke(app, ["preview", "--spec", str(project), "--json"])
    assert r.exit_code == 3, r.output
    data = json.loads(r.stdout)
    assert data["stack"] == "web" and data["changes"] == {"create": 1}
    assert [(s["op"], s["slot"], s["after"]["shape"]) for s in data["slots"]] == [("create", "web-0",
                                                                                   "std-0.5c-512m")]
    assert data["kept"] == [] and data["replacements"] == {}
    led = Ledger(sculpt_home / "ledger.db")
    assert led.versions("web") == [] and led.lock_holder("web") is None
    led.close()
    assert not AgentClient(sculpt_home, "web").running()  # no agent was started


def test_preview_after_a_morph_keeps_it_exit_0_and_a_changed_env_is_a_replacement(project: Path,
                                                                                   sculpt_home: Path) -> None:
    _up_and_morph(sculpt_home)
    runner = CliRunner()
    r = runner.invoke(app, ["preview", "--spec", str(project)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["web: no changes", "= web-1: keeps morph-chosen std-1c-1024m"]
    r = runner.invoke(app, ["preview", "--spec", str(project), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["changes"] == {"same": 1} and data["replacements"] == {}
    assert data["kept"] == [{"slot": "web-1", "shape": "std-1c-1024m", "region": "local-a",
                             "note": "keeps morph-chosen std-1c-1024m"}]
    project.write_text(yaml.safe_dump({**SPEC, "app": {"env": {"MODE": "fast"}}}))
    r = runner.invoke(app, ["preview", "--spec", str(project), "--json"])
    assert r.exit_code == 3, r.output
    data = json.loads(r.stdout)
    assert data["changes"] == {"replace": 1} and data["replacements"] == {"web-1": "app.env changed"}
    assert "app" in data["spec_changed"]
    r = runner.invoke(app, ["preview", "--spec", str(project)])
    assert r.exit_code == 3, r.output
    assert "+- web-1: replace (blue/green: app.env changed); keeps morph-chosen std-1c-1024m" in r.stdout
    assert "web: 1 to replace; nothing applied" in r.stdout
    # more replicas: new ids skip every id a version used (web-0 was retired by the morph)
    project.write_text(yaml.safe_dump({**SPEC, "replicas": {"min": 1, "max": 3, "desired": 2}}))
    r = runner.invoke(app, ["preview", "--spec", str(project), "--json"])
    assert r.exit_code == 3, r.output
    data = json.loads(r.stdout)
    assert [(s["op"], s["slot"]) for s in data["slots"]] == [("same", "web-1"), ("create", "web-2")]
    assert data["slots"][1]["after"]["shape"] == "std-1c-1024m"
    led = Ledger(sculpt_home / "ledger.db")
    assert len(led.versions("web")) == 2  # nothing was written
    led.close()


def test_preview_errors_are_one_line_with_exit_1(tmp_path: Path, sculpt_home: Path) -> None:
    r = CliRunner().invoke(app, ["preview", "--spec", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 1
    assert r.output.startswith("error: no fleet spec at") and len(r.output.strip().splitlines()) == 1


def test_preview_notes_a_version_left_pending_by_a_dead_process(project: Path, sculpt_home: Path) -> None:
    import subprocess
    import sys

    _up_and_morph(sculpt_home)
    code = ("import sys; from sculpt.ledger import Ledger; "
            "Ledger(sys.argv[1]).append_version('web', spec={}, fleet={'slots': []}, result='pending', kind='up')")
    subprocess.run([sys.executable, "-c", code, str(sculpt_home / "ledger.db")], check=True)
    r = CliRunner().invoke(app, ["preview", "--spec", str(project)])
    assert r.exit_code == 0, r.output
    assert "note: version 3 (up) was left pending by a process that died" in r.stderr
    led = Ledger(sculpt_home / "ledger.db")
    assert led.version("web", 3).result == "pending"  # preview leaves it to the next changing command
    led.close()
