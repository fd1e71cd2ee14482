"""``sculpt replay`` and ``sculpt bench replay|tick|cli`` through the CLI (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from sculpt.cli.main import app

runner = CliRunner()


def write_traces(tmp_path: Path) -> Path:
    d = tmp_path / "traces"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        t = 1_700_000_000 + 300 * np.arange(600)
        cpu = 0.5 + 0.4 * np.sin(np.arange(600) / 40.0) + rng.uniform(0, 0.2, 600)
        mem = 1.0 + rng.uniform(0, 0.5, 600)
        rows = "\n".join(f"{a},{b:.4f},{c:.4f}" for a, b, c in zip(t, cpu, mem, strict=True))
        (d / f"app{i}.csv").write_text("timestamp,cpu_cores,mem_gib\n" + rows + "\n")
    (d / "notes.csv").write_text("vm,comment\n1,not a trace\n")
    return d


def test_replay_json_shape_and_report(tmp_path: Path) -> None:
    d = write_traces(tmp_path)
    report = tmp_path / "out" / "report.html"
    r = runner.invoke(app, ["replay", str(d), "--model", "last-value", "--json", "--per-trace", "--report", str(report)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(data) == {"policies", "traces", "trace_hours", "elapsed_s", "per_trace", "headline"}
    assert list(data["policies"]) == ["static", "reactive", "sculpt", "oracle"]
    for m in data["policies"].values():
        assert set(m) == {"cost_usd", "underprovisioned_fraction", "oom_events", "migrations"}
    assert data["traces"] == 2 and data["trace_hours"] == 100.0
    assert set(data["per_trace"]) == {"app0", "app1"}
    html = report.read_text()
    assert html.count("<svg") >= 4 and "Per trace" in html and "app0" in html and "Headline" in html


def test_replay_table_and_policy_subset(tmp_path: Path) -> None:
    d = write_traces(tmp_path)
    r = runner.invoke(app, ["replay", str(d / "app0.csv"), "--policy", "static", "--policy", "oracle"])
    assert r.exit_code == 0, r.output
    assert "static" in r.stdout and "oracle" in r.stdout and "reactive" not in r.stdout


def test_replay_errors_are_one_line(tmp_path: Path) -> None:
    d = write_traces(tmp_path)
    r = runner.invoke(app, ["replay", str(d / "notes.csv")])
    assert r.exit_code == 1 and "unknown layout" in r.output and "notes.csv" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["replay", str(d), "--policy", "psychic"])
    assert r.exit_code == 1 and "unknown policy 'psychic'" in r.output
    r = runner.invoke(app, ["replay", str(d), "--region", "mars-1"])
    assert r.exit_code == 1 and "mars-1" in r.output


def test_bench_tick_and_cli_write_json(tmp_path: Path) -> None:
    out = tmp_path / "tick.json"
    r = runner.invoke(app, ["bench", "tick", "--instances", "40", "--ticks", "14", "--model", "last-value",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["instances"] == 40 and data["p95_ms"] >= data["p50_ms"] > 0
    r = runner.invoke(app, ["bench", "cli", "--runs", "1", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["heavy_modules_imported"] == []
    r = runner.invoke(app, ["bench", "cli", "--runs", "1"])
    assert r.exit_code == 0 and "p50_ms: " in r.stdout
