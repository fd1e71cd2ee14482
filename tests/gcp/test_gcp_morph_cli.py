"""`sculpt morph` on a GCP stack: wired to ``GcpPlatform``, refused in one line when unsafe, and run end to end
through the CLI.

Real parts: the CLI, the wiring, the PulumiEngine and the SDK's Automation API code, the ledger, the catalog,
the orchestrator, ``GcpPlatform`` and its Compute API client over HTTP. Doubles: the ``pulumi`` CLI process
(tests/pulumi/cli_double.py, injected through ``sculpt.engine.pulumi_engine.make_engine``) and the Compute
API (tests/gcp/fake_compute.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi", reason="the gcp extra is not installed")

from sculpt.app.wiring import Wiring, morph_platform  # noqa: E402
from sculpt.catalog import load_catalog  # noqa: E402
from sculpt.domain.errors import ConfigError  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from sculpt.migrate import Timeouts  # noqa: E402
from sculpt.migrate.gcp import GcpPlatform  # noqa: E402
from tests.gcp.cli_user import PROJECT, GcpUser  # noqa: E402
from tests.gcp.fake_compute import FakeCompute  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402
from tests.pulumi.conftest import make_fleet  # noqa: E402

NONE = {"state_sync": {"strategy": "none"}}


def _wiring(tmp_path: Path, cli: PulumiProcessDouble | None = None, **spec: Any) -> Wiring:
    fleet = make_fleet("gcp", **spec)
    ledger = Ledger(tmp_path / "ledger.db")
    engine = PulumiEngine(fleet.spec, tmp_path, ledger, command=cli or PulumiProcessDouble())
    return Wiring(fleet.spec.fleet, tmp_path, ledger, load_catalog("gcp"), engine, fleet.spec, None)


def test_process_double_sculpt_morph_on_gcp_uses_the_gcp_platform(tmp_path: Path, compute: FakeCompute) -> None:
    platform, timeouts = morph_platform(_wiring(tmp_path, app=NONE))
    assert isinstance(platform, GcpPlatform)
    assert isinstance(timeouts, Timeouts) and timeouts.healthy_s >= 300  # instances boot in minutes
    assert not platform.private_reachable


@pytest.mark.parametrize(("spec", "why"), [
    ({}, "state_sync 'http' copies state between the instances' private addresses"),  # the default: http
    ({"app": {"state_sync": {"strategy": "volume"}}}, "state_sync 'volume'"),
    ({"app": NONE, "lb": {"routing": "hash"}}, "a GCP URL map routes by weight"),
])
def test_process_double_what_cannot_be_morphed_on_gcp_is_one_line(tmp_path: Path, compute: FakeCompute,
                                                                   spec: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why) as e:
        morph_platform(_wiring(tmp_path, **spec))
    assert "\n" not in str(e.value) and "To fix:" in str(e.value)


def test_process_double_http_sync_is_allowed_when_the_controller_can_reach_the_instances(
        tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCULPT_PRIVATE_REACHABLE", "1")
    platform, _ = morph_platform(_wiring(tmp_path))
    assert isinstance(platform, GcpPlatform) and platform.private_reachable


def test_process_double_without_credentials_the_morph_is_refused_before_any_update(
        tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    monkeypatch.setitem(sys.modules, "google.auth", None)
    cli = PulumiProcessDouble()
    with pytest.raises(ConfigError, match="no GCP credentials") as e:
        morph_platform(_wiring(tmp_path, cli, app=NONE))
    assert "\n" not in str(e.value) and "GOOGLE_OAUTH_ACCESS_TOKEN" in str(e.value)
    assert cli.ups == [] and compute.requests == []


def test_process_double_sculpt_up_then_sculpt_morph_on_gcp_through_the_cli(
        tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    user = GcpUser(tmp_path, compute, monkeypatch)
    report = json.loads(user.run("morph", "--shape", "n2-highcpu-4", "--json").stdout)
    assert (report["result"], report["strategy"]) == ("done", "blue-green")
    assert report["to"] == {"shape": "n2-highcpu-4", "region": "us-central1"}
    assert [s["state"] for s in report["steps"]] == ["PROVISION_GREEN", "WAIT_HEALTHY", "SYNC_STATE",
                                                     "PAUSE_FINAL_DELTA", "SHIFT", "RESUME", "DRAIN_BLUE",
                                                     "RETIRE_BLUE"]
    last = json.loads(user.cli.ups[-1]["sculpt:fleet"])
    assert [(s["id"], s["shape"], s["colour"]) for s in last["slots"]] == [("web-1", "n2-highcpu-4", "green")]
    assert user.cli.ups[-1]["gcp:project"] == PROJECT
    assert user.stack.group_names["green"] in compute.listings()


@pytest.mark.parametrize(("fields", "why"), [
    ({"provider": "aws", "shape": "m6i.large", "region": "us-east-1", "gcp_project": "my-project"},
     "gcp_project is for provider gcp"),
    ({"gcp_project": "My_Project"}, "gcp_project"),
])
def test_gcp_project_in_the_spec_is_validated_in_one_line(fields: dict[str, str], why: str) -> None:
    from sculpt.domain.spec import parse_spec

    base = {"fleet": "web", "engine": "pulumi", "provider": "gcp", "shape": "n2-standard-2", "region": "us-central1"}
    with pytest.raises(ConfigError, match=why) as e:
        parse_spec({**base, **fields})
    assert "\n" not in str(e.value)
    assert parse_spec({**base, "gcp_project": "example.com:my-project-1"}).gcp_project == "example.com:my-project-1"


def test_process_double_sculpt_status_on_gcp_names_each_slots_instance_and_its_health(
        tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    user = GcpUser(tmp_path, compute, monkeypatch)
    (inst,) = json.loads(user.run("status", "--json").stdout)["instances"]
    assert (inst["id"], inst["healthy"], inst["instance_id"]) == ("web-0", True, user.stack.vm("web-0").name)
    compute.forbidden = True  # health cannot be read: the verb still answers, and says why
    body = json.loads(user.run("status", "--json").stdout)
    assert body["instances"][0]["healthy"] is None and "HTTP 403" in body["notes"][0]
