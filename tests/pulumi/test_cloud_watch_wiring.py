"""``sculpt watch --mode auto`` on ``engine: pulumi``: wired to the cloud platform, or refused in one line.

Nothing here runs the ``pulumi`` CLI: wiring reads only the ledger (the engine runs the CLI on first use).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pulumi")

from sculpt.app.service import open_service  # noqa: E402
from sculpt.domain.errors import ConfigError  # noqa: E402
from sculpt.migrate.actuator import OrchestratorActuator, Recommender  # noqa: E402
from sculpt.migrate.cloud import CloudPlatform  # noqa: E402

SPEC = "fleet: web\nengine: pulumi\nprovider: {provider}\nshape: {shape}\nregion: {region}\n"


def _spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "", provider: str = "aws") -> Path:
    monkeypatch.setenv("SCULPT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SCULPT_PRIVATE_REACHABLE", raising=False)
    shape, region = ("m6i.large", "us-east-1") if provider == "aws" else ("n2-standard-2", "us-central1")
    path = tmp_path / "sculpt.yaml"
    path.write_text(SPEC.format(provider=provider, shape=shape, region=region) + extra)
    return path


def test_auto_mode_on_pulumi_morphs_through_the_cloud_platform(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, monkeypatch, "app:\n  state_sync: {strategy: none}\nlb: {drain_s: 20}\n")
    opened = open_service(spec, mode="auto", model="last-value")
    try:
        actuator = opened.service.port.actuator
        assert isinstance(actuator, OrchestratorActuator)
        assert isinstance(actuator.platform, CloudPlatform)
        assert actuator.platform.live_resize_blocker() is not None
        assert actuator.timeouts.healthy_s >= 600 and actuator.timeouts.drain_s >= 20
    finally:
        opened.close()


def test_auto_mode_on_pulumi_refuses_http_sync_it_cannot_reach_in_one_line(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, monkeypatch)  # state_sync defaults to http
    with pytest.raises(ConfigError) as e:
        open_service(spec, mode="auto", model="last-value")
    msg = str(e.value)
    assert "\n" not in msg and "private addresses" in msg and "state_sync.strategy: none" in msg
    monkeypatch.setenv("SCULPT_PRIVATE_REACHABLE", "1")  # the operator says the controller is in the VPC
    opened = open_service(spec, mode="auto", model="last-value")
    try:
        assert opened.service.port.actuator.platform.private_reachable
    finally:
        opened.close()


def test_on_gcp_recommend_mode_needs_no_credentials_and_auto_mode_morphs_through_the_gcp_platform(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from sculpt.migrate.gcp import GcpPlatform

    spec = _spec(tmp_path, monkeypatch, "app:\n  state_sync: {strategy: none}\n", provider="gcp")
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN", raising=False)
    monkeypatch.setitem(sys.modules, "google.auth", None)  # no credentials of any kind
    opened = open_service(spec, mode="recommend", model="last-value")
    try:
        assert isinstance(opened.service.port.actuator, Recommender)
    finally:
        opened.close()
    with pytest.raises(ConfigError, match="no GCP credentials") as e:  # auto mode checks them at start
        open_service(spec, mode="auto", model="last-value")
    assert "\n" not in str(e.value)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "a-token")
    opened = open_service(spec, mode="auto", model="last-value")
    try:
        actuator = opened.service.port.actuator
        assert isinstance(actuator, OrchestratorActuator) and isinstance(actuator.platform, GcpPlatform)
        assert actuator.timeouts.healthy_s >= 600
    finally:
        opened.close()


def test_without_the_cli_slots_map_to_no_instances_and_the_loop_holds(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    from sculpt.app.cloud import slot_targets
    from sculpt.catalog import load_catalog
    from sculpt.engine.pulumi_engine import PulumiEngine
    from sculpt.ledger import Ledger
    from tests.pulumi.conftest import make_fleet

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `pulumi` anywhere
    fleet = make_fleet("aws")
    eng = PulumiEngine(fleet.spec, tmp_path, Ledger(tmp_path / "l.db"))
    assert slot_targets(eng, load_catalog("aws")) == {}
    assert any("Pulumi CLI" in r.message for r in caplog.records)
