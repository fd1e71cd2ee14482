"""`sculpt morph` picks its migration platform from the stack's engine (sculpt.app.wiring.morph_platform).

Real parts: the PulumiEngine and the SDK's Automation API code, the ledger, the catalog, the platform
classes. Double: the ``pulumi`` CLI process (tests/pulumi/cli_double.py). The orchestration on the cloud
platform itself is covered in test_cloud_morph.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pulumi", reason="the aws extra is not installed")

from sculpt.app.wiring import Wiring, morph_platform  # noqa: E402
from sculpt.catalog import load_catalog  # noqa: E402
from sculpt.domain.errors import ConfigError  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from sculpt.migrate import Timeouts  # noqa: E402
from sculpt.migrate.cloud import CloudPlatform  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402
from tests.pulumi.conftest import make_fleet  # noqa: E402


def _wiring(tmp_path: Path, provider: str = "aws", **spec: object) -> Wiring:
    fleet = make_fleet(provider, **spec)
    ledger = Ledger(tmp_path / "ledger.db")
    engine = PulumiEngine(fleet.spec, tmp_path, ledger, command=PulumiProcessDouble())
    return Wiring(fleet.spec.fleet, tmp_path, ledger, load_catalog(provider), engine, fleet.spec, None)


def test_process_double_pulumi_engine_morphs_through_the_cloud_platform(tmp_path: Path) -> None:
    platform, timeouts = morph_platform(_wiring(tmp_path, app={"state_sync": {"strategy": "none"}}))
    assert isinstance(platform, CloudPlatform)
    assert isinstance(timeouts, Timeouts) and timeouts.healthy_s >= 300  # cloud instances boot in minutes


@pytest.mark.parametrize(("provider", "spec", "why"), [
    ("aws", {}, "state_sync 'http'"),  # the default spec syncs over private addresses
    ("aws", {"app": {"state_sync": {"strategy": "volume"}}, "replicas": {"min": 1, "max": 3, "desired": 2}},
     "state_sync 'volume'"),  # one EBS volume, one instance at a time
    ("gcp", {"app": {"state_sync": {"strategy": "volume"}}}, "state_sync 'volume'"),  # GCP: tests/gcp
])
def test_process_double_what_cannot_be_morphed_on_a_cloud_is_one_line(
        tmp_path: Path, provider: str, spec: dict[str, object], why: str) -> None:
    with pytest.raises(ConfigError, match=why) as e:
        morph_platform(_wiring(tmp_path, provider, **spec))
    assert "\n" not in str(e.value) and "To fix:" in str(e.value)
