"""The replay report: its headline equals ``--json``'s, every trace has a row and charts, losses and the
smallest-shape traces are named; the bench figures; ``scripts/update_doc_figures.py`` rewrites and checks."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.replay.harness import ReplayConfig, run_replay
from sculpt.replay.report import CHART_POINTS, render
from sculpt.replay.report_headline import MONTH_H, headline

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """What the tests read off the report: headline figures, table rows, chart panels and their SVGs."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.figure_text: dict[str, str] = {}
        self._fig: str | None = None
        self.rows: dict[str, dict[str, str]] = {}
        self.panels: dict[str, int] = {}  # trace -> <svg> count inside its panel
        self.panel_text: dict[str, str] = {}
        self.scripts = 0
        self.external: list[str] = []
        self._panel: str | None = None
        self._depth = 0
        self._in_traces = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-h" in a:
            self.figures[a["data-h"]] = a["data-v"]
            self._fig = a["data-h"]
            self.figure_text[self._fig] = ""
        if tag == "table" and a.get("id") == "traces":
            self._in_traces = True
        if tag == "tr" and self._in_traces and "data-trace" in a:
            self.rows[a["data-trace"]] = a
        if tag == "div" and "trace" in a.get("class", "").split():
            self._panel, self._depth = a["data-trace"], 0
            self.panels[self._panel] = 0
            self.panel_text[self._panel] = ""
        elif tag == "div" and self._panel is not None:
            self._depth += 1
        if tag == "svg" and self._panel is not None:
            self.panels[self._panel] += 1
        if tag == "script":
            self.scripts += 1
            if "src" in a:
                self.external.append(a["src"])
        for k in ("src", "href"):
            if k in a and a[k].startswith(("http:", "https:", "//")):
                self.external.append(a[k])

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._fig = None
        if tag == "table":
            self._in_traces = False
        if tag == "div" and self._panel is not None:
            if self._depth == 0:
                self._panel = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._fig is not None:
            self.figure_text[self._fig] += data
        if self._panel is not None:
            self.panel_text[self._panel] += data


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def lookup(doc: dict[str, Any], key: str) -> Any:
    v: Any = doc
    for part in key.split("."):
        v = v[part]
    return v


def write_traces(d: Path, n: int = 3, steps: int = 2400) -> Path:
    """Generic CSVs: two varying traces and one that idles (it sits on the smallest shape everywhere)."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        t = 1_700_000_000 + 300 * np.arange(steps)
        cpu = 1.0 + 0.9 * np.sin(np.arange(steps) / (30.0 + 10 * i)) + rng.uniform(0, 0.3, steps)
        mem = 1.0 + rng.uniform(0, 0.5, steps) + (3.0 * (np.arange(steps) % 700 > 650) if i == 1 else 0.0)
        if i == n - 1:
            cpu, mem = np.full(steps, 0.05), np.full(steps, 0.5)
        rows = "\n".join(f"{a},{b:.4f},{c:.4f}" for a, b, c in zip(t, cpu, mem, strict=True))
        (d / f"app{i}.csv").write_text("timestamp,cpu_cores,mem_gib\n" + rows + "\n")
    return d


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    tmp = tmp_path_factory.mktemp("report")
    d = write_traces(tmp / "traces")
    report = tmp / "report.html"
    r = runner.invoke(app, ["replay", str(d), "--model", "last-value", "--json", "--per-trace", "--report",
                            str(report)])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout), report.read_text(encoding="utf-8")


def test_headline_in_the_html_equals_the_json(cli_run: tuple[dict[str, Any], str]) -> None:
    data, text = cli_run
    hl = data["headline"]
    page = parse(text)
    for p in data["policies"]:
        assert f"monthly_usd.{p}" in page.figures and f"risk.{p}.oom_events" in page.figures
    for key in ("saving_vs.static.sculpt.usd_month", "saving_vs.static.sculpt.pct",
                "saving_vs.reactive.sculpt.usd_month", "captured_vs_oracle.sculpt",
                "losses.costlier_than_static", "losses.oom_where_static_had_none"):
        assert key in page.figures, key
    for key, v in page.figures.items():
        want = lookup(hl, key)
        if isinstance(want, list):
            want = len(want)
        if want is None:
            assert v == ""
        else:
            assert float(v) == pytest.approx(float(want), abs=1e-9), key
    for p, v in hl["monthly_usd"].items():  # what a reader sees is the JSON's figure too
        shown = page.figure_text[f"monthly_usd.{p}"]
        assert float(shown.replace("$", "").replace(",", "")) == pytest.approx(v, abs=0.51), (p, shown)
    cap = hl["captured_vs_oracle"]["sculpt"]
    assert page.figure_text["captured_vs_oracle.sculpt"] == f"{100 * cap:.1f} %"
    assert hl["month_h"] == MONTH_H == 730.0
    assert hl["date_range"] == {"first": "2023-11-14", "last": "2023-11-23"}
    assert "2023-11-14 to 2023-11-23" in text and "730 h" in text


def test_headline_figures_follow_from_the_per_trace_json(cli_run: tuple[dict[str, Any], str]) -> None:
    data, _ = cli_run
    hl, per = data["headline"], data["per_trace"]
    hours = 2400 * 300 / 3600
    for p in data["policies"]:
        assert hl["monthly_usd"][p] == pytest.approx(sum(per[t][p]["cost_usd"] for t in per) / hours * MONTH_H,
                                                     abs=0.05)
    st, sc, orc = (hl["monthly_usd"][p] for p in ("static", "sculpt", "oracle"))
    assert hl["saving_vs"]["static"]["sculpt"]["usd_month"] == pytest.approx(st - sc, abs=0.011)
    assert hl["saving_vs"]["static"]["sculpt"]["pct"] == pytest.approx(100 * (st - sc) / st, abs=0.06)
    assert hl["captured_vs_oracle"]["sculpt"] == pytest.approx((st - sc) / (st - orc), abs=1e-3)
    worse = sorted(t for t in per if per[t]["sculpt"]["cost_usd"] > per[t]["reactive"]["cost_usd"])
    assert sorted(hl["losses"]["costlier_than_reactive"]) == worse
    oom = sorted(t for t in per if per[t]["sculpt"]["oom_events"] > 0 and per[t]["static"]["oom_events"] == 0)
    assert sorted(hl["losses"]["oom_where_static_had_none"]) == oom
    assert hl["floor"]["traces"] == ["app2"] and hl["floor"]["shapes"]


def test_every_trace_has_a_row_and_its_charts(cli_run: tuple[dict[str, Any], str]) -> None:
    data, text = cli_run
    page = parse(text)
    names = set(data["per_trace"])
    assert set(page.rows) == names and set(page.panels) == names
    for name in names:
        assert page.panels[name] >= 3, name  # CPU, memory, shapes (all traces here have memory)
    assert "floor" in page.rows["app2"]["data-flags"].split()
    assert "smallest allowed shape" in page.panel_text["app2"]
    assert page.scripts == 1 and page.external == []  # one inline script, nothing fetched
    assert 'id="cost-risk"' in text and 'id="equal-risk"' not in text  # no sweep: one dot per policy


def test_week_of_the_oracle_only_when_it_moves(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    hours = 24 * 10
    flat = trace([0.5] * hours, name="flat", provisioned=(1, 1))
    wave = trace([0.5 + 2.5 * (i % 48 >= 24) for i in range(hours)], name="wave", provisioned=(4, 4))
    r = run_replay([flat, wave], catalog, ReplayConfig(region="r", families=()), predictor_factory=stub_predictor)
    page = parse(render(r))
    assert "the week the oracle moves most" not in page.panel_text["flat"]
    assert "oracle never moves" in page.panel_text["flat"]
    assert "the week the oracle moves most" in page.panel_text["wave"]
    hl = headline(r)
    assert hl["floor"]["traces"] == ["flat"] and hl["floor"]["shapes"] == ["s1"]


def test_costlier_than_static_is_flagged(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    # provisioned 1 vCPU, demand 1.5: static stays on s1 (cheap, under-provisioned); sculpt moves up and pays more
    r = run_replay([trace([1.5] * 24 * 9, name="tight", provisioned=(1, 1))], catalog,
                   ReplayConfig(region="r", families=()), predictor_factory=stub_predictor)
    hl = headline(r)
    assert hl["losses"]["costlier_than_static"] == ["tight"]
    assert hl["saving_vs"]["static"]["sculpt"]["usd_month"] < 0
    page = parse(render(r))
    assert page.rows["tight"]["data-flags"].split()[0] == "static"
    assert "costs" in render(r) and "a month more" in render(r)


def test_charts_are_downsampled(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    n = 12 * CHART_POINTS
    cpu = [0.5 + 1.2 * ((i // 7) % 2) for i in range(n)]
    r = run_replay([trace(cpu, name="long", step_s=300.0, provisioned=(2, 2))], catalog,
                   ReplayConfig(region="r", families=()), predictor_factory=stub_predictor)
    text = render(r)
    demand = [seg for seg in text.split('<path d="M')[1:] if 'fill="#222"' in seg.split(">")[0]]
    assert demand and all(seg.split('"')[0].count(" L") < CHART_POINTS for seg in demand)
    assert len(text.encode()) < 400_000


def test_replay_table_prints_the_headline(tmp_path: Path) -> None:
    d = write_traces(tmp_path / "t")
    r = runner.invoke(app, ["replay", str(d), "--model", "last-value"])
    assert r.exit_code == 0, r.output
    assert "$/month" in r.stdout and "vs static" in r.stdout and "losses: sculpt" in r.stdout
    assert "smallest allowed shape" in r.stdout


# -- benchmarks -----------------------------------------------------------------------------------------------

def test_bench_notes_say_what_the_machine_is(tmp_path: Path) -> None:
    import os

    r = runner.invoke(app, ["bench", "tick", "--instances", "20", "--ticks", "3", "--model", "last-value", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["machine"]["cpus"] == os.cpu_count()
    assert "2-core" not in data["note"] and f"{os.cpu_count()} CPUs" in data["note"]
    src = "".join((ROOT / "sculpt" / "cli" / f).read_text() for f in
                  ("bench_replay.py", "bench_forecast.py", "bench_up.py", "bench_morph.py"))
    assert "2-core" not in src and "shared machine" not in src


def test_bench_forecast_times_each_model_in_its_own_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sculpt.forecast.evaluate as ev
    import sculpt.forecast.traces as tr

    calls: list[list[str]] = []

    def fake(grid: Any, models: list[str], **kw: Any) -> dict[str, dict[str, Any]]:
        calls.append(list(models))
        return {m: {"mae": 0.1, "model_s": 1.0 + len(calls), "cpu_s": 0.5 + len(calls), "scored": 3} for m in models}

    grid = ev.synthetic_grid(3, 30)
    monkeypatch.setattr(ev, "evaluate_models", fake)
    monkeypatch.setattr(tr, "read_dir", lambda *a, **k: [])
    monkeypatch.setattr(tr, "to_grid", lambda *a, **k: grid)
    r = runner.invoke(app, ["bench", "forecast", "--traces", str(tmp_path), "--models",
                            "last-value,seasonal-naive,ensemble", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert calls == [["last-value"], ["seasonal-naive"], ["ensemble"]]
    assert doc["model_s"] == {"last-value": 2.0, "seasonal-naive": 3.0, "ensemble": 4.0}
    assert len(set(doc["cpu_s"].values())) == 3


# -- scripts/update_doc_figures.py ---------------------------------------------------------------------------

BENCH = {"policies": {"static": {"cost_usd": 300.0, "underprovisioned_fraction": 0.01, "oom_events": 0,
                                 "migrations": 0},
                      "reactive": {"cost_usd": 150.0, "underprovisioned_fraction": 0.002, "oom_events": 5,
                                   "migrations": 40},
                      "sculpt": {"cost_usd": 140.0, "underprovisioned_fraction": 0.001, "oom_events": 4,
                                 "migrations": 90},
                      "oracle": {"cost_usd": 100.0, "underprovisioned_fraction": 0.0, "oom_events": 0,
                                 "migrations": 120}},
         "traces": 2, "trace_hours": 200.0, "elapsed_s": 3.2, "model": "river", "read_s": 0.4, "wall_s": 3.6,
         "headline": {"month_h": 730.0, "traces": 2, "date_range": {"first": "2013-07-01", "last": "2013-09-30"},
                      "monthly_usd": {"static": 1095.0, "reactive": 547.5, "sculpt": 511.0, "oracle": 365.0},
                      "saving_vs": {"static": {"reactive": {"usd_month": 547.5, "pct": 50.0},
                                               "sculpt": {"usd_month": 584.0, "pct": 53.3},
                                               "oracle": {"usd_month": 730.0, "pct": 66.7}},
                                    "reactive": {"static": {"usd_month": -547.5, "pct": -100.0},
                                                 "sculpt": {"usd_month": 36.5, "pct": 6.7},
                                                 "oracle": {"usd_month": 182.5, "pct": 33.3}}},
                      "captured_vs_oracle": {"reactive": 0.75, "sculpt": 0.8},
                      "risk": {}, "losses": {"policy": "sculpt", "costlier_than_static": ["b"],
                                             "costlier_than_reactive": ["a", "b"], "extra_usd_month_vs_static": 3.0,
                                             "extra_usd_month_vs_reactive": 9.0,
                                             "oom_where_static_had_none": ["a"], "oom_events_where_static_had_none": 4},
                      "floor": {"shapes": ["c5.large"], "traces": []}},
         "machine": {"cpus": 2, "load_avg": [1.5, 1.2, 1.0]}}


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "update_doc_figures.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_update_doc_figures_rewrites_between_markers_and_checks(tmp_path: Path) -> None:
    bench = tmp_path / "replay.json"
    bench.write_text(json.dumps(BENCH))
    doc = tmp_path / "doc.md"
    doc.write_text("# T\nbefore\n<!-- figures:replay -->\nstale 1.27 x\n<!-- /figures -->\nmiddle\n"
                   "<!-- figures:replay-json -->\n<!-- /figures -->\nafter\n")
    r = run_script("--check", "--replay-json", str(bench), str(doc))
    assert r.returncode == 1 and "doc.md" in r.stdout + r.stderr
    r = run_script("--replay-json", str(bench), str(doc))
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert "stale" not in text and text.startswith("# T\nbefore\n") and "middle\n" in text and text.endswith("after\n")
    assert "| sculpt |" in text and "511" in text and "1.40" in text  # $/month and x oracle (140 / 100)
    assert '"cost_usd": 140.0' in text  # the --json example block
    assert run_script("--check", "--replay-json", str(bench), str(doc)).returncode == 0
    bench2 = json.loads(json.dumps(BENCH))
    bench2["policies"]["sculpt"]["cost_usd"] = 141.0
    bench.write_text(json.dumps(bench2))
    assert run_script("--check", "--replay-json", str(bench), str(doc)).returncode == 1


def test_update_doc_figures_refuses_an_unclosed_marker(tmp_path: Path) -> None:
    bench = tmp_path / "replay.json"
    bench.write_text(json.dumps(BENCH))
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- figures:replay -->\nno end\n")
    r = run_script("--replay-json", str(bench), str(doc))
    assert r.returncode == 1 and r.stderr.startswith("error:") and doc.read_text() == "<!-- figures:replay -->\nno end\n"


def test_the_repository_docs_match_their_json() -> None:
    r = run_script("--check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cost_risk_curves_are_drawn_with_labels_and_the_equal_risk_table(catalog, trace, stub_predictor) -> None:  # type: ignore[no-untyped-def]
    import re

    hours = 24 * 3
    wave = trace([0.5 + 2.5 * (i % 24 >= 12) for i in range(hours)], name="wave", provisioned=(4, 4))
    r = run_replay([wave], catalog, ReplayConfig(region="r", families=(), policies=("static", "percentile",
                                                                                     "sculpt", "oracle")),
                   predictor_factory=stub_predictor)
    curves = {"sculpt": [(0.0, 90.0), (0.01, 80.0), (0.02, 70.0)], "percentile": [(0.0, 95.0), (0.03, 75.0)]}
    labels = {"sculpt": ["a=0", "a=0.5", "a=1"], "percentile": ["m=+15%", "m=+0%"]}
    eq = {"percentile": {"risk": 0.005, "x_oracle": 1.2, "oom_events": 0, "sculpt_x_oracle": 1.1,
                         "best_baseline": "percentile", "best_x_oracle": 1.2, "ratio_to_best": 0.9167}}
    text = render(r, curves=curves, labels=labels, equal_risk=eq)
    section = text[text.index('id="cost-risk"'):text.index("Cumulative cost")]
    assert section.count("<path d=\"M") == 2  # one polyline per curve
    assert len(re.findall(r'<circle [^>]*r="3.5"', section)) == 5  # one small dot per swept point
    for lab in ("a=0.5", "a=1", "m=+15%"):
        assert f">{lab}</text>" in section
    same = render(r, curves={"sculpt": [(0.01, 80.0), (0.01, 80.0), (0.02, 70.0)]},
                  labels={"sculpt": ["a=0.2", "a=0.4", "a=1"]})
    assert ">a=0.2…0.4</text>" in same and ">a=0.4</text>" not in same  # coinciding settings share a label
    assert "stroke-dasharray" in section  # the guide at the percentile's risk
    table = section[section.index('id="equal-risk"'):]
    assert "0.500%" in table and "1.100" in table and "0.917" in table and 'class="best"' in table
