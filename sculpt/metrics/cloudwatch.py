"""CloudWatch as a metric source: EC2 metrics for many instances through batched ``GetMetricData``.

Why batched: one ``GetMetricData`` call takes up to 500 metric queries, so a fleet of 100 instances with
4 metrics each is one call (plus ``NextToken`` pages when the points overflow), not 400
``GetMetricStatistics`` calls. Throttling is retried by botocore's adaptive retry mode. The endpoint can be
overridden (``endpoint_url`` or ``AWS_ENDPOINT_URL``), which is how the tests talk to moto's server.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.metrics.base import MetricPoint

MAX_QUERIES = 500  # GetMetricData's limit per call


@dataclass(frozen=True)
class Metric:
    """One CloudWatch metric and the name sculpt gives it."""

    name: str
    namespace: str
    metric: str
    stat: str = "Average"


EC2_METRICS: tuple[Metric, ...] = (
    Metric("cpu_pct", "AWS/EC2", "CPUUtilization"),
    Metric("network_in_bytes", "AWS/EC2", "NetworkIn", "Sum"),
    Metric("network_out_bytes", "AWS/EC2", "NetworkOut", "Sum"),
    Metric("mem_pct", "CWAgent", "mem_used_percent"),  # present only with the CloudWatch agent
)


def make_client(service: str, region: str, endpoint_url: str | None = None) -> Any:
    """A boto3 client with adaptive retries (throttling backs off instead of failing). A bad region name or
    endpoint, or boto3 missing, is a one-line ``ConfigError``."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise ConfigError(f"the {service} source needs boto3, which is not installed",
                          "install sculpt[aws], or use --source local or prometheus=URL") from None

    cfg = Config(retries={"max_attempts": 10, "mode": "adaptive"}, connect_timeout=10, read_timeout=30)
    try:
        # boto3-stubs types client() only for literal service names; this factory takes any service
        return boto3.session.Session().client(  # type: ignore[call-overload]
            service, region_name=region, endpoint_url=endpoint_url, config=cfg)
    except (BotoCoreError, ValueError) as e:  # InvalidRegionError, a malformed endpoint URL
        raise ConfigError(f"cannot make a {service} client for region '{region}': {_one_line(e)}",
                          "pass a valid AWS region (e.g. --source cloudwatch=us-east-1) and endpoint") from None


def _one_line(e: BaseException, limit: int = 240) -> str:
    """An SDK exception's text on one line (botocore messages may carry newlines), cut at ``limit``."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class CloudWatchSource:
    """``MetricSource`` over CloudWatch ``GetMetricData`` (instances are EC2 instance ids)."""

    def __init__(self, region: str, *, client: Any = None, endpoint_url: str | None = None,
                 metrics: Sequence[Metric] = EC2_METRICS) -> None:
        self.client = client or make_client("cloudwatch", region, endpoint_url)
        self.metrics = tuple(metrics)
        self.calls = 0  # GetMetricData requests made (pages included)

    def queries(self, instances: Sequence[str], step: float) -> list[dict[str, Any]]:
        """One query per (instance, metric), ids ``m<i>_<j>`` (GetMetricData ids must start lowercase)."""
        period = max(60, int(step) // 60 * 60)  # CloudWatch periods are multiples of 60 s
        return [
            {"Id": f"m{i}_{j}", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": m.namespace, "MetricName": m.metric,
                           "Dimensions": [{"Name": "InstanceId", "Value": inst}]},
                "Period": period, "Stat": m.stat}}
            for i, inst in enumerate(instances) for j, m in enumerate(self.metrics)
        ]

    def read(self, instances: Sequence[str], start: float, end: float, step: float) -> dict[str, list[MetricPoint]]:
        instances = list(dict.fromkeys(instances))
        points: dict[str, dict[float, dict[str, float]]] = {i: {} for i in instances}
        t0 = datetime.fromtimestamp(start, UTC)
        t1 = datetime.fromtimestamp(end, UTC)
        for batch in _chunks(self.queries(instances, step), MAX_QUERIES):
            for result in self._results(batch, t0, t1):
                try:
                    i, j = (int(x) for x in str(result["Id"])[1:].split("_"))
                    per_time, name = points[instances[i]], self.metrics[j].name
                    pairs = [(ts.timestamp(), float(v)) for ts, v in
                             zip(result.get("Timestamps", []), result.get("Values", []), strict=False)]
                except (KeyError, ValueError, TypeError, IndexError, AttributeError):
                    raise ProviderError("CloudWatch GetMetricData answered a result sculpt did not ask for "
                                        f"(id {str(result.get('Id'))[:40]!r} or its points are malformed)",
                                        "check the endpoint (AWS_ENDPOINT_URL) is CloudWatch") from None
                for t, value in pairs:
                    per_time.setdefault(t, {})[name] = value
        return {inst: [MetricPoint(t, vals) for t, vals in sorted(points[inst].items())] for inst in instances}

    def _results(self, queries: list[dict[str, Any]], t0: datetime, t1: datetime) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": t0, "EndTime": t1,
                                      "ScanBy": "TimestampAscending"}
            if token:
                kwargs["NextToken"] = token
            try:
                page = self.client.get_metric_data(**kwargs)
            except (ClientError, BotoCoreError) as e:
                raise ProviderError(f"CloudWatch GetMetricData failed: {_one_line(e)}",
                                    "check AWS credentials, region and cloudwatch:GetMetricData permission") from None
            self.calls += 1
            yield from page.get("MetricDataResults", [])
            token = page.get("NextToken")
            if not token:
                return
