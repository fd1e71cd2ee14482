"""The CloudWatch metric source against moto's CloudWatch over real HTTP (plus one paging test, below)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sculpt.domain.errors import ProviderError
from sculpt.metrics.base import MetricSource
from sculpt.metrics.cloudwatch import EC2_METRICS, MAX_QUERIES, CloudWatchSource, make_client

T0 = 1_764_300_000.0 - (1_764_300_000.0 % 300)  # a 5-minute boundary


def _put(url: str, instances: list[str], minutes: int, metric: str = "CPUUtilization") -> None:
    cw = make_client("cloudwatch", "us-east-1", url)
    data = [{"MetricName": metric, "Dimensions": [{"Name": "InstanceId", "Value": inst}],
             "Timestamp": datetime.fromtimestamp(T0 + 60 * m, UTC), "Value": float(10 * k + m), "Unit": "Percent"}
            for k, inst in enumerate(instances) for m in range(minutes)]
    for i in range(0, len(data), 500):
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=data[i:i + 500])


def test_reads_per_instance_samples_in_time_order(moto_url: str) -> None:
    _put(moto_url, ["i-aaa", "i-bbb"], minutes=3)
    src: MetricSource = CloudWatchSource("us-east-1", endpoint_url=moto_url)
    out = src.read(["i-aaa", "i-bbb", "i-none"], T0, T0 + 180, 60)
    assert [s.time for s in out["i-aaa"]] == [T0, T0 + 60, T0 + 120]
    assert [s.values["cpu_pct"] for s in out["i-aaa"]] == [0.0, 1.0, 2.0]
    assert [s.values["cpu_pct"] for s in out["i-bbb"]] == [10.0, 11.0, 12.0]
    assert out["i-none"] == []


def test_many_instances_are_batched_500_queries_per_call(moto_url: str) -> None:
    instances = [f"i-batch{i:03d}" for i in range(130)]  # 130 x 4 metrics = 520 queries -> 2 calls
    _put(moto_url, instances, minutes=1)
    src = CloudWatchSource("us-east-1", endpoint_url=moto_url)
    assert len(src.queries(instances, 60)) == 520 > MAX_QUERIES
    out = src.read(instances, T0, T0 + 60, 60)
    assert src.calls == 2
    assert out["i-batch129"][0].values["cpu_pct"] == 1290.0
    assert all(len(samples) == 1 for samples in out.values())


def test_api_error_becomes_a_one_line_provider_error(moto_url: str) -> None:
    src = CloudWatchSource("us-east-1", endpoint_url=moto_url)
    with pytest.raises(ProviderError, match="GetMetricData failed.*To fix: check AWS credentials") as e:
        src.read(["i-1"], T0 + 600, T0, 60)  # end before start: CloudWatch rejects it
    assert "\n" not in str(e.value)


class GetMetricDataApiDouble:
    """A double of the GetMetricData RPC (the network boundary): moto never pages GetMetricData, so this
    serves one point per page with a NextToken, as CloudWatch does when results overflow."""

    def __init__(self, points: int) -> None:
        self.points = points
        self.requests: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        assert len(kwargs["MetricDataQueries"]) <= MAX_QUERIES
        self.requests.append(kwargs)
        page = int(kwargs.get("NextToken", "0"))
        results = [{"Id": q["Id"], "Timestamps": [datetime.fromtimestamp(T0 + 60 * page, UTC)],
                    "Values": [float(page)]} for q in kwargs["MetricDataQueries"]]
        return {"MetricDataResults": results, **({"NextToken": str(page + 1)} if page + 1 < self.points else {})}


def test_getmetricdata_api_double_pages_are_followed_with_next_token() -> None:
    api = GetMetricDataApiDouble(points=3)
    src = CloudWatchSource("us-east-1", client=api, metrics=EC2_METRICS[:1])
    out = src.read(["i-1", "i-2"], T0, T0 + 180, 60)
    assert [r.get("NextToken") for r in api.requests] == [None, "1", "2"]
    assert [s.values["cpu_pct"] for s in out["i-2"]] == [0.0, 1.0, 2.0]
