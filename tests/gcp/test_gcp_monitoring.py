"""The Cloud Monitoring source (``sculpt.metrics.gcp_monitoring``) over the real HTTP client
(``sculpt.providers.gcp.MonitoringClient``) against the Monitoring API double on 127.0.0.1
(tests/gcp/fake_monitoring.py): the request it sends, paging, batching, retries and one-line errors.
Backoff sleeps go to a recorder: no test waits. Nothing here ran against Google's API."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.metrics.gcp_monitoring import MonitoringSource, name_filter
from sculpt.providers.gcp import MonitoringClient
from tests.gcp.fake_monitoring import CPU, FakeMonitoring

T0 = 1_764_309_600.0  # a whole hour
PROJECT = "proj-1"


def _source(sleeps: list[float] | None = None, **kw: object) -> MonitoringSource:
    sink: list[float] = [] if sleeps is None else sleeps
    return MonitoringSource(PROJECT, MonitoringClient(sleep=sink.append), **kw)  # type: ignore[arg-type]


def _minutes(values: list[float], start: float = T0) -> list[tuple[float, float]]:
    """One raw point a minute from ``start + 30 s`` (the metric is sampled once a minute)."""
    return [(start + 30 + 60 * i, v) for i, v in enumerate(values)]


def test_asks_for_cpu_utilization_of_the_instances_by_name_aligned_to_the_step(monitoring: FakeMonitoring) -> None:
    monitoring.put(PROJECT, "web-blue-a1b2", _minutes([0.1] * 5 + [0.5] * 5))
    out = _source().read(["web-blue-a1b2"], T0, T0 + 600, 300)
    ((path, q),) = monitoring.requests
    assert path == f"/v3/projects/{PROJECT}/timeSeries"
    assert q["filter"] == (f'metric.type = "{CPU}" AND metric.labels.instance_name = one_of("web-blue-a1b2")')
    assert q["interval.startTime"].startswith("2025-11-28T06:00:00") and q["interval.startTime"].endswith("Z")
    assert q["interval.endTime"].startswith("2025-11-28T06:10:00")
    assert (q["aggregation.alignmentPeriod"], q["aggregation.perSeriesAligner"]) == ("300s", "ALIGN_MEAN")
    # the API answers newest first; the source gives oldest first, as a percentage of the vCPUs
    assert [(s.time, s.values) for s in out["web-blue-a1b2"]] == [(T0 + 300, {"cpu_pct": 10.0}),
                                                                 (T0 + 600, {"cpu_pct": 50.0})]


def test_a_step_under_a_minute_is_aligned_to_a_minute_and_unknown_instances_have_no_samples(
        monitoring: FakeMonitoring) -> None:
    monitoring.put(PROJECT, "a", _minutes([0.25, 0.75]))
    monitoring.put(PROJECT, "not-asked", _minutes([0.9]))
    out = _source().read(["a", "gone", "a"], T0, T0 + 120, 15)
    assert monitoring.requests[0][1]["aggregation.alignmentPeriod"] == "60s"
    assert out == {"a": out["a"], "gone": []}
    assert [s.values["cpu_pct"] for s in out["a"]] == [25.0, 75.0]
    assert datetime.fromtimestamp(out["a"][0].time, UTC).second == 0  # the aligned point's end time


def test_follows_next_page_tokens(monitoring: FakeMonitoring) -> None:
    monitoring.page_size = 1
    for name, v in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
        monitoring.put(PROJECT, name, _minutes([v]))
    src = _source()
    out = src.read(["a", "b", "c"], T0, T0 + 60, 60)
    assert [q.get("pageToken") for _, q in monitoring.requests] == [None, "1", "2"]
    assert len({q["filter"] for _, q in monitoring.requests}) == 1 and src.calls == 3
    assert {k: [s.values["cpu_pct"] for s in v] for k, v in out.items()} == {"a": [10.0], "b": [20.0], "c": [30.0]}


def test_many_instances_are_batched_so_each_filter_stays_under_the_limit(monitoring: FakeMonitoring) -> None:
    names = [f"web-green-{i:04d}-{'x' * 20}" for i in range(40)]
    for i, name in enumerate(names):
        monitoring.put(PROJECT, name, _minutes([i / 100]))
    monitoring.max_filter = 500  # the double refuses longer filters (400)
    out = _source(max_filter_chars=500).read(names, T0, T0 + 60, 60)
    filters = monitoring.filters()
    assert len(filters) > 1 and all(len(f) <= 500 for f in filters)
    asked = [n for f in filters for n in names if f'"{n}"' in f]
    assert sorted(asked) == sorted(names)  # each instance in exactly one request
    assert [out[n][0].values["cpu_pct"] for n in names] == pytest.approx([float(i) for i in range(40)])
    assert len(name_filter(CPU, names)) > 500  # one request for all would have been refused
    assert len(filters) <= len(name_filter(CPU, names)) // 400 + 1  # batches are filled, not one name each


def test_throttling_and_server_errors_are_retried_with_backoff(monitoring: FakeMonitoring) -> None:
    monitoring.put(PROJECT, "a", _minutes([0.4]))
    monitoring.fail_next = [429, 503]
    sleeps: list[float] = []
    out = _source(sleeps).read(["a"], T0, T0 + 60, 60)
    assert sleeps == [7.0, 2.0]  # Retry-After on the 429, then exponential backoff
    assert [s.values["cpu_pct"] for s in out["a"]] == [40.0] and len(monitoring.requests) == 3


def test_a_refusal_is_one_line_with_the_role_to_grant_and_is_not_retried(monitoring: FakeMonitoring) -> None:
    monitoring.forbidden = True
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as e:
        _source(sleeps).read(["a"], T0, T0 + 60, 60)
    msg = str(e.value)
    assert not e.value.retryable and "\n" not in msg and sleeps == [] and len(monitoring.requests) == 1
    assert msg.startswith("the Cloud Monitoring API refused reading compute.googleapis.com/instance/cpu/utilization")
    assert "HTTP 403 Permission monitoring.timeSeries.list denied" in msg
    assert "To fix:" in msg and "roles/monitoring.viewer" in msg


def test_without_credentials_it_is_one_line_before_any_request(monitoring: FakeMonitoring,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    monkeypatch.setitem(sys.modules, "google.auth", None)
    with pytest.raises(ConfigError, match="no GCP credentials") as e:
        _source().read(["a"], T0, T0 + 60, 60)
    assert "\n" not in str(e.value) and monitoring.requests == []


def test_adc_is_asked_for_the_monitoring_scope(monitoring: FakeMonitoring, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.auth", reason="the gcp extra is not installed")
    import google.auth

    asked: list[list[str]] = []

    class Creds:  # a double of google-auth's credentials: valid, with the double's token
        valid, token = True, monitoring.token

    def default(scopes: list[str], request: object = None) -> tuple[Creds, str]:
        asked.append(list(scopes))
        return Creds(), PROJECT

    monkeypatch.delenv("GOOGLE_OAUTH_ACCESS_TOKEN")
    monkeypatch.setattr(google.auth, "default", default)
    monitoring.put(PROJECT, "a", _minutes([0.3]))
    assert [s.values["cpu_pct"] for s in _source().read(["a"], T0, T0 + 60, 60)["a"]] == [30.0]
    assert asked == [["https://www.googleapis.com/auth/monitoring.read"]]


def test_the_module_examples_run() -> None:
    import doctest

    failed, attempted = doctest.testmod(importlib.import_module("sculpt.metrics.gcp_monitoring"))
    assert failed == 0 and attempted >= 6
