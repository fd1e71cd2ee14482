"""The small things a new user trips on (issue 15): where `init` points, what its templates hold and say
next, the verb panels of `sculpt --help`, `catalog` on an unknown family, `rollback` to a version that does
not exist, how `history` counts shapes, and the live view's tick. In-process (typer's CliRunner), no fleet."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sculpt.cli.main import PANELS, app

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def one_error(r: Any) -> str:
    """The single ``error:`` line a failing verb prints (and nothing that looks like a traceback)."""
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.output
    assert "Traceback" not in r.output
    return str(lines[0])


# -- init ---------------------------------------------------------------------------------------------------
def test_init_points_to_a_document_and_heading_that_exist(tmp_path: Path) -> None:
    spec = tmp_path / "sculpt.yaml"
    assert run("init", "--spec", str(spec)).exit_code == 0
    first = spec.read_text().splitlines()[0]
    m = re.search(r"documented in (\S+) \(\"([^\"]+)\"\)", first)
    assert m, first
    doc = REPO / m.group(1)
    assert doc.is_file(), f"init points to {m.group(1)}, which does not exist"
    headings = [ln.lstrip("#").strip() for ln in doc.read_text().splitlines() if ln.startswith("#")]
    assert any(h.startswith(m.group(2)) for h in headings), (m.group(2), headings[:5])


@pytest.mark.parametrize("provider", ["aws", "gcp"])
def test_cloud_templates_have_the_image_and_no_local_only_fields(tmp_path: Path, provider: str) -> None:
    spec = tmp_path / "sculpt.yaml"
    r = run("init", "--spec", str(spec), "--provider", provider)
    assert r.exit_code == 0, r.output
    text = spec.read_text()
    data = yaml.safe_load(text)
    assert "image" in data["app"] and data["app"]["image"] is None
    assert data["lb"] == {"port": 80}  # no local port picking, no hash routing (a cloud LB routes by weight)
    assert "picks a free one" not in text and "routing" not in yaml.safe_dump(data["lb"])
    assert "local instances" not in text
    assert "sculpt catalog --provider " + provider in text
    assert "app.image" in r.output and "next: sculpt up" not in r.output


def test_the_local_template_keeps_its_local_fields(tmp_path: Path) -> None:
    spec = tmp_path / "sculpt.yaml"
    r = run("init", "--spec", str(spec))
    data = yaml.safe_load(spec.read_text())
    assert data["lb"] == {"port": 0, "routing": "weighted"} and "image" not in data["app"]
    assert r.output.strip().endswith("next: sculpt up")


def test_init_sim_says_the_step_that_works(tmp_path: Path) -> None:
    spec = tmp_path / "sculpt.yaml"
    r = run("init", "--spec", str(spec), "--provider", "sim")
    assert r.exit_code == 0, r.output
    assert "next: sculpt up" not in r.output
    assert "sculpt replay" in r.output and "sculpt policy check" in r.output
    # the step it names works on that spec (and `up`, which it no longer suggests, does not)
    ok = run("policy", "check", "--spec", str(spec))
    assert ok.exit_code == 0, ok.output


def test_template_comments_line_up(tmp_path: Path) -> None:
    from sculpt.cli.init import render

    for provider in ("local", "sim", "aws", "gcp"):
        cols = {ln.index(" # ") for ln in render(provider).splitlines()
                if " # " in ln and not ln.startswith("#") and len(ln.split(" # ")[0].rstrip()) < 31}
        assert cols == {31}, (provider, cols)


# -- sculpt --help ------------------------------------------------------------------------------------------
def test_help_groups_every_verb_in_panels_in_order() -> None:
    r = CliRunner().invoke(app, ["--help"], terminal_width=140)
    assert r.exit_code == 0, r.output
    out = r.output
    where = [out.find(p) for p in PANELS]
    assert all(i >= 0 for i in where), [p for p, i in zip(PANELS, where, strict=True) if i < 0]
    assert where == sorted(where), "panels out of order"
    import typer.main

    group: Any = typer.main.get_command(app)
    verbs = list(group.commands)
    assert len(verbs) >= 17
    for v in verbs:
        assert getattr(group.commands[v], "rich_help_panel", None) in PANELS, f"{v} has no panel"
        assert re.search(rf"│ {re.escape(v)}\s", out), f"{v} missing from --help"


# -- catalog ------------------------------------------------------------------------------------------------
def test_catalog_unknown_family_is_one_error_naming_the_known_ones() -> None:
    r = run("catalog", "--family", "zz9")
    assert r.exit_code == 1
    line = one_error(r)
    assert "'zz9'" in line and "local-std" in line and "local-mem" in line
    good = run("catalog", "--family", "local-std", "--json")
    assert good.exit_code == 0 and '"local-std"' in good.stdout and '"local-mem"' not in good.stdout


# -- rollback -----------------------------------------------------------------------------------------------
def test_rollback_to_a_missing_version_errors_before_saying_rolling_back(sculpt_home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "sculpt.yaml"
    assert run("init", "--spec", str(spec)).exit_code == 0
    from sculpt.domain.fleet import Fleet
    from sculpt.domain.spec import load_spec
    from sculpt.ledger import Ledger

    led = Ledger(sculpt_home / "ledger.db")
    try:
        loaded = load_spec(spec)
        fleet = Fleet.from_spec(loaded).model_dump(mode="json")
        led.append_version("web", spec=loaded.model_dump(mode="json"), fleet=fleet, result="succeeded",
                           message="up", kind="up")
    finally:
        led.close()
    r = run("rollback", "--to", "99", "--spec", str(spec))
    assert r.exit_code == 1, r.output
    line = one_error(r)
    assert "no version 99" in line and "versions 1..1" in line
    assert "rolling" not in r.output


# -- history ------------------------------------------------------------------------------------------------
def test_history_counts_each_shape() -> None:
    from sculpt.cli.history import _slots

    fleet = {"slots": [{"shape": "std-1c-1024m", "region": "local-a"}, {"shape": "std-2c-2048m", "region": "local-a"},
                       {"shape": "std-1c-1024m", "region": "local-a"}]}
    assert _slots(fleet) == "2× std-1c-1024m@local-a + 1× std-2c-2048m@local-a"
    assert _slots({"slots": []}) == "-"


# -- the live view ------------------------------------------------------------------------------------------
def _service(tick_s: float = 10.0) -> Any:
    spec = SimpleNamespace(fleet="web", tick_s=tick_s)
    return SimpleNamespace(spec=spec, mode="auto", guard=SimpleNamespace(name="river"), history={})


def _title(view: Any) -> str:
    return str(view._render(None).renderables[0].title)


def test_live_view_header_shows_the_tick_the_loop_runs_at(monkeypatch: pytest.MonkeyPatch) -> None:
    from sculpt.app import view as view_mod

    assert "tick 2s" in _title(view_mod.Dashboard(_service(10.0), tick_s=2.0))
    # without being told: the spec's until two ticks were seen, then the shortest gap between ticks
    clock = iter([100.0, 102.0, 109.5, 111.5])
    monkeypatch.setattr("sculpt.app.view.time", SimpleNamespace(monotonic=lambda: next(clock)))
    d = view_mod.Dashboard(_service(10.0))
    assert "tick 10s" in _title(d)
    for _ in range(4):  # the third tick morphed (7.5 s): the period is still 2 s
        d.update(SimpleNamespace())  # type: ignore[arg-type]
    assert "tick 2s" in _title(d)


def test_rollback_on_a_cloud_stack_validates_before_it_says_or_does_anything(
        sculpt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pulumi path used to print "rolling back ..." and only then learn from the engine that the version
    does not exist; now the ledger is asked first and the engine is never called."""
    from sculpt.cli import rollback as rollback_mod
    from sculpt.ledger import Ledger

    led = Ledger(sculpt_home / "ledger.db")
    led.append_version("web", spec={"fleet": "web"}, fleet={"slots": []}, result="failed", message="up")
    called: list[int] = []
    engine = SimpleNamespace(name="pulumi", previous_succeeded=lambda: None, rollback=called.append)
    wiring = SimpleNamespace(stack="web", ledger=led, engine=engine, close=lambda: None, deliver_events=lambda: 0)
    monkeypatch.setattr(rollback_mod, "open_stack", lambda stack, spec: wiring)
    try:
        for to, words in (("99", "no version 99"), ("1", "version 1 of stack 'web' failed")):
            r = run("rollback", "--to", to)
            assert r.exit_code == 1, r.output
            assert words in one_error(r) and "rolling" not in r.output
        assert called == []
    finally:
        led.close()


# -- the demo's story pieces (a real demo app process; the whole demo runs in tests/sculptor/test_cli_e2e.py) --
def test_keys_verified_reads_back_through_http_and_catches_a_lost_write(tmp_path: Path) -> None:
    import http.client
    import time

    from sculpt.app.demo_load import KvWriter
    from sculpt.demoapp.server import spawn

    proc, port = spawn(tmp_path / "data")
    try:
        kv = KvWriter(f"127.0.0.1:{port}", keys=10, rate=200.0)
        kv.start()
        deadline = time.monotonic() + 30
        while len(kv.acked) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        kv.stop()
        assert kv.verify() == (10, 10) and kv.failed == 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a write the writer does not know
        conn.request("PUT", "/kv/demo-3", body=b"lost")
        conn.getresponse().read()
        conn.close()
        assert kv.verify() == (10, 9)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_summary_says_what_was_and_was_not_shown() -> None:
    from sculpt.app.demo_report import DemoResult, Move, summary

    r = DemoResult(source="synthetic")
    r.moves = [Move("in-place", "std-0.5c-512m", "std-1c-1024m", "local-a", "local-a", "done", 0.1,
                    keys_checked=5, keys_verified=5),
               Move("blue-green", "std-1c-1024m", "std-1c-1024m", "local-a", "local-b", "rolled_back", 3.0,
                    pause_ms=2100.0)]
    assert r.shown() == {"in_place": True, "blue_green": False, "region_move": False}
    text = "\n".join(summary(r))
    assert "1 in place, 0 blue/green" in text and "not shown this run: a blue/green handover" in text
    r.moves.append(Move("blue-green", "std-1c-1024m", "std-1c-1024m", "local-a", "local-b", "done", 1.4,
                        pause_ms=682.0, keys_checked=100, keys_verified=99))
    assert r.shown()["region_move"] and not r.shown()["blue_green"]  # one key lost: not "every key verified"
    r.moves[-1].keys_verified = 100
    assert r.shown() == {"in_place": True, "blue_green": True, "region_move": True}
    text = "\n".join(summary(r))
    assert "(region move): blue/green, pause 682 ms, 100/100 keys verified" in text and "not shown" not in text
