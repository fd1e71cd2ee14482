"""``sculpt bench forecast`` and ``sculpt train`` on small trace files written by the test."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.forecast.traces import read_dir, read_trace, to_grid

HEAD = ("timestamp_s,cpu_cores,cpu_capacity_mhz,cpu_usage_mhz,cpu_usage_pct,mem_capacity_kb,mem_usage_kb,"
        "disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps")


def write_vm(path: Path, seed: int, hours: int = 30) -> None:
    rng = np.random.default_rng(seed)
    lines = [HEAD]
    for k in range(hours * 12):
        t = 1_372_629_804 + 300 * k
        used = 2000 * (1 + 0.5 * np.sin(2 * np.pi * k / 288)) * rng.lognormal(0, 0.2)
        lines.append(f"{t},4,12000,{used:.3f},{used / 120:.2f},16000000,{1e6 + 1000 * k:.1f},0,10,5,1")
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    d = tmp_path / "traces"
    d.mkdir()
    for i in range(3):
        write_vm(d / f"vm_{i}.csv.gz", i)
    (d / "notes.csv").write_text("vm,comment\n1,summary file\n")
    return d


def test_reader_converts_units(trace_dir: Path) -> None:
    tr = read_trace(trace_dir / "vm_0.csv.gz")
    assert tr.cpu[0] == pytest.approx(float(open_first_usage(trace_dir / "vm_0.csv.gz")) / 3000)
    assert tr.mem[0] == pytest.approx(1e6 / 1024 / 1024)
    g = to_grid(read_dir(trace_dir))
    assert g.cpu.shape[1] == 3 and g.t[0] % 3600 == 0


def open_first_usage(p: Path) -> str:
    with gzip.open(p, "rt") as f:
        f.readline()
        return f.readline().split(",")[3]


def test_bench_forecast_json_shape(trace_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    r = CliRunner().invoke(app, ["bench", "forecast", "--traces", str(trace_dir), "--models",
                                 "last-value,seasonal-naive,river", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc == json.loads(out.read_text())
    assert set(doc["models"]) == {"last-value", "seasonal-naive", "river"}
    for m in doc["models"].values():
        assert set(m) == {"mae", "mem_mae", "pinball_50", "pinball_95", "coverage_90"}
        assert m["mae"] >= 0 and 0 <= m["coverage_90"] <= 1
    assert doc["traces"] == 3 and doc["samples"] == 3 * 30 * 12 and doc["elapsed_s"] >= 0


def test_bench_forecast_errors_are_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["bench", "forecast", "--traces", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "To fix" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["bench", "forecast", "--traces", str(tmp_path), "--models", "magic"])
    assert r.exit_code == 1 and "unknown model" in r.output


def test_train_writes_a_prior_the_river_model_uses(trace_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "general.prior"
    r = CliRunner().invoke(app, ["train", "--traces", str(trace_dir), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["prior"] == str(out) and out.exists() and doc["rows"] > 0
    assert set(doc["holdout"]["with_prior"]) >= {"mae", "coverage_90"}
    from sculpt.forecast import make_predictor
    from sculpt.forecast.evaluate import progressive

    g = to_grid(read_dir(trace_dir))
    res = progressive(lambda: make_predictor("river", prior=str(out)), g)
    assert np.isfinite(res["mae"])


def test_a_prior_trained_into_the_state_dir_is_what_watch_and_plan_use(trace_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``sculpt train`` writes ``<state dir>/priors/<profile>.prior``; the live sculptor of a fleet of that
    profile in that state dir builds its river model with it (and says so); another profile's does not."""
    from sculpt.app.service import open_service

    home = tmp_path / "home"
    monkeypatch.setenv("SCULPT_HOME", str(home))
    r = CliRunner().invoke(app, ["train", "--traces", str(trace_dir), "--profile", "batch", "--no-evaluate"])
    assert r.exit_code == 0, r.output
    assert (home / "priors" / "batch.prior").is_file()
    assert "sculpt plan" in r.output
    spec = tmp_path / "sculpt.yaml"
    for profile, used in (("batch", True), ("general", False)):
        spec.write_text(f"fleet: web\nprovider: local\nprofile: {profile}\nshape: std-0.5c-512m\nregion: local-a\n")
        opened = open_service(spec, mode="recommend", model="river", lock=False, recover=False, save=False)
        try:
            primary = opened.service.guard.primary
            assert (getattr(primary, "prior", None) is not None) is used
            assert any("cold-start prior" in n for n in opened.notes) is used
        finally:
            opened.close()


def test_replay_prior_blends_the_trained_prior_in(trace_dir: Path, tmp_path: Path) -> None:
    """``sculpt replay --prior FILE`` replays with the prior (its sculpt figures differ from a replay without
    it on these 3-day traces, whose first two days are the prior's); bad uses are one-line errors."""
    out = tmp_path / "general.prior"
    assert CliRunner().invoke(app, ["train", "--traces", str(trace_dir), "--out", str(out), "--no-evaluate"]).exit_code == 0
    files = [str(f) for f in sorted(trace_dir.glob("vm_*.csv.gz"))]
    runs = {}
    for extra in ([], ["--prior", str(out)]):
        r = CliRunner().invoke(app, ["replay", *files, "--model", "river", "--policy", "sculpt", "--json", *extra])
        assert r.exit_code == 0, r.output
        runs[bool(extra)] = json.loads(r.stdout)["policies"]["sculpt"]
    assert runs[True] != runs[False]
    r = CliRunner().invoke(app, ["replay", *files, "--model", "last-value", "--prior", str(out)])
    assert r.exit_code == 1 and "--prior needs" in r.output
    r = CliRunner().invoke(app, ["replay", *files, "--model", "river", "--prior", str(tmp_path / "none.prior")])
    assert r.exit_code == 1 and "no prior at" in r.output


def test_train_rejects_an_unknown_profile(trace_dir: Path) -> None:
    r = CliRunner().invoke(app, ["train", "--traces", str(trace_dir), "--profile", "gpu-heavy"])
    assert r.exit_code == 1 and "unknown profile" in r.output


@pytest.mark.data
def test_reads_a_real_bitbrains_trace(bitbrains: Path) -> None:
    tr = read_trace(sorted(bitbrains.glob("vm_*.csv.gz"))[0])
    assert tr.t.size > 20_000 and np.nanmin(tr.cpu) >= 0 and np.nanmax(tr.mem) > 0
