"""End to end through the CLI: init, up, requests through the LB, status, a shape change, history, rollback,
crash restart, down — real agent and demo-app processes — and the one-line errors for bad input, each
leaving a consistent ledger.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli_user import Cli, dead
from tests.helpers import http

pytestmark = pytest.mark.e2e


def cpu_quota_of(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "cpu" in ctrls.split(","):
            f = Path("/sys/fs/cgroup/cpu", path.lstrip("/"), "cpu.cfs_quota_us")
            return int(f.read_text()) if path.strip("/") and f.exists() else None
    return None


def test_the_first_run_journey(cli: Cli) -> None:
    up = cli.json("up")
    assert (up["stack"], up["version"], up["result"]) == ("web", 1, "succeeded")
    helped = cli("up", "--help").stdout  # `up --help` documents every key `up --json` prints
    assert [k for k in up if f'"{k}"' not in helped] == []
    lb = up["lb"]["address"]
    assert http("PUT", f"http://{lb}/kv/greeting", b"hello")[0] in (200, 201, 204)
    assert http("GET", f"http://{lb}/kv/greeting") == (200, b"hello")

    st = cli.json("status")
    assert {"stack", "version", "engine", "provider", "lb", "instances"} <= set(st)
    assert (st["stack"], st["version"], st["engine"], st["provider"], st["lb"]) == ("web", 1, "local", "local",
                                                                                   {"address": lb})
    (inst,) = st["instances"]
    assert {"id", "shape", "region", "colour", "weight", "healthy", "pid", "address", "cpu_limit",
            "mem_limit_mb", "enforcement"} <= set(inst)
    assert (inst["id"], inst["shape"], inst["region"], inst["healthy"]) == ("web-0", "std-0.5c-512m", "local-a", True)
    assert "web-0" in cli("status").stdout

    cli.edit("shape: std-0.5c-512m", "shape: std-1c-1024m")
    assert cli.json("up", "--message", "bigger")["version"] == 2
    (inst2,) = cli.json("status")["instances"]
    assert (inst2["shape"], inst2["cpu_limit"], inst2["mem_limit_mb"]) == ("std-1c-1024m", 1.0, 1024)
    if inst2["enforcement"].startswith("cgroup"):
        assert inst2["pid"] == inst["pid"]  # resized live, not restarted
        if inst2["enforcement"] == "cgroup-v1":
            assert cpu_quota_of(inst2["pid"]) == 100_000
    assert http("GET", f"http://{lb}/kv/greeting") == (200, b"hello")

    hist = cli.json("history")
    assert [(h["version"], h["result"], h["message"]) for h in hist] == [(1, "succeeded", "up"),
                                                                         (2, "succeeded", "bigger")]
    assert all({"version", "time", "result", "message", "fleet"} <= set(h) for h in hist)
    assert hist[1]["fleet"]["slots"][0]["shape"] == "std-1c-1024m"
    assert "bigger" in cli("history").stdout

    rb = cli.json("rollback", "--to", "1")
    assert (rb["version"], rb["rolled_back_to"]) == (3, 1)
    (inst3,) = cli.json("status")["instances"]
    assert (inst3["shape"], inst3["cpu_limit"]) == ("std-0.5c-512m", 0.5)
    assert cli.json("history")[-1]["message"] == "rollback to 1"

    # a crashed instance comes back by itself
    os.kill(inst3["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        (i,) = cli.json("status")["instances"]
        if i["restarts"] == 1 and i["healthy"]:
            break
        assert time.monotonic() < deadline, "the agent did not restart the killed instance"
        time.sleep(0.1)
    assert http("GET", f"http://{lb}/healthz")[0] == 200

    seen = set(cli.pids)
    assert "down" in cli("down").stdout
    assert [p for p in seen if not dead(p)] == []
    gone = cli.json("status", code=1)
    assert (gone["version"], gone["lb"], gone["instances"]) == (None, None, [])
    assert "not running" in cli("status", code=1).stderr
    assert [h["kind"] for h in cli.json("history")] == ["up", "up", "rollback", "down"]


def test_rollback_without_an_earlier_version_is_a_clear_error(cli: Cli) -> None:
    cli("up")
    r = cli("rollback", code=1)
    assert r.stderr.strip().startswith("error: stack 'web' has no earlier succeeded version")
    assert len(r.stderr.strip().splitlines()) == 1


def one_line_error(r: Any, *needles: str) -> None:
    errors = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and r.stderr.strip().endswith(errors[0]) and "To fix:" in errors[0], r.stderr
    for n in needles:
        assert n in errors[0]
    assert "Traceback" not in r.output


def test_unknown_provider_is_one_line_and_touches_nothing(cli: Cli) -> None:
    cli.edit("provider: local", "provider: azure")
    one_line_error(cli("up", code=1), "provider")
    cli.edit("provider: azure", "provider: local")
    assert cli.json("history") == []


def test_shape_not_in_catalog_is_one_line_and_touches_nothing(cli: Cli) -> None:
    cli.edit("shape: std-0.5c-512m", "shape: m5.large")
    one_line_error(cli("up", code=1), "shape 'm5.large' is not in the local catalog")
    assert cli.json("history") == []
    assert cli.json("status", code=1)["instances"] == []


def test_lb_port_in_use_fails_the_version_and_leaves_nothing_running(cli: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cli.edit("port: 0", f"port: {port}")
        one_line_error(cli("up", code=1), f"127.0.0.1:{port}")
    hist = cli.json("history")
    assert [(h["version"], h["result"]) for h in hist] == [(1, "failed")]
    assert cli.json("status", code=1)["instances"] == []


def test_app_that_exits_at_once_reports_its_stderr_and_keeps_the_last_good_version(cli: Cli) -> None:
    first = cli.json("up")["instances"][0]
    cli.edit("command: null", f"command: [{sys.executable}, -c, \"import sys; sys.exit('no such db')\"]")
    one_line_error(cli("up", code=1), "exited at once with code 1: no such db")
    hist = cli.json("history")
    assert [(h["version"], h["result"]) for h in hist] == [(1, "succeeded"), (2, "failed")]
    st = cli.json("status")
    assert st["version"] == 1
    assert [(i["pid"], i["healthy"]) for i in st["instances"]] == [(first["pid"], True)]


def test_cli_start_does_not_import_heavy_modules_or_the_agent() -> None:
    code = ("import sys; import sculpt.cli.main; "
            "bad = [m for m in ('torch', 'pulumi', 'boto3', 'sculpt.providers.local.agent', 'sculpt.engine.local') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_an_app_that_never_becomes_healthy_times_out_with_a_clear_error(cli: Cli) -> None:
    silent = f"command: [{sys.executable}, -c, \"import time; time.sleep(60)\"]"
    cli.edit("command: null", silent)
    one_line_error(cli("up", "--timeout", "1", code=1), "is not healthy after 1s")
    assert [h["result"] for h in cli.json("history")] == ["failed"]
    assert cli.json("status", code=1)["instances"] == []


def test_status_says_which_forecasting_models_run(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.json("up")
    assert cli.json("status")["forecast"]["ensemble"] == "river+lstm"  # the dev install has torch
    monkeypatch.setenv("SCULPT_NO_TORCH", "1")  # as on a machine without the lstm extra
    st = cli.json("status")
    assert st["forecast"]["ensemble"] == "river-only" and "lstm" not in st["forecast"]["models"]
    assert "the ensemble runs river-only" in cli("status").stdout
