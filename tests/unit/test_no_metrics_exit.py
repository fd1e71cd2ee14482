"""``sculpt plan`` and ``sculpt watch --once`` exit 3 when the running fleet gave no usable metric (issue 14):
a source that is down or answers malformed JSON must not let a CI gate pass on "hold: no usable metrics".
A real local fleet (``sculpt up``) and a real local HTTP server standing in for Prometheus; the output
(``--json``) is still printed, and there is no ``error:`` line and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from sculpt.cli.main import app
from tests.helpers import serving

pytestmark = pytest.mark.e2e



class FakeProm(BaseHTTPRequestHandler):
    """Answers every range query with ``mode``: a good matrix for web-0, or one of the broken answers."""

    mode = "good"

    def do_GET(self) -> None:  # noqa: N802
        # the range's end, as Prometheus aligns samples: every query of one read gets the same time
        now = float(parse_qs(urlparse(self.path).query)["end"][0])
        bodies: dict[str, Any] = {
            "good": {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"instance": "web-0"}, "values": [[now, "0.25"]]}]}},
            "data-list": {"status": "success", "data": []},
            "series-string": {"status": "success", "data": {"resultType": "matrix", "result": ["web-0"]}},
            "nan": {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"instance": "web-0"}, "values": [[now, "NaN"]]}]}},
        }
        raw = json.dumps(bodies[type(self).mode]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prom() -> Iterator[str]:
    with serving(FakeProm) as url:
        yield url


def sculpt(*args: str, code: int = 0) -> Any:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == code, f"sculpt {' '.join(args)} -> {r.exit_code}\n{r.output}\n{r.exception!r}"
    assert "Traceback" not in r.output
    return r


@pytest.fixture
def fleet(sculpt_home: Path, tmp_path: Path) -> Iterator[Path]:
    spec = tmp_path / "sculpt.yaml"
    sculpt("init", "--spec", str(spec))
    sculpt("up", "--spec", str(spec))
    try:
        yield spec
    finally:
        sculpt("down", "--spec", str(spec))


def test_plan_and_watch_once_exit_3_without_usable_metrics(fleet: Path, prom: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    spec = str(fleet)
    src = f"prometheus={prom}"
    FakeProm.mode = "good"  # a working source: the same commands exit 0 (so 3 below is the source's doing)
    tick = json.loads(sculpt("watch", "--spec", spec, "--once", "--json", "--model", "last-value", "--source", src,
                             "--backfill", "0").stdout.splitlines()[-1])
    assert tick["instances"][0]["cpu_cores"] == 0.25
    sculpt("plan", "--spec", spec, "--json", "--model", "last-value", "--source", src, "--sample", "0",
           "--backfill", "0")

    for mode in ("data-list", "series-string", "nan"):
        FakeProm.mode = mode
        r = sculpt("watch", "--spec", spec, "--once", "--json", "--model", "last-value", "--source", src,
                   "--backfill", "0", code=3)
        tick = json.loads(r.stdout.splitlines()[-1])  # the JSON is still printed
        assert tick["instances"] == [] and "no usable metrics" in tick["reason"]
        assert not [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert "warning: no usable metrics were read" in r.stderr
        r = sculpt("plan", "--spec", spec, "--json", "--model", "last-value", "--source", src, "--sample", "0",
                   "--backfill", "0", code=3)
        assert json.loads(r.stdout)["decision"] == "hold"
        if mode != "nan":  # the source's one-line reason is logged as a warning (stderr in a real process)
            assert any("metric source failed: Prometheus at" in m for m in caplog.messages)
        caplog.clear()

    # the real process, against a server that is not there (the issue's `prometheus=http://127.0.0.1:1`):
    # exit 3, the source's reason as a `warning:` line, no `error:` line, no traceback
    r = subprocess.run([sys.executable, "-m", "sculpt.cli.main", "watch", "--spec", spec, "--once", "--json",
                        "--model", "last-value", "--source", "prometheus=http://127.0.0.1:1", "--backfill", "0"],
                       capture_output=True, text=True, timeout=120, env={**os.environ})
    assert r.returncode == 3, r.stderr
    assert "warning: metric source failed: cannot read from Prometheus at http://127.0.0.1:1" in r.stderr
    assert "error:" not in r.stderr and "Traceback" not in r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["instances"] == []


def test_plan_without_a_running_fleet(sculpt_home: Path, tmp_path: Path) -> None:
    """Nothing runs. With the default local source the plan says so (exit 0, as documented); with a named
    metric source nothing could be read from it, so the plan is not a verdict: exit 3, JSON still printed."""
    spec = tmp_path / "sculpt.yaml"
    sculpt("init", "--spec", str(spec))
    plan = json.loads(sculpt("plan", "--spec", str(spec), "--json").stdout)
    assert "not running" in plan["reason"]
    r = sculpt("plan", "--spec", str(spec), "--json", "--source", "prometheus=http://127.0.0.1:1", "--backfill", "0",
               code=3)
    assert "not running" in json.loads(r.stdout)["reason"]
    assert "had no instance to read" in r.stderr and "error:" not in r.stderr
