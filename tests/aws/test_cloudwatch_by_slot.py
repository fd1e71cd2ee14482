"""CloudWatch read by slot id for a Pulumi stack: slot -> EC2 instance id from the stack outputs.

Real parts: moto's EC2 and CloudWatch over HTTP, the SDK's Automation API code and the PulumiEngine, the
sculptor's LivePort. Doubles: the ``pulumi`` CLI process (tests/pulumi/cli_double.py), whose updates are
played into moto by tests/aws/moto_stack.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("pulumi", reason="the aws extra is not installed")

from sculpt.app.cloud import CloudWiring, cloudwatch_by_slot  # noqa: E402
from sculpt.catalog import load_catalog  # noqa: E402
from sculpt.domain.fleet import Slot  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from sculpt.metrics.cloudwatch import make_client  # noqa: E402
from tests.aws.moto_stack import MotoStack  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402
from tests.pulumi.conftest import make_fleet  # noqa: E402

T0 = 1_764_310_000.0 - (1_764_310_000.0 % 300)


def _fleet() -> object:
    fleet = make_fleet("aws", replicas={"min": 1, "max": 2, "desired": 2})
    return fleet.with_slots([Slot(id="web-0", shape="m6i.large", region="us-east-1"),
                             Slot(id="web-1", shape="c6i.xlarge", region="us-east-1")])


def _engine(tmp_path: Path, moto_url: str) -> tuple[PulumiEngine, MotoStack]:
    stack = MotoStack(moto_url)
    cli = PulumiProcessDouble(render=stack.render)
    fleet = _fleet()
    eng = PulumiEngine(fleet.spec, tmp_path, Ledger(tmp_path / "ledger.db"), command=cli, preview_before_up=False)
    eng.up(fleet)
    return eng, stack


def _put_cpu(url: str, instance_id: str, pcts: list[float]) -> None:
    cw = make_client("cloudwatch", "us-east-1", url)
    cw.put_metric_data(Namespace="AWS/EC2", MetricData=[
        {"MetricName": "CPUUtilization", "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
         "Timestamp": datetime.fromtimestamp(T0 + 60 * i, UTC), "Value": v, "Unit": "Percent"}
        for i, v in enumerate(pcts)])


def test_cloudwatch_is_queried_by_instance_id_and_answers_by_slot_in_cores(tmp_path: Path, moto_url: str) -> None:
    eng, stack = _engine(tmp_path, moto_url)
    assert stack.ids["web-0"].startswith("i-")
    _put_cpu(moto_url, stack.ids["web-0"], [50.0, 25.0])
    _put_cpu(moto_url, stack.ids["web-1"], [10.0, 75.0])
    src = cloudwatch_by_slot(eng, load_catalog("aws"), "us-east-1", endpoint_url=moto_url)
    out = src.read(["web-0", "web-1", "web-9"], T0, T0 + 120, 60)
    assert [s.values["cpu_pct"] for s in out["web-0"]] == [50.0, 25.0]
    assert [s.values["cpu_cores"] for s in out["web-0"]] == [1.0, 0.5]  # m6i.large: 2 vCPUs
    assert [s.values["cpu_cores"] for s in out["web-1"]] == [0.4, 3.0]  # c6i.xlarge: 4 vCPUs
    assert out["web-9"] == []  # not in the stack outputs: no data, the loop holds it


def test_live_port_reads_cloudwatch_by_slot_through_the_cloud_wiring(tmp_path: Path, moto_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from sculpt.domain.spec import FleetSpec
    from sculpt.loop.live import EngineFleetView, LivePort
    from sculpt.loop.service import stream_names
    from sculpt.migrate.actuator import Recommender

    eng, stack = _engine(tmp_path, moto_url)
    _put_cpu(moto_url, stack.ids["web-1"], [30.0, 40.0])
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    spec: FleetSpec = eng.spec
    cloud = CloudWiring.of(eng, load_catalog("aws"), spec, mode="recommend")
    from sculpt.metrics.readings import RangeReadings

    readings = RangeReadings(cloud.readings_source("cloudwatch"), window_s=900.0, step_s=60.0)
    port = LivePort(spec, load_catalog("aws"), EngineFleetView(eng), readings, Recommender(),
                    stream_names("web", 2))
    obs = port.observe(T0 + 120)
    # web-1 reported: its last CPUUtilization (40 % of 4 vCPUs); web-0 did not: held with a warning
    assert list(obs.cpu_cores) == [1.6]
    assert port.values["web-1"]["cpu_pct"] == 40.0
    assert any("web-0: no CPU reading" in w for w in port.warnings)
