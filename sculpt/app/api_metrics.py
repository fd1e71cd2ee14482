"""The HTTP API's ``GET /metrics``: every watched fleet's loop as Prometheus metric families.

Why it exists: what the loop exports (ticks, decisions, migrations, warnings, forecasts, confidence, shape
probabilities, cost, tick duration) is a contract with dashboards and alert rules, named and tested on its own
(``tests/sculptor/test_exposition.py``); ``sculpt.app.api`` only serves it, in text 0.0.4 or OpenMetrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from sculpt.domain.errors import SculptError
from sculpt.loop.service import SculptorService
from sculpt.metrics.exposition import registry_of, render


def _seconds(ms: float) -> float:
    return ms / 1000.0 if math.isfinite(ms) else math.nan


def metric_families(services: Mapping[str, SculptorService]) -> list[Metric]:
    """Every fleet's loop as Prometheus families, one family per metric (all fleets' samples in it)."""
    info = InfoMetricFamily("sculpt_fleet", "The watched fleet: mode, forecast model, shape and region.",
                            labels=["stack"])
    ticks = CounterMetricFamily("sculpt_ticks", "Loop ticks run.", labels=["stack"])
    warnings = CounterMetricFamily("sculpt_warnings", "Warnings the loop's ticks raised.", labels=["stack"])
    tick_s = GaugeMetricFamily("sculpt_last_tick_duration_seconds",
                               "Duration of the last tick (excluding a morph it started), seconds.", labels=["stack"])
    model_s = GaugeMetricFamily("sculpt_last_model_duration_seconds",
                                "Time the last tick spent in the forecast model, seconds.", labels=["stack"])
    decisions = CounterMetricFamily("sculpt_decisions", "Plans decided, by decision.", labels=["stack", "decision"])
    migrations = CounterMetricFamily("sculpt_migrations", "Morphs asked for, by result (recommended in recommend "
                                     "mode).", labels=["stack", "result"])
    predicted = GaugeMetricFamily("sculpt_predicted_cpu_cores", "Forecast CPU demand over the horizon, by quantile.",
                                  labels=["stack", "instance", "quantile"])
    confidence = GaugeMetricFamily("sculpt_confidence", "Forecast confidence in [0, 1].", labels=["stack", "instance"])
    shape_p = GaugeMetricFamily("sculpt_shape_probability", "P(shape is the right one) for each instance.",
                                labels=["stack", "instance", "shape"])
    cost = GaugeMetricFamily("sculpt_cost_usd_per_hour", "What the fleet costs now, $/h.", labels=["stack"])
    for name, s in services.items():
        info.add_metric([name], {"mode": s.mode, "model": s.guard.name, "shape": s.spec.shape,
                                 "region": s.spec.region, "profile": s.spec.profile})
        ticks.add_metric([name], float(s.counters["ticks"]))
        warnings.add_metric([name], float(s.counters["warnings"]))
        for d, n in sorted(s.counters["decisions"].items()):
            decisions.add_metric([name, d], float(n))
        for d, n in sorted(s.counters["migrations"].items()):
            migrations.add_metric([name, d], float(n))
        last = s.last
        if last is not None:
            tick_s.add_metric([name], _seconds(last.tick_ms))
            model_s.add_metric([name], _seconds(last.model_ms))
            for i in last.instances:
                predicted.add_metric([name, i.slot, "0.5"], i.forecast_p50)
                predicted.add_metric([name, i.slot, "0.95"], i.forecast_p95)
                confidence.add_metric([name, i.slot], i.confidence)
                for shape, p in i.top:
                    shape_p.add_metric([name, i.slot, shape], p)
        try:
            cost.add_metric([name], s.catalog.price(s.spec.shape, s.spec.region) * max(1, len(s.port.slots)))
        except SculptError:
            pass
    return [info, ticks, warnings, tick_s, model_s, decisions, migrations, predicted, confidence, shape_p, cost]


def metrics_registry(services: Mapping[str, SculptorService]) -> CollectorRegistry:
    return registry_of(lambda: metric_families(services))


def metrics_text(services: Mapping[str, SculptorService]) -> str:
    """Prometheus text exposition (format 0.0.4) of every fleet's loop."""
    return render(metrics_registry(services))[0].decode()
