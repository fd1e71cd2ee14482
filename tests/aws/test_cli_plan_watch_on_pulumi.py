"""`sculpt plan` and `sculpt watch --once` on ``engine: pulumi`` (AWS) through the CLI, reading CloudWatch.

Real parts: the verbs, the composition root, the Pulumi SDK spawning the CLI as a process, the ledger, the
model and the decision, and CloudWatch/ELBv2 over HTTP to moto's server (what the verbs read is what was put
there). Double: the ``pulumi`` executable on ``PATH`` (tests/pulumi/fake_pulumi.py), which runs no program.
"""

from __future__ import annotations

import json
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sculpt.metrics.cloudwatch import make_client
from tests.aws.conftest import FAKE_CREDENTIALS
from tests.pulumi.aws_outputs import instance_id
from tests.pulumi.test_cli_verbs_on_pulumi import User


def _put_cpu(url: str, iid: str, pct: float, minutes: int = 20) -> None:
    now = time.time()
    make_client("cloudwatch", "us-east-1", url).put_metric_data(Namespace="AWS/EC2", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
         "Timestamp": datetime.fromtimestamp(now - 60 * i, UTC), "Value": pct, "Unit": "Percent"}
        for i in range(minutes)])


@pytest.fixture
def cloud_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_url: str,
               request: pytest.FixtureRequest) -> User:
    # moto's CloudWatch lives for the whole session: a fleet name per test keeps each test's metrics its own
    user = User(tmp_path, monkeypatch, fleet=f"f{zlib.crc32(request.node.name.encode()):x}")
    for k, v in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    user.run("up")
    return user


def test_fake_cli_watch_once_reads_cloudwatch_by_slot_in_cores(cloud_user: User, moto_url: str) -> None:
    _put_cpu(moto_url, instance_id(f"{cloud_user.fleet}-0"), 90.0)
    r = cloud_user.run("watch", "--once", "--mode", "recommend", "--model", "last-value", "--source",
                       "cloudwatch", "--json", "--backfill", "0")
    tick = json.loads(r.stdout.splitlines()[-1])
    (inst,) = tick["instances"]
    assert inst["slot"] == f"{cloud_user.fleet}-0" and inst["shape"] == "m6i.large"
    assert inst["cpu_cores"] == pytest.approx(1.8)  # 90 % of the shape's 2 vCPUs, from CloudWatch
    assert inst["utilisation"] == pytest.approx(0.9)
    assert "learned" not in r.stderr  # --backfill 0: this tick saw one reading


def test_fake_cli_plan_on_pulumi_prints_json_and_a_pr_comment(cloud_user: User, moto_url: str) -> None:
    _put_cpu(moto_url, instance_id(f"{cloud_user.fleet}-0"), 30.0)
    plan = cloud_user.json("plan", "--model", "last-value", "--source", "cloudwatch", "--sample", "0")
    assert plan["stack"] == cloud_user.fleet and plan["decision"] in ("hold", "migrate", "scale")
    assert {p["rule"] for p in plan["policy"]} >= {"allowed-families", "budget", "replica-bounds"}
    assert all(shape.startswith(("m6i.", "c6i.")) for shape in plan["distribution"])  # the spec's families
    md = cloud_user.run("plan", "--model", "last-value", "--source", "cloudwatch", "--sample", "0",
                        "--markdown").stdout
    assert cloud_user.fleet in md and "|" in md  # a markdown table for the pull request


def test_fake_cli_status_reads_the_albs_target_health(cloud_user: User) -> None:
    status = cloud_user.json("status")
    (inst,) = status["instances"]
    # the fake CLI's outputs name target groups moto does not have: the ALB's answer is an error, said once
    assert inst["healthy"] is None
    assert len(status["notes"]) == 1 and "DescribeTargetHealth" in status["notes"][0]


def _put_hours(url: str, iid: str, pct: float, hours: float) -> None:
    """``hours`` of 5-minute CPU samples ending now (CloudWatch basic monitoring's resolution)."""
    now = time.time()
    cw = make_client("cloudwatch", "us-east-1", url)
    points = [now - 300 * i for i in range(int(hours * 12))]
    for chunk in range(0, len(points), 500):
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=[
            {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": iid}],
             "Timestamp": datetime.fromtimestamp(t, UTC), "Value": pct, "Unit": "Percent"}
            for t in points[chunk:chunk + 500]])


def test_fake_cli_a_new_watcher_learns_cloudwatch_history_before_it_decides(cloud_user: User,
                                                                          moto_url: str) -> None:
    _put_hours(moto_url, instance_id(f"{cloud_user.fleet}-0"), 95.0, hours=6)  # a busy fleet, long before this watcher
    # one reading, no backfill: at most one period seen (a reading in an hour's last 5 minutes closes it)
    cold = cloud_user.run("plan", "--model", "last-value", "--source", "cloudwatch", "--sample", "0",
                          "--backfill", "0", "--json")
    assert "learned" not in cold.stderr
    warm = cloud_user.run("watch", "--once", "--mode", "recommend", "--model", "last-value", "--source",
                          "cloudwatch", "--json")
    assert "learned 72 sample(s) from the last 24 h of --source cloudwatch" in warm.stderr
    tick = json.loads(warm.stdout.splitlines()[-1])
    assert "no history yet" not in tick["reason"] and tick["instances"][0]["confidence"] > 0
    assert tick["decision"] != "hold"  # 95 % of 2 vCPUs for hours: a bigger shape is worth it
    again = cloud_user.run("plan", "--model", "last-value", "--source", "cloudwatch", "--sample", "0", "--json")
    assert "resumed model 'last-value' from its checkpoint" in again.stderr and "learned" not in again.stderr
    assert json.loads(again.stdout)["confidence"] > json.loads(cold.stdout)["confidence"]
