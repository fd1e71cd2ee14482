"""Cloud Monitoring read by slot id for a GCP stack (``--source gcp-monitoring``): slot -> MIG instance name
through ``GcpPlatform``'s match over the Compute API, then Cloud Monitoring by instance name.

Real parts: ``CloudWiring``, ``GcpPlatform``, the Compute and Monitoring clients over HTTP, the PulumiEngine
and the SDK's Automation API code, the sculptor's ``RangeReadings`` and ``LivePort``. Doubles: the
``pulumi`` CLI process (tests/pulumi/cli_double.py), whose updates tests/gcp/fake_compute.py plays into a
Compute API double, and the Cloud Monitoring API double (tests/gcp/fake_monitoring.py), both on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi", reason="the gcp extra is not installed")

from sculpt.app.cloud import CloudWiring  # noqa: E402
from sculpt.catalog import load_catalog  # noqa: E402
from sculpt.domain.errors import ConfigError, ProviderError  # noqa: E402
from sculpt.domain.fleet import SlotInfo  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from sculpt.loop.live import EngineFleetView, LivePort  # noqa: E402
from sculpt.loop.service import stream_names  # noqa: E402
from sculpt.metrics.readings import RangeReadings, make_readings  # noqa: E402
from sculpt.migrate.actuator import Recommender  # noqa: E402
from tests.gcp.fake_compute import FakeCompute, FakeGcpStack  # noqa: E402
from tests.gcp.fake_monitoring import FakeMonitoring  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402
from tests.pulumi.conftest import make_fleet  # noqa: E402

T0 = 1_764_309_600.0
PROJECT = "sculpt-test"
SPEC: dict[str, Any] = {"gcp_project": PROJECT, "app": {"state_sync": {"strategy": "none"}},
                        "replicas": {"min": 1, "max": 2, "desired": 2}}
TWO = [("web-0", "n2-standard-2", "blue", 100), ("web-1", "n2-highcpu-4", "green", 0)]


class Rig:
    def __init__(self, tmp_path: Path, compute: FakeCompute, slots: list[tuple[str, str, str, int]] = TWO) -> None:
        self.stack = FakeGcpStack(compute, boot_listings=0)
        self.cli = PulumiProcessDouble(render=self.stack.render)
        fleet = make_fleet("gcp", slots=slots, **SPEC)
        self.engine = PulumiEngine(fleet.spec, tmp_path, Ledger(tmp_path / "ledger.db"), command=self.cli)
        self.engine.up(fleet, "first")
        self.catalog = load_catalog("gcp")
        self.wiring = CloudWiring.of(self.engine, self.catalog, fleet.spec, mode="recommend")

    def vm(self, slot: str) -> str:
        return self.stack.vm(slot).name


def _put(monitoring: FakeMonitoring, vm: str, fractions: list[float]) -> None:
    monitoring.put(PROJECT, vm, [(T0 + 30 + 60 * i, v) for i, v in enumerate(fractions)])


def test_monitoring_is_asked_by_instance_name_and_answers_by_slot_in_cores(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring) -> None:
    rig = Rig(tmp_path, compute)
    _put(monitoring, rig.vm("web-0"), [0.5, 0.25])
    _put(monitoring, rig.vm("web-1"), [0.1, 0.75])
    out = rig.wiring.readings_source("gcp-monitoring").read(["web-0", "web-1", "web-9"], T0, T0 + 120, 60)
    assert [s.values["cpu_pct"] for s in out["web-0"]] == [50.0, 25.0]
    assert [s.values["cpu_cores"] for s in out["web-0"]] == [1.0, 0.5]  # n2-standard-2: 2 vCPUs
    assert [s.values["cpu_cores"] for s in out["web-1"]] == pytest.approx([0.4, 3.0])  # n2-highcpu-4: 4 vCPUs
    assert out["web-9"] == []  # not in the stack: no data, the loop holds it
    (flt,) = monitoring.filters()  # one request for both instances of the project
    assert f'"{rig.vm("web-0")}"' in flt and f'"{rig.vm("web-1")}"' in flt
    assert set(compute.listings()) == set(rig.stack.group_names.values())  # both colours' MIGs were listed


def test_the_slot_map_follows_the_stack_from_one_read_to_the_next(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring) -> None:
    rig = Rig(tmp_path, compute)
    src = rig.wiring.readings_source("gcp-monitoring")
    old = rig.vm("web-1")
    _put(monitoring, old, [0.9])
    assert [s.values["cpu_pct"] for s in src.read(["web-1"], T0, T0 + 60, 60)["web-1"]] == [90.0]
    # a blue/green step: green's slot web-1 is replaced by web-2 on a new instance of green's MIG
    rig.engine.up(make_fleet("gcp", slots=[TWO[0], ("web-2", "n2-highcpu-4", "green", 0)], **SPEC), "step")
    _put(monitoring, rig.vm("web-2"), [0.2])
    out = src.read(["web-1", "web-2"], T0, T0 + 60, 60)
    assert out["web-1"] == [] and [s.values["cpu_pct"] for s in out["web-2"]] == [20.0]
    assert f'"{old}"' not in monitoring.filters()[-1]


def test_live_port_reads_cores_by_slot_through_the_cloud_wiring(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring) -> None:
    rig = Rig(tmp_path, compute, [("web-0", "n2-standard-2", "blue", 50), ("web-1", "n2-highcpu-4", "green", 50)])
    _put(monitoring, rig.vm("web-1"), [0.3, 0.4])
    readings = RangeReadings(rig.wiring.readings_source("gcp-monitoring"), window_s=900.0, step_s=60.0)
    port = LivePort(rig.engine.spec, rig.catalog, EngineFleetView(rig.engine), readings, Recommender(),
                    stream_names("web", 2))
    obs = port.observe(T0 + 120)
    # web-1 reported: its last minute (40 % of 4 vCPUs); web-0 did not: held with a warning
    assert list(obs.cpu_cores) == pytest.approx([1.6])
    assert any("web-0: no CPU reading" in w for w in port.warnings)


def test_when_the_compute_api_refuses_the_tick_holds_and_the_backfill_says_why(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring) -> None:
    rig = Rig(tmp_path, compute)
    readings = RangeReadings(rig.wiring.readings_source("gcp-monitoring"), window_s=900.0, step_s=60.0)
    compute.forbidden = True
    slots = [SlotInfo(id="web-0", shape="n2-standard-2", region="us-central1")]
    assert readings.latest(slots, T0 + 60) == {}
    with pytest.raises(ProviderError, match="the Compute API refused listing the instances"):
        readings.history(slots, T0, T0 + 60, 300)
    assert monitoring.requests == []


def test_without_credentials_the_source_is_refused_in_one_line_before_any_request(
        tmp_path: Path, compute: FakeCompute, monitoring: FakeMonitoring, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, compute)
    listed = len(compute.requests)
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    monkeypatch.setitem(sys.modules, "google.auth", None)
    with pytest.raises(ConfigError, match="no GCP credentials") as e:
        rig.wiring.readings_source("gcp-monitoring")
    assert "\n" not in str(e.value) and len(compute.requests) == listed and monitoring.requests == []


def test_gcp_monitoring_is_refused_on_aws_in_one_line() -> None:
    fleet = make_fleet("aws")
    with pytest.raises(ConfigError, match="--source gcp-monitoring reads GCP Cloud Monitoring, not 'aws'") as e:
        CloudWiring(None, load_catalog("aws"), fleet.spec).readings_source("gcp-monitoring")
    assert "\n" not in str(e.value) and "--source cloudwatch" in str(e.value)


def test_cloudwatch_on_gcp_and_an_argument_to_gcp_monitoring_are_refused_in_one_line() -> None:
    spec = make_fleet("gcp", **SPEC).spec
    wiring = CloudWiring(None, load_catalog("gcp"), spec)
    with pytest.raises(ConfigError, match="--source cloudwatch reads AWS, not 'gcp'") as e:
        wiring.readings_source("cloudwatch")
    assert "--source gcp-monitoring" in str(e.value)
    with pytest.raises(ConfigError, match="takes no argument"):
        wiring.readings_source("gcp-monitoring=my-project")


def test_off_the_cloud_gcp_monitoring_is_refused_and_listed_among_the_sources() -> None:
    with pytest.raises(ConfigError, match="engine: pulumi, provider: gcp") as e:
        make_readings("gcp-monitoring")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown metric source 'stackdriver'") as e:
        make_readings("stackdriver")
    assert "gcp-monitoring" in str(e.value)
