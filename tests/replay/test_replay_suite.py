"""``sculpt replay --suite``: each set on its own, every policy, figures per set; ``--curves`` adds the sweep,
the frontiers and sculpt's cost at each baseline's risk (small synthetic sets, the ``last-value`` model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.replay.baselines import DEFAULT_MARGIN
from sculpt.replay.curves import cost_at, frontier
from sculpt.replay.harness import POLICIES, ReplayConfig
from sculpt.replay.suite import AGGRESSIVENESS, MARGINS, run_suite, suite_config
from tests.replay.conftest import RecentPeak, tiny_catalog

runner = CliRunner()
STEP = 1800  # half-hour samples: 4 days in 192 steps


def _generic(d: Path, name: str, cpu: np.ndarray, mem: np.ndarray | None = None) -> None:
    t = 1_700_000_000 + STEP * np.arange(len(cpu))
    if mem is None:
        rows = "".join(f"{a},{b:.4f}\n" for a, b in zip(t, cpu, strict=True))
        (d / f"{name}.csv").write_text("timestamp,cpu_cores\n" + rows)
    else:
        rows = "".join(f"{a},{b:.4f},{c:.4f}\n" for a, b, c in zip(t, cpu, mem, strict=True))
        (d / f"{name}.csv").write_text("timestamp,cpu_cores,mem_gib\n" + rows)


def write_sets(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    n = 192
    day = np.sin(np.arange(n) * 2 * np.pi / 48)
    a = tmp_path / "fleet_a"
    a.mkdir()
    _generic(a, "web", np.clip(1.0 + 0.8 * day + rng.uniform(0, 0.5, n), 0, 3.5), 1.0 + 0.3 * (day > 0))
    _generic(a, "batch", np.where(np.arange(n) % 48 < 8, 3.0, 0.3), np.full(n, 0.5))
    nab = tmp_path / "nab"
    nab.mkdir()
    stamps = [f"2014-02-14 {h:02d}:{m:02d}:00" for h in range(24) for m in range(0, 60, 30)]
    (nab / "ec2_cpu_utilization_x.csv").write_text(
        "timestamp,value\n" + "".join(f"{s},{30 + 60 * (i % 16 < 3):.1f}\n" for i, s in enumerate(stamps * 2)))
    (nab / "ec2_network_in_y.csv").write_text("timestamp,value\n" + "".join(f"{s},{1e6 + i}\n" for i, s in enumerate(stamps)))
    return a, nab


def test_suite_json_has_every_policy_per_set(tmp_path: Path) -> None:
    a, nab = write_sets(tmp_path)
    r = runner.invoke(app, ["replay", "--suite", str(a), str(nab), "--model", "last-value", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [s["name"] for s in data["sets"]] == ["fleet_a", "nab"] and data["config"]["sweep"] is None
    fa, nb = data["sets"]
    assert fa["traces"] == 2 and nb["traces"] == 1
    assert nb["skipped"] == [str(nab / "ec2_network_in_y.csv")]
    # the NAB CPU file repeats its day: 48 duplicate timestamps collapsed, one warning line for it
    assert len(nb["warnings"]) == 2 and any("48 duplicate timestamps collapsed" in w for w in nb["warnings"])
    for s in data["sets"]:
        assert list(s["policies"]) == list(POLICIES)
        for m in s["policies"].values():
            assert set(m) == {"cost_usd", "x_oracle", "underprovisioned_fraction", "oom_events", "migrations",
                              "moves_per_vm_day", "captured"}
        pol = s["policies"]
        assert pol["oracle"]["x_oracle"] == 1.0 and pol["oracle"]["underprovisioned_fraction"] == 0.0
        for m in pol.values():
            assert m["moves_per_vm_day"] == pytest.approx(m["migrations"] / s["vm_days"], abs=1e-4)
    room = fa["policies"]["static"]["cost_usd"] - fa["policies"]["oracle"]["cost_usd"]
    for p, m in fa["policies"].items():
        assert m["captured"] == pytest.approx((fa["policies"]["static"]["cost_usd"] - m["cost_usd"]) / room, abs=1e-3), p
    assert "warning: skipped" in r.stderr and "suite: [2/2] nab" in r.stderr


def test_suite_tables_per_set(tmp_path: Path) -> None:
    a, _ = write_sets(tmp_path)
    r = runner.invoke(app, ["replay", "--suite", str(a), "--model", "last-value", "--policy", "static",
                            "--policy", "percentile", "--policy", "oracle", "--margin", "percentile=0.2"])
    assert r.exit_code == 0, r.output
    assert "fleet_a: 2 traces" in r.stdout and "percentile" in r.stdout and "reactive" not in r.stdout
    assert "moves/VM-day" in r.stdout and "at equal risk" not in r.stdout


def test_sweep_frontiers_and_equal_risk(tmp_path: Path) -> None:
    a, _ = write_sets(tmp_path)
    sets = run_suite([a], tiny_catalog(), suite_config(ReplayConfig(region="r", families=()), sweep=True),
                     predictor_factory=RecentPeak)
    s = sets[0]
    curves = s.curves()
    assert [q["param"] for q in curves["sculpt"]] == sorted({*AGGRESSIVENESS, 0.5})
    for b in ("reactive", "percentile", "autopilot"):
        assert [q["param"] for q in curves[b]] == sorted({*MARGINS, DEFAULT_MARGIN[b]})
        assert sum(q["default"] for q in curves[b]) == 1
        d = next(q for q in curves[b] if q["default"])
        assert d == {"param": d["param"], "default": True, **s.row(s.result.scores[b])}  # the default is the run
    eq = s.equal_risk()
    assert set(eq) == {"reactive", "percentile", "autopilot"}
    fronts = {p: frontier((q["underprovisioned_fraction"], q["x_oracle"]) for q in v) for p, v in curves.items()}
    for row in eq.values():
        mine = cost_at(fronts["sculpt"], row["risk"])
        assert row["sculpt_x_oracle"] == (None if mine is None else round(mine, 4))
        best = min(c for q in ("reactive", "percentile", "autopilot")
                   if (c := cost_at(fronts[q], row["risk"])) is not None)
        assert row["best_x_oracle"] == round(best, 4) and row["best_x_oracle"] <= row["x_oracle"] + 1e-4
        if mine is not None:
            assert row["ratio_to_best"] == pytest.approx(mine / best, abs=1e-4)


def test_curves_through_the_cli_json_table_and_report(tmp_path: Path) -> None:
    a, _ = write_sets(tmp_path)
    out = tmp_path / "reports"
    r = runner.invoke(app, ["replay", "--suite", str(a), "--curves", "--model", "last-value", "--json",
                            "--report", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["sets"][0]
    assert set(s["curves"]) == {"reactive", "percentile", "autopilot", "sculpt"}
    assert set(s["equal_risk"]) == {"reactive", "percentile", "autopilot"}
    html = (out / "fleet_a.html").read_text()
    assert 'id="equal-risk"' in html and html.count("a=0.2") >= 1 and "m=+15%" in html
    r = runner.invoke(app, ["replay", "--suite", str(a), "--sweep", "--model", "last-value"])
    assert r.exit_code == 0, r.output
    assert "cost-risk sweep" in r.stdout and "at equal risk" in r.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--curves"], "--curves sweeps a suite"),
    (["--suite", "--margin", "psychic=0.1"], "--margin 'psychic=0.1'"),
    (["--suite", "--margin", "reactive=lots"], "--margin 'reactive=lots'"),
])
def test_suite_flag_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    a, _ = write_sets(tmp_path)
    r = runner.invoke(app, ["replay", str(a), "--model", "last-value", *args])
    assert r.exit_code == 1 and needle in r.output and "Traceback" not in r.output


def test_plain_replay_of_a_mixed_nab_directory_warns_and_runs(tmp_path: Path) -> None:
    _, nab = write_sets(tmp_path)
    r = runner.invoke(app, ["replay", str(nab), "--model", "last-value", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["traces"] == 1  # the byte counts are skipped, the CPU % replayed
    lines = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert len(lines) == 2 and "not a CPU percentage" in lines[1] + lines[0]
    r = runner.invoke(app, ["replay", str(nab / "ec2_network_in_y.csv"), "--model", "last-value"])
    assert r.exit_code == 1 and "ec2_network_in_y.csv" in r.output and "not a CPU percentage" in r.output
