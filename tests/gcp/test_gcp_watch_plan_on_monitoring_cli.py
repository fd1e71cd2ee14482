"""`sculpt watch --once` and `sculpt plan` on a GCP stack through the CLI, reading Cloud Monitoring by slot
(``--source gcp-monitoring``).

Real parts: the verbs, the composition root, the PulumiEngine and the SDK's Automation API code, the ledger,
the catalog, the model and the decision, ``GcpPlatform``'s slot-to-instance match and the Compute and
Monitoring clients over HTTP. Doubles: the ``pulumi`` CLI process (tests/pulumi/cli_double.py, injected
through ``sculpt.engine.pulumi_engine.make_engine``), the Compute API (tests/gcp/fake_compute.py) and Cloud
Monitoring (tests/gcp/fake_monitoring.py), on 127.0.0.1. The verbs use the real clock: the readings put in
the double are placed relative to now, and nothing waits.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pulumi", reason="the gcp extra is not installed")

from tests.gcp.cli_user import PROJECT, GcpUser  # noqa: E402
from tests.gcp.fake_compute import FakeCompute  # noqa: E402
from tests.gcp.fake_monitoring import FakeMonitoring  # noqa: E402


def _put_minutes(monitoring: FakeMonitoring, vm: str, fraction: float, minutes: int) -> None:
    """``minutes`` of once-a-minute CPU samples ending now (half a minute ago, then every minute before)."""
    now = time.time()
    monitoring.put(PROJECT, vm, [(now - 30 - 60 * i, fraction) for i in range(minutes)])


def test_process_double_watch_once_reads_cloud_monitoring_by_slot_in_cores(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring, monkeypatch: pytest.MonkeyPatch) -> None:
    user = GcpUser(tmp_path, compute, monkeypatch)
    _put_minutes(monitoring, user.stack.vm("web-0").name, 0.9, minutes=20)
    r = user.run("watch", "--once", "--mode", "recommend", "--model", "last-value", "--source", "gcp-monitoring",
                 "--json", "--backfill", "0")
    tick = json.loads(r.stdout.splitlines()[-1])
    (inst,) = tick["instances"]
    assert inst["slot"] == "web-0" and inst["shape"] == "n2-standard-2"
    assert inst["cpu_cores"] == pytest.approx(1.8)  # 90 % of the shape's 2 vCPUs, from Cloud Monitoring
    assert "learned" not in r.stderr  # --backfill 0
    assert monitoring.filters() and all(f.endswith(f'one_of("{user.stack.vm("web-0").name}")')
                                        for f in monitoring.filters())
    assert {path for path, _ in monitoring.requests} == {f"/v3/projects/{PROJECT}/timeSeries"}


def test_process_double_a_new_watcher_learns_cloud_monitoring_history_before_it_decides(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring, monkeypatch: pytest.MonkeyPatch) -> None:
    user = GcpUser(tmp_path, compute, monkeypatch)
    _put_minutes(monitoring, user.stack.vm("web-0").name, 0.95, minutes=6 * 60)  # busy, long before this watcher
    cold = user.run("plan", "--model", "last-value", "--source", "gcp-monitoring", "--sample", "0",
                    "--backfill", "0", "--json")
    assert "learned" not in cold.stderr
    warm = user.run("watch", "--once", "--mode", "recommend", "--model", "last-value", "--source",
                    "gcp-monitoring", "--json")
    # 6 h of minutes, aligned by the source's 5-minute backfill step: 72 samples of the one slot
    assert "learned 72 sample(s) from the last 24 h of --source gcp-monitoring" in warm.stderr
    assert any(q["aggregation.alignmentPeriod"] == "300s" for _, q in monitoring.requests)
    tick = json.loads(warm.stdout.splitlines()[-1])
    assert "no history yet" not in tick["reason"] and tick["instances"][0]["confidence"] > 0
    assert tick["decision"] != "hold"  # 95 % of 2 vCPUs for hours: a bigger shape is worth it
    again = user.run("plan", "--model", "last-value", "--source", "gcp-monitoring", "--sample", "0", "--json")
    assert "resumed model 'last-value' from its checkpoint" in again.stderr and "learned" not in again.stderr
    assert json.loads(again.stdout)["confidence"] > json.loads(cold.stdout)["confidence"]


def test_process_double_without_credentials_watch_stops_in_one_line(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring, monkeypatch: pytest.MonkeyPatch) -> None:
    user = GcpUser(tmp_path, compute, monkeypatch)
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    monkeypatch.setitem(sys.modules, "google.auth", None)
    r = user.run("watch", "--once", "--mode", "recommend", "--source", "gcp-monitoring", "--json", code=1)
    errors = [line for line in r.stderr.splitlines() if "no GCP credentials" in line]
    assert len(errors) == 1 and "To fix:" in errors[0] and "GOOGLE_OAUTH_ACCESS_TOKEN" in errors[0]
    assert monitoring.requests == []
