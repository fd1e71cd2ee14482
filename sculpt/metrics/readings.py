"""The live loop's metric port: "the latest values of these serving instances", whatever the source.

Why it exists: the loop asks one small question per tick (``Readings.latest``) and, to start with a
forecast instead of "no history yet", one more (``RangeReadings.history``). Local processes (psutil and the
app's ``/metrics``), Prometheus and CloudWatch answer it here; the GCP by-slot source is wired in
``sculpt.app.cloud``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from sculpt.domain.clock import Clock
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.fleet import SlotInfo
from sculpt.metrics.base import MetricSource

log = logging.getLogger("sculpt.metrics.readings")


class Readings(Protocol):
    """The latest metric values of each instance (``cpu_cores``, ``mem_gib``, ...); NaN = not measured.

    ``keeps_history``: ``history`` can answer for the past (a range source); the local source cannot."""

    keeps_history: bool

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]: ...

    def history(self, slots: Sequence[SlotInfo], start: float, end: float, step: float) -> dict[str, list[Any]]:
        """Every sample of ``slots`` in ``[start, end]``, oldest first (empty without history)."""
        ...


class LocalReadings:
    """``sculpt.metrics.local.LocalSource`` over the slots the loop is told about (one poll per tick)."""

    keeps_history = False

    def __init__(self, clock: Clock | None = None, timeout_s: float = 1.0) -> None:
        from sculpt.metrics.local import LocalSource, Target

        self._slots: Sequence[SlotInfo] = ()
        self._target = Target
        self.source = LocalSource(lambda: [Target(s.id, s.pid, s.address) for s in self._slots],
                                  clock=clock, timeout_s=timeout_s)

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]:
        self._slots = list(slots)
        return {k: dict(v.values) for k, v in self.source.poll().items()}

    def history(self, slots: Sequence[SlotInfo], start: float, end: float, step: float) -> dict[str, list[Any]]:
        return {}  # processes keep no past: the loop learns from its first tick on


class RangeReadings:
    """Any ``MetricSource`` (Prometheus, CloudWatch): the last sample in ``[now - window_s, now]``.

    A source that raises (down, HTTP error) gives no readings: every instance holds this tick.
    """

    keeps_history = True

    def __init__(self, source: MetricSource, window_s: float = 120.0, step_s: float = 15.0) -> None:
        self.source, self.window_s, self.step_s = source, window_s, step_s

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]:
        ids = [s.id for s in slots]
        try:
            data = self.source.read(ids, now - self.window_s, now, self.step_s)
        except SculptError as e:
            log.warning("metric source failed: %s", e)
            return {}
        return {i: dict(samples[-1].values) for i, samples in data.items() if samples}

    def history(self, slots: Sequence[SlotInfo], start: float, end: float, step: float) -> dict[str, list[Any]]:
        """Every sample of ``slots`` in ``[start, end]`` (``MetricPoint`` lists, oldest first), for backfill.

        Raises ``SculptError`` when the source fails: a backfill that cannot read says so."""
        return dict(self.source.read([s.id for s in slots], start, end, step))


def make_readings(source: str, clock: Clock | None = None) -> Readings:
    """``local`` | ``prometheus=URL`` | ``cloudwatch[=REGION]`` (``gcp-monitoring``: ``sculpt.app.cloud``)."""
    kind, _, arg = source.partition("=")
    if kind == "local":
        return LocalReadings(clock=clock)
    if kind == "prometheus":
        if not arg:
            raise ConfigError("--source prometheus needs the server URL", "pass --source prometheus=http://host:9090")
        from sculpt.metrics.prometheus import PrometheusSource

        return RangeReadings(PrometheusSource(arg))
    if kind == "cloudwatch":
        from sculpt.metrics import cloudwatch

        factory = getattr(cloudwatch, "CloudWatchSource", None)
        if factory is None:
            raise ConfigError("this installation has no CloudWatch source", "use --source local or prometheus=URL")
        return RangeReadings(factory(region=arg or "us-east-1"), window_s=900.0, step_s=60.0)
    if kind == "gcp-monitoring":  # by slot, wired for GCP stacks in sculpt.app.cloud
        raise ConfigError("--source gcp-monitoring reads a GCP stack's instances (engine: pulumi, provider: gcp)",
                          "use --source local or prometheus=URL for this fleet")
    raise ConfigError(f"unknown metric source '{source}'",
                      "use local, prometheus=URL, cloudwatch[=REGION] or gcp-monitoring (GCP stacks)")
