"""Prometheus exposition written by ``prometheus_client``, for the API's and the demo app's ``/metrics``.

Why it exists: a hand-written exposition repeated HELP/TYPE lines and put samples under the wrong family,
which Prometheus' and OpenMetrics' parsers reject or misread. Both endpoints now describe their metrics as
families (a custom collector's ``collect``) and let the client library render them: each family's HELP and
TYPE once, followed by its samples, label values escaped. A scraper that asks for OpenMetrics
(``Accept: application/openmetrics-text``) gets it; anyone else gets the text format 0.0.4.

Families without samples are left out (a fleet before its first tick has no forecast), so every family
a scraper sees holds at least one sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry


class FamiliesCollector(Collector):
    """A ``prometheus_client`` collector over a function that builds the families at scrape time."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return [f for f in self.families() if f.samples]


def registry_of(families: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    """A private registry (not the library's global one, which would add this process' own metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(families))
    return registry


def render(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition body and its Content-Type, in the format ``accept`` asks for (text 0.0.4 by default)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
