"""The Compute API client (``sculpt.providers.gcp``) against the API double on 127.0.0.1: credentials,
pagination, retries and one-line errors. Backoff sleeps go to a recorder: no test waits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.providers.gcp import ComputeClient, ManagedInstance
from tests.gcp.fake_compute import FakeCompute, FakeVm

GROUP = ("proj-1", "us-central1", "web-green-abc")


def _client(sleeps: list[float], **kw: object) -> ComputeClient:
    return ComputeClient(sleep=sleeps.append, **kw)  # type: ignore[arg-type]


def _group(compute: FakeCompute, n: int, **vm: object) -> None:
    compute.groups[GROUP] = {f"web-green-{i:02d}": FakeVm(f"web-green-{i:02d}", "us-central1-a", f"10.0.0.{i}",
                                                          boot_listings=0, **vm)  # type: ignore[arg-type]
                             for i in range(n)}


def test_lists_every_page_of_a_groups_instances(compute: FakeCompute) -> None:
    compute.page_size = 2
    _group(compute, 5)
    got = _client([]).list_managed_instances(*GROUP)
    assert [m.name for m in got] == [f"web-green-{i:02d}" for i in range(5)]
    assert all(m.healthy for m in got)
    assert [q.get("pageToken") for *_, q, _ in compute.requests] == [None, ["2"], ["4"]]


def test_reads_status_action_and_health_of_each_instance(compute: FakeCompute) -> None:
    _group(compute, 1, broken=True)
    compute.groups[GROUP]["web-green-booting"] = FakeVm("web-green-booting", "us-central1-b", "10.0.0.9")
    booting, broken = sorted(_client([]).list_managed_instances(*GROUP), key=lambda m: m.name, reverse=True)
    assert (broken.status, broken.action, broken.health, broken.healthy) == ("RUNNING", "NONE", ("UNHEALTHY",),
                                                                             False)
    assert (booting.status, booting.action, booting.health, booting.healthy) == ("STAGING", "CREATING", (), False)


def test_reads_an_instances_private_address_by_its_link(compute: FakeCompute) -> None:
    _group(compute, 2)
    client = _client([])
    (first, second) = client.list_managed_instances(*GROUP)
    assert first.url == f"{compute.url}/projects/proj-1/zones/us-central1-a/instances/web-green-00"
    assert client.network_ip(second.url) == "10.0.0.1"
    # a link from the real API (another host) is read through the configured endpoint
    assert client.network_ip("https://www.googleapis.com/compute/v1/projects/proj-1/zones/us-central1-a/"
                             "instances/web-green-00") == "10.0.0.0"


def test_throttling_and_server_errors_are_retried_with_backoff(compute: FakeCompute) -> None:
    _group(compute, 1)
    compute.fail_next = [429, 503, 500]
    sleeps: list[float] = []
    assert len(_client(sleeps).list_managed_instances(*GROUP)) == 1
    assert sleeps == [7.0, 2.0, 4.0]  # Retry-After on the 429, then exponential backoff
    assert len(compute.requests) == 4


def test_errors_that_persist_end_in_one_retryable_line(compute: FakeCompute) -> None:
    _group(compute, 1)
    compute.fail_next = [503] * 4
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as e:
        _client(sleeps, attempts=4).list_managed_instances(*GROUP)
    assert e.value.retryable and "\n" not in str(e.value)
    assert "after 4 attempts: HTTP 503 Backend Error" in str(e.value) and "To fix:" in str(e.value)
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_refusal_is_one_line_with_the_permission_to_grant_and_is_not_retried(compute: FakeCompute) -> None:
    compute.forbidden = True
    with pytest.raises(ProviderError) as e:
        _client([]).list_managed_instances(*GROUP)
    msg = str(e.value)
    assert not e.value.retryable and "\n" not in msg
    assert "HTTP 403 Required 'compute.instanceGroupManagers.get' permission" in msg and "roles/compute.viewer" in msg
    assert len(compute.requests) == 1


def test_an_unknown_group_is_not_found_in_one_line(compute: FakeCompute) -> None:
    with pytest.raises(ProviderError, match=r"HTTP 404 The resource .* was not found\. To fix: check that the "
                                            r"stack is up") as e:
        _client([]).list_managed_instances(*GROUP)
    assert not e.value.retryable


def test_a_refused_token_says_how_to_get_a_new_one(compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "expired")
    with pytest.raises(ProviderError) as e:
        _client([]).list_managed_instances(*GROUP)
    assert "HTTP 401" in str(e.value) and "gcloud auth print-access-token" in str(e.value)
    assert len(compute.requests) == 1  # a static token cannot be refreshed: no retry


def test_an_endpoint_that_does_not_answer_is_one_line_after_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "t")
    monkeypatch.setenv("SCULPT_GCP_COMPUTE_URL", "http://127.0.0.1:1/compute/v1")  # nothing listens on port 1
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as e:
        _client(sleeps, attempts=3).list_managed_instances(*GROUP)
    msg = str(e.value)
    assert "cannot reach http://127.0.0.1:1/compute/v1" in msg and "SCULPT_GCP_COMPUTE_URL" in msg
    assert "\n" not in msg and len(sleeps) == 2


def test_without_a_token_or_google_auth_the_error_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN", raising=False)
    monkeypatch.setitem(sys.modules, "google.auth", None)  # google-auth is not installed
    client = _client([])  # constructing needs no credentials (recommend mode never asks)
    with pytest.raises(ConfigError) as e:
        client.list_managed_instances(*GROUP)
    msg = str(e.value)
    assert "\n" not in msg and "GOOGLE_OAUTH_ACCESS_TOKEN is not set and google-auth is not installed" in msg
    assert "gcloud auth print-access-token" in msg and "gcloud auth application-default login" in msg


def test_without_application_default_credentials_the_error_says_how_to_fix_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.auth", reason="google-auth (the gcp extra) is not installed")
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError) as e:
        _client([]).token_source()
    assert "Application Default Credentials were not found" in str(e.value) and "\n" not in str(e.value)


def test_application_default_credentials_are_refreshed_through_google_auth(
        tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real google-auth flow (a service account key: a signed JWT exchanged for an access token at the
    key's token_uri), its token endpoint played by the double."""
    pytest.importorskip("google.auth", reason="google-auth (the gcp extra) is not installed")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    creds = tmp_path / "sa.json"
    creds.write_text(json.dumps({"type": "service_account", "project_id": "proj-1", "private_key_id": "k1",
                                 "private_key": key, "client_email": "sculpt@proj-1.iam.gserviceaccount.com",
                                 "client_id": "1", "token_uri": f"http://127.0.0.1:"
                                 f"{compute.server.server_address[1]}/token"}))
    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    _group(compute, 1)
    compute.issue = ["stale-token"]  # the first token is refused (401): refreshed once, then accepted
    assert [m.name for m in _client([]).list_managed_instances(*GROUP)] == ["web-green-00"]
    assert [(m, p, a) for m, p, _, a in compute.requests] == [
        ("POST", "/token", ""),
        ("POST", "/compute/v1/projects/proj-1/regions/us-central1/instanceGroupManagers/web-green-abc/"
                 "listManagedInstances", "Bearer stale-token"),
        ("POST", "/token", ""),
        ("POST", "/compute/v1/projects/proj-1/regions/us-central1/instanceGroupManagers/web-green-abc/"
                 "listManagedInstances", "Bearer fake-token"),
    ]


def test_leaving_instances_are_neither_healthy_nor_kept() -> None:
    m = ManagedInstance.from_json({"instance": "https://x/projects/p/zones/z/instances/a", "instanceStatus":
                                   "RUNNING", "currentAction": "DELETING",
                                   "instanceHealth": [{"detailedHealthState": "HEALTHY"}]})
    assert (m.name, m.leaving, m.healthy) == ("a", True, False)


@pytest.mark.parametrize("module", ["sculpt.providers.gcp", "sculpt.migrate.gcp"])
def test_the_docstring_examples_run(module: str) -> None:
    """Among them: what counts as healthy, and how a colour's slots are matched to its MIG's instances."""
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(module))
    assert attempted > 0 and failed == 0
