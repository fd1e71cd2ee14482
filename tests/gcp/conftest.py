"""Fixtures for the GCP tests: the Compute API and Cloud Monitoring API doubles on 127.0.0.1
(tests/gcp/fake_compute.py, tests/gcp/fake_monitoring.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gcp.fake_compute import FakeCompute
from tests.gcp.fake_monitoring import FakeMonitoring


@pytest.fixture
def compute(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCompute]:
    """A fresh Compute API double; the environment points sculpt at it with its token."""
    fake = FakeCompute()
    monkeypatch.setenv("SCULPT_GCP_COMPUTE_URL", fake.url)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", fake.token)
    monkeypatch.delenv("SCULPT_PRIVATE_REACHABLE", raising=False)
    for var in ("GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def monitoring(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMonitoring]:
    """A fresh Cloud Monitoring API double (tests/gcp/fake_monitoring.py); the environment points sculpt at
    it with its token."""
    fake = FakeMonitoring()
    monkeypatch.setenv("SCULPT_GCP_MONITORING_URL", fake.url)
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", fake.token)
    try:
        yield fake
    finally:
        fake.close()
