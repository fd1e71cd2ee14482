"""The replay's evidence report: one self-contained HTML file with inline SVG plots (no plotting library).

Sections: the totals per policy; cumulative cost over time; for the traces that cost most, demand against
each policy's capacity (CPU and memory) and a shape timeline; a per-trace table. Long series are reduced to
at most ``POINTS`` buckets (demand by its bucket maximum, capacity by its bucket minimum, so shortages stay
visible).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from sculpt.domain.arrays import FloatArray
from sculpt.replay.harness import ReplayResult

POINTS = 600
WEEK_STEPS_S = 7 * 86400.0
COLOURS = {"static": "#9467bd", "reactive": "#e07b39", "sculpt": "#2b7bba", "oracle": "#3a9d5d"}
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#d62728", "#9467bd", "#8c564b", "#17becf", "#bcbd22"]
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 1180, 220, 64, 28, 14, 16


def _reduce(x: np.ndarray, how: str) -> FloatArray:
    n = len(x)
    if n <= POINTS:
        return x.astype(np.float64)
    b = int(np.ceil(n / POINTS))
    pad = (-n) % b
    fill = x[-1]
    y = np.concatenate([x.astype(np.float64), np.full(pad, fill)]).reshape(-1, b)
    reduced: FloatArray = {"max": y.max(axis=1), "min": y.min(axis=1), "last": y[:, -1]}[how]
    return reduced


def _axis(ymax: float, hours: float, ylabel: str, day0: float = 0.0) -> str:
    out = [f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#333"/>',
           f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#333"/>']
    for i in range(5):
        v = ymax * i / 4
        y = H - PAD_B - (H - PAD_B - PAD_T) * i / 4
        out.append(f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>')
        label = f"{v:,.0f}" if ymax >= 100 else f"{v:.3g}"
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
    days = hours / 24
    step = max(1, int(np.ceil(days / 12)))
    for d in range(0, int(days) + 1, step):
        x = PAD_L + (W - PAD_L - PAD_R) * (d * 24 / max(hours, 1e-9))
        out.append(f'<text x="{x:.1f}" y="{H - 8}" font-size="11" text-anchor="middle">day {d + day0:g}</text>')
    out.append(f'<text x="12" y="{PAD_T + 4}" font-size="11" transform="rotate(-90 12 {PAD_T + 4})" '
               f'text-anchor="end">{html.escape(ylabel)}</text>')
    return "".join(out)


def _path(y: np.ndarray, ymax: float, step: bool = False) -> str:
    n = len(y)
    xs = PAD_L + (W - PAD_L - PAD_R) * np.arange(n) / max(n - 1, 1)
    ys = H - PAD_B - (H - PAD_B - PAD_T) * np.clip(y / max(ymax, 1e-12), 0, 1.05)
    if not step:
        return "M" + " L".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys, strict=True))
    parts = [f"M{xs[0]:.1f},{ys[0]:.1f}"]
    for i in range(1, n):
        parts.append(f"H{xs[i]:.1f}V{ys[i]:.1f}")
    return "".join(parts)


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{html.escape(n)}</span>' for n, c in items) + "</div>"


def _svg(body: str) -> str:
    return f'<svg viewBox="0 0 {W} {H}" width="100%" xmlns="http://www.w3.org/2000/svg">{body}</svg>'


def cumulative_cost_svg(r: ReplayResult) -> str:
    series = {p: np.cumsum(b.sum(axis=1, dtype=np.float64)) for p, b in r.bills.items()}
    ymax = max(float(s[-1]) for s in series.values()) * 1.05
    hours = float(r.valid.shape[0] * r.traces[0].step_s / 3600)
    body = _axis(ymax, hours, "cumulative $")
    for p, s in series.items():
        body += f'<path d="{_path(_reduce(s, "last"), ymax)}" fill="none" stroke="{COLOURS[p]}" stroke-width="2"/>'
    return _svg(body) + _legend([(p, COLOURS[p]) for p in series])


def window(r: ReplayResult, j: int) -> tuple[int, int]:
    """The week (whole days) of trace ``j`` in which the oracle moves most: where sizing matters."""
    n = int(r.valid[:, j].sum())
    w = int(WEEK_STEPS_S / r.traces[j].step_s)
    if n <= w:
        return 0, n
    ref = r.shapes.get("oracle", next(iter(r.shapes.values())))[:n, j]
    moves = np.concatenate([[0], np.cumsum(ref[1:] != ref[:-1])])
    day = int(86400 / r.traces[j].step_s)
    starts = np.arange(0, n - w + 1, day)
    best = int(starts[np.argmax(moves[starts + w - 1] - moves[starts])])
    return best, best + w


def demand_svg(r: ReplayResult, j: int, kind: str, win: tuple[int, int] | None = None) -> str:
    a, b = win or (0, int(r.valid[:, j].sum()))
    n = b - a
    demand = (r.cpu if kind == "cpu" else np.nan_to_num(r.mem, nan=0.0))[a:b, j]
    cap_of = r.arrays.vcpu if kind == "cpu" else r.arrays.memory_gib
    caps = {p: cap_of[np.maximum(s[a:b, j], 0)] for p, s in r.shapes.items()}
    d = _reduce(demand, "max")
    reduced = {p: _reduce(c, "min") for p, c in caps.items()}
    ymax = max(float(d.max()), *(float(np.percentile(c, 99)) for c in reduced.values())) * 1.1 or 1.0
    hours = n * r.traces[j].step_s / 3600
    body = _axis(ymax, hours, "vCPU" if kind == "cpu" else "GiB", day0=round(a * r.traces[j].step_s / 86400, 1))
    xs_path = _path(d, ymax)
    body += f'<path d="{xs_path} V{H - PAD_B} H{PAD_L} Z" fill="#222" fill-opacity="0.18" stroke="#222" stroke-width="0.8"/>'
    for p, c in reduced.items():
        body += f'<path d="{_path(c, ymax, step=True)}" fill="none" stroke="{COLOURS[p]}" stroke-width="1.6" stroke-opacity="0.9"/>'
    return _svg(body)


def timeline_svg(r: ReplayResult, j: int, win: tuple[int, int] | None = None) -> tuple[str, list[tuple[str, str]]]:
    a0, b0 = win or (0, int(r.valid[:, j].sum()))
    n = b0 - a0
    pols = list(r.shapes)
    used = sorted({int(x) for p in pols for x in np.unique(r.shapes[p][a0:b0, j]) if x >= 0},
                  key=lambda i: (r.arrays.price[i], str(r.arrays.names[i])))
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(used)}
    row_h = 26
    height = PAD_T + row_h * len(pols) + PAD_B
    body = []
    for k, p in enumerate(pols):
        y = PAD_T + k * row_h
        body.append(f'<text x="{PAD_L - 6}" y="{y + 17}" font-size="12" text-anchor="end">{p}</text>')
        s = r.shapes[p][a0:b0, j]
        change = np.flatnonzero(np.diff(s)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [n]])
        for a, b in zip(starts, ends, strict=True):
            x0 = PAD_L + (W - PAD_L - PAD_R) * a / n
            w = max((W - PAD_L - PAD_R) * (b - a) / n, 0.6)
            body.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{w:.2f}" height="{row_h - 6}" fill="{colour.get(int(s[a]), "#fff")}"/>')
    svg = f'<svg viewBox="0 0 {W} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>'
    legend = [(f"{r.arrays.names[s]} ({r.arrays.vcpu[s]:g} vCPU, {r.arrays.memory_gib[s]:g} GiB, ${r.arrays.price[s]:.3f}/h)",
               colour[s]) for s in used]
    return svg, legend


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:28px 40px;color:#222;max-width:1240px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:22px 0 4px} .sub{color:#666;font-size:13px;margin-bottom:10px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{padding:4px 10px;text-align:right;border-bottom:1px solid #eee}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.legend{font-size:12px;margin:2px 0 8px 64px} .legend span{margin-right:16px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
.best{font-weight:600;color:#1a6b35} .note{font-size:12px;color:#666}
"""


def _totals_table(r: ReplayResult) -> str:
    tot = {p: s.total() for p, s in r.scores.items()}
    base = tot.get("oracle", {}).get("cost_usd") or None
    rows = ["<table><tr><th>policy</th><th>cost $</th><th>× oracle</th><th>under-provisioned</th>"
            "<th>OOM events</th><th>migrations</th></tr>"]
    for p, m in tot.items():
        ratio = f"{m['cost_usd'] / base:.2f}" if base else "–"
        rows.append(f'<tr><td><i style="display:inline-block;width:10px;height:10px;background:{COLOURS[p]};'
                    f'margin-right:6px"></i>{p}</td><td>{m["cost_usd"]:,.2f}</td><td>{ratio}</td>'
                    f'<td>{m["underprovisioned_fraction"]:.3%}</td><td>{m["oom_events"]}</td><td>{m["migrations"]}</td></tr>')
    return "".join(rows) + "</table>"


def _per_trace_table(r: ReplayResult) -> str:
    pols = list(r.scores)
    head = "".join(f"<th>{p} $</th>" for p in pols) + "".join(
        f"<th>{p} under / OOM / moves</th>" for p in pols if p != "oracle")
    rows = [f"<table><tr><th>trace</th><th>hours</th>{head}</tr>"]
    order = np.argsort([-float(r.scores.get("oracle", next(iter(r.scores.values()))).cost_usd[i])
                        for i in range(len(r.traces))], kind="stable")
    for i in order:
        costs = {p: float(r.scores[p].cost_usd[i]) for p in pols}
        online = [p for p in pols if p != "oracle"]
        best = min(online, key=lambda p: costs[p]) if online else None
        cells = "".join(f'<td class="{"best" if p == best else ""}">{costs[p]:,.2f}</td>' for p in pols)
        for p in online:
            row = r.scores[p].row(int(i))
            cells += f"<td>{row['underprovisioned_fraction']:.2%} / {row['oom_events']} / {row['migrations']}</td>"
        rows.append(f"<tr><td>{html.escape(r.traces[i].name)}</td><td>{r.traces[i].hours:,.0f}</td>{cells}</tr>")
    return "".join(rows) + "</table>"


def render(r: ReplayResult, detail: int = 3) -> str:
    """The report's HTML. ``detail``: how many traces (the costliest under the oracle) get per-trace plots."""
    pols = list(r.scores)
    first = r.scores.get("oracle", next(iter(r.scores.values())))
    picks = [int(i) for i in np.argsort(-first.cost_usd, kind="stable")[:detail]]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>sculpt replay</title><style>{CSS}</style></head><body>",
             "<h1>sculpt replay</h1>",
             f'<div class="sub">{len(r.traces)} trace(s), {r.trace_hours:,.0f} hours replayed at '
             f"{r.traces[0].step_s:g} s steps on the simulated cloud ({r.arrays.offerings[0].region}, "
             f"{r.shapes_considered} shapes considered), sculpt model: {html.escape(r.model or '-')}; "
             f"ran in {r.elapsed_s:.1f} s.</div>",
             "<h2>Totals</h2>", _totals_table(r),
             '<p class="note">cost includes the boot overlap of every move (both shapes billed). Under-provisioned: '
             "share of steps whose CPU demand exceeded the serving shape. OOM events: times memory demand rose "
             "above it. The oracle knows the future: it is the lower bound with no under-provisioning.</p>",
             "<h2>Cumulative cost, all traces</h2>", cumulative_cost_svg(r)]
    for j in picks:
        tr = r.traces[j]
        costs = ", ".join(f"{p} ${float(r.scores[p].cost_usd[j]):,.2f}" for p in pols)
        parts.append(f"<h2>{html.escape(tr.name)}</h2><div class='sub'>{tr.layout} trace, {tr.hours:,.0f} h; {costs}</div>")
        win = window(r, j)
        day0 = win[0] * tr.step_s / 86400
        when = f"days {day0:.0f}–{day0 + (win[1] - win[0]) * tr.step_s / 86400:.0f} (the week the oracle moves most)"
        parts.append(f"<h3>CPU demand (shaded) against each policy's vCPUs, {when}</h3>" + demand_svg(r, j, "cpu", win))
        parts.append(_legend([("demand", "#bbb")] + [(p, COLOURS[p]) for p in r.shapes]))
        if tr.has_memory:
            parts.append(f"<h3>Memory demand (shaded) against each policy's GiB, {when}</h3>"
                         + demand_svg(r, j, "mem", win))
        svg, legend = timeline_svg(r, j, win)
        parts.append(f"<h3>Shape timeline, {when}</h3>" + svg + _legend(legend))
    parts.append("<h2>Per trace</h2>" + _per_trace_table(r))
    for note in r.notes:
        parts.append(f'<p class="note">note: {html.escape(note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(r: ReplayResult, path: str | Path, detail: int = 3) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(r, detail), encoding="utf-8")
    return p
