"""The live view: the rich dashboard renders every instance's facts; JSON lines carry the stable shape."""

from __future__ import annotations

import io
import json

from sculpt.app.view import Dashboard, JsonLines, sparkline, story_line
from tests.sculptor.fakes import run, service


def test_dashboard_shows_shape_sparkline_forecast_shapes_confidence_and_decision() -> None:
    from rich.console import Console

    svc, fleet, source, act, clock = service()
    source.cpu = 0.2
    r = run(svc, clock, 70)[-1]
    out = io.StringIO()
    Console(file=out, width=220, force_terminal=False).print(Dashboard(svc)._render(r))
    text = out.getvalue()
    assert "web-0" in text and "std-0.5c-512m" in text and "hold" in text
    assert any(ch in text for ch in "▁▂▃▄▅▆▇█")
    assert f"{r.instances[0].confidence:.0%}" in text
    assert r.instances[0].top[0][0] in text


def test_json_lines_and_story_line() -> None:
    svc, fleet, source, act, clock = service()
    reports = run(svc, clock, 3)
    buf = io.StringIO()
    with JsonLines(buf) as view:
        for r in reports:
            view.update(r)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["tick"] for x in lines] == [1, 2, 3]
    assert set(lines[-1]) >= {"stack", "mode", "decision", "reason", "plan", "instances", "action", "warnings",
                              "tick_ms", "model_ms"}
    assert "web-0 std-0.5c-512m" in story_line(reports[-1])


def test_sparkline_clips_and_marks_gaps() -> None:
    assert sparkline([-1.0, 2.0, float("nan")]) == "▁█ "
