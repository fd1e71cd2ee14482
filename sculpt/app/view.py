"""The live view of ``sculpt watch``: a rich dashboard on a terminal, JSON lines everywhere else.

Why it exists: an operator watching a fleet wants, per instance, what it runs, how busy it is (a
sparkline), what the model expects, which shapes it favours with what confidence, and what sculpt decided
and why; a log collector wants the same facts as one JSON object per tick (``TickReport.to_json()``).
``story_line`` is the one-line human form the demo prints.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from sculpt.loop.report import TickReport
from sculpt.loop.service import SculptorService

BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16  # utilisation samples shown per instance


def sparkline(values: Iterable[float], top: float = 1.0) -> str:
    """Utilisation history as bars (NaN as a space; values are clipped to [0, top]).

    >>> sparkline([0.0, 0.5, 1.0, float("nan")])
    '▁▅█ '
    """
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
            continue
        x = min(max(v / top, 0.0), 1.0)
        out.append(BARS[min(len(BARS) - 1, int(round(x * (len(BARS) - 1))))])
    return "".join(out)


def json_line(report: TickReport) -> str:
    return json.dumps(report.to_json(), separators=(",", ":"), default=str)


def story_line(report: TickReport) -> str:
    """One readable line: what the fleet does and what sculpt thinks of it."""
    parts = []
    for i in report.instances:
        top = ", ".join(f"{s} {p:.0%}" for s, p in i.top[:2])
        parts.append(f"{i.slot} {i.shape}: {i.cpu_cores:.2f} cores ({i.utilisation:.0%}), next {i.forecast_p50:.2f}"
                     f"..{i.forecast_p95:.2f} [{top}] conf {i.confidence:.0%}")
    line = "; ".join(parts) or "no readings"
    line += f" -> {report.plan.decision.value}: {report.plan.reason}"
    if report.action is not None:
        a = report.action
        line += f" | morph {a.from_shape} -> {a.to_shape}: {a.result} in {a.seconds:.2f}s"
    for w in report.warnings:
        line += f" | warning: {w}"
    return line


class JsonLines:
    """Non-TTY view: one JSON object per tick."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.out.flush()

    def update(self, report: TickReport) -> None:
        self.out.write(json_line(report) + "\n")
        self.out.flush()


class Dashboard:
    """TTY view: a rich table per instance, refreshed every tick.

    The header's tick is the one the loop runs at: ``tick_s`` when the caller knows it (``watch --tick``),
    else the shortest interval between recent reports, else the spec's ``tick_s`` (before the second tick)."""

    def __init__(self, service: SculptorService, notes: Sequence[str] = (), tick_s: float | None = None) -> None:
        self.service = service
        self.notes = list(notes)
        self.tick_s = tick_s
        self._times: list[float] = []
        self._live: Any = None

    def __enter__(self) -> Dashboard:
        from rich.live import Live

        self._live = Live(self._render(None), auto_refresh=False, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, report: TickReport) -> None:
        self._times = [*self._times[-4:], time.monotonic()]
        if self._live is not None:
            self._live.update(self._render(report), refresh=True)

    def period(self) -> float:
        """Seconds between ticks, as the header shows them."""
        if self.tick_s is not None:
            return self.tick_s
        gaps = [b - a for a, b in zip(self._times, self._times[1:], strict=False) if b > a]
        if gaps:  # the shortest recent gap: a tick that morphed runs long, the period does not change
            return round(min(gaps), 1)
        return float(self.service.spec.tick_s)

    def _render(self, r: TickReport | None) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        svc = self.service
        title = f"sculpt watch — {svc.spec.fleet} ({svc.mode}, model {svc.guard.name}, tick {self.period():g}s)"
        t = Table(title=title, expand=True)
        t.add_column("instance", no_wrap=True)
        t.add_column("shape", no_wrap=True)
        t.add_column("cpu", no_wrap=True, justify="right")
        t.add_column("utilisation", no_wrap=True)
        t.add_column("forecast", no_wrap=True)
        t.add_column("top shapes", overflow="ellipsis", no_wrap=True, ratio=1)
        t.add_column("conf", no_wrap=True, justify="right")
        t.add_column("decision", no_wrap=True)
        if r is not None:
            for i in r.instances:
                hist = list(svc.history.get(i.slot, []))[-SPARK_WIDTH:]
                t.add_row(i.slot, i.shape, f"{i.cpu_cores:.2f}", sparkline(hist) + f" {i.utilisation:.0%}",
                          f"{i.forecast_p50:.2f}..{i.forecast_p95:.2f}",
                          ", ".join(f"{s} {p:.0%}" for s, p in i.top[:2]), f"{i.confidence:.0%}", i.decision)
        lines: list[Any] = [t]
        if r is not None:
            for i in r.instances:
                if i.reason != r.plan.reason:
                    lines.append(Text(f"{i.slot}: {i.reason}"))
            lines.append(Text(f"plan: {r.plan.decision.value} — {r.plan.reason}  "
                              f"(tick {r.n}, {r.tick_ms:.1f} ms, model {r.model_ms:.1f} ms)"))
            if r.action is not None:
                a = r.action
                lines.append(Text(f"last morph: {a.from_shape} -> {a.to_shape}: {a.result} ({a.detail})"))
            for w in r.warnings:
                lines.append(Text(f"warning: {w}", style="yellow"))
        for n in self.notes:
            lines.append(Text(f"note: {n}", style="dim"))
        return Group(*lines)
