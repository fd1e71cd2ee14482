"""The GCP program under Pulumi mocks: one managed instance group per colour, weighted URL map."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pulumi.conftest import make_fleet

pulumi = pytest.importorskip("pulumi")
pytest.importorskip("pulumi_gcp")

import stacks  # noqa: E402
from tests.pulumi.mocks import CloudMocks  # noqa: E402

BLUE_GREEN = [("web-0", "n2-standard-2", "blue", 100), ("web-1", "n2-standard-2", "blue", 100),
              ("web-g0", "n2-highcpu-4", "green", 0)]


def _run(fleet: Any, version: int = 4) -> dict[str, Any]:
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        return pulumi.Output.all(**stacks.build(fleet, version)).apply(resolved.update)

    program()
    return resolved


def _weighted(mocks: CloudMocks) -> dict[str, int]:
    (url_map,) = mocks.of_type("gcp:compute/uRLMap:URLMap")
    return {w["backendService"]: w["weight"] for w in url_map.inputs["defaultRouteAction"]["weightedBackendServices"]}


def test_one_group_per_colour_sized_to_its_slots(mocks: CloudMocks) -> None:
    _run(make_fleet("gcp", slots=BLUE_GREEN))
    groups = {g.name: g.inputs["targetSize"] for g in
              mocks.of_type("gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager")}
    assert groups == {"web-blue": 2, "web-green": 1}
    templates = {t.name: t.inputs["machineType"] for t in
                 mocks.of_type("gcp:compute/instanceTemplate:InstanceTemplate")}
    assert templates == {"web-blue-n2-standard-2": "n2-standard-2", "web-green-n2-highcpu-4": "n2-highcpu-4"}


def test_url_map_splits_traffic_by_colour_weight(mocks: CloudMocks) -> None:
    shifted = [(i, s, c, 30 if c == "blue" else 70) for i, s, c, _ in BLUE_GREEN]
    out = _run(make_fleet("gcp", slots=shifted))
    assert _weighted(mocks) == {"web-blue-id": 60, "web-green-id": 70}
    assert out["weights"] == {"blue": 60, "green": 70}
    (url_map,) = mocks.of_type("gcp:compute/uRLMap:URLMap")
    assert url_map.inputs["description"] == "sculpt web version 4"


def test_colour_without_slots_gets_no_backend(mocks: CloudMocks) -> None:
    _run(make_fleet("gcp"))
    assert _weighted(mocks) == {"web-blue-id": 100}
    assert [b.name for b in mocks.of_type("gcp:compute/backendService:BackendService")] == ["web-blue"]


def test_labels_are_gcp_safe_and_carry_fleet_and_colour(mocks: CloudMocks) -> None:
    _run(make_fleet("gcp", slots=BLUE_GREEN))
    for t in mocks.of_type("gcp:compute/instanceTemplate:InstanceTemplate"):
        labels = t.inputs["labels"]
        assert labels["sculpt-fleet"] == "web"
        assert labels["sculpt-colour"] in t.name
        assert labels["team"] == "core"
        assert t.inputs["networkInterfaces"][0].get("accessConfigs", []) == []  # no public IP by default


def test_backends_use_managed_groups_and_one_health_check(mocks: CloudMocks) -> None:
    _run(make_fleet("gcp", slots=BLUE_GREEN, app={"health_path": "/ready"}))
    (hc,) = mocks.of_type("gcp:compute/healthCheck:HealthCheck")
    assert hc.inputs["httpHealthCheck"]["requestPath"] == "/ready"
    for bs in mocks.of_type("gcp:compute/backendService:BackendService"):
        assert bs.inputs["backends"][0]["group"].endswith(bs.name)
        assert bs.inputs["loadBalancingScheme"] == "EXTERNAL_MANAGED"


def test_volume_sync_on_gcp_is_refused_with_the_fix() -> None:
    from sculpt.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="volume.*To fix: use state_sync.strategy: http"):
        stacks.build(make_fleet("gcp", app={"state_sync": {"strategy": "volume"}}))


class _ProviderLikeMocks(CloudMocks):
    """``CloudMocks`` that also fill what the GCP provider computes for a MIG: its auto-generated name and
    the project it used (``gcp:project`` or GOOGLE_PROJECT); the plain mocks echo the inputs only."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
            state.update(name=f"{args.name}-1a2b3c4", project="sculpt-test")
        if args.typ == "gcp:compute/backendService:BackendService":
            state["selfLink"] = f"https://compute.example/backendServices/{args.name}"
        return rid, state


@pytest.fixture
def provider_mocks() -> Any:
    m = _ProviderLikeMocks()
    pulumi.runtime.set_mocks(m, project="sculpt", stack="test", preview=False)
    yield m
    pulumi.runtime.settings.reset_options()


def test_outputs_name_each_colours_managed_group_for_the_morph_platform(provider_mocks: CloudMocks) -> None:
    out = _run(make_fleet("gcp", slots=BLUE_GREEN))
    assert out["managed_groups"] == {
        "blue": {"name": "web-blue-1a2b3c4", "region": "us-central1", "project": "sculpt-test"},
        "green": {"name": "web-green-1a2b3c4", "region": "us-central1", "project": "sculpt-test"},
    }
    assert out["backend_services"] == {c: f"https://compute.example/backendServices/web-{c}" for c in ("blue", "green")}
    assert out["instance_groups"] == {c: f"https://compute.example/groups/web-{c}" for c in ("blue", "green")}


def test_outputs_keep_both_colours_when_one_has_no_slots(provider_mocks: CloudMocks) -> None:
    out = _run(make_fleet("gcp"))
    assert out["managed_groups"]["green"] is None and out["managed_groups"]["blue"]["name"] == "web-blue-1a2b3c4"
    assert out["backend_services"]["green"] is None and out["instance_groups"]["green"] is None
    assert out["weights"] == {"blue": 100, "green": 0}
