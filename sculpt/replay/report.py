"""The replay's evidence report: one self-contained HTML file, inline SVG and a few lines of inline JS.

Sections: the headline (``report_headline.headline``: $/month per policy, the saving against static and
reactive, the share of the oracle's saving captured, risk side by side, losses counted); cost against risk
(``cost_risk_section``: one dot per policy and, from ``sculpt replay --suite --curves``, each policy swept
over its knob, with sculpt's cost at each baseline's risk); cumulative cost; a sortable per-trace table whose
rows open that trace's charts (demand against each policy's capacity, CPU and memory, and a shape timeline;
plus the week the oracle moves most, when it moves). Every trace has its charts. Series are reduced to at
most ``CHART_POINTS`` buckets (demand by its bucket maximum, capacity by its bucket minimum, so shortages
stay visible; shapes by the last of each bucket), which keeps the file near 1 MB for 57 three-month traces.
Nothing is fetched: the file opens offline. Without JS every trace's charts are shown one after another.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sculpt.domain.arrays import FloatArray
from sculpt.replay.harness import ReplayResult
from sculpt.replay.report_headline import MONTH_H, SUBJECT, date_of, headline, monthly_per_trace

CHART_POINTS = 300  # buckets per per-trace chart
POINTS = 600  # buckets of the fleet-wide cumulative cost
WEEK_STEPS_S = 7 * 86400.0
COLOURS = {"static": "#9467bd", "reactive": "#e07b39", "percentile": "#c2a300", "autopilot": "#d64d8a",
           "sculpt": "#2b7bba", "oracle": "#3a9d5d"}
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#d62728", "#9467bd", "#8c564b", "#17becf", "#bcbd22"]
W, H, PAD_L, PAD_B, PAD_T, PAD_R = 1180, 200, 64, 28, 14, 16
Curves = Mapping[str, Sequence[tuple[float, float]]]  # name -> (under-provisioned fraction, $/month) polyline
Labels = Mapping[str, Sequence[str]]  # name -> one label per point of its curve (``a=0.2``)
EqualRisk = Mapping[str, Mapping[str, Any]]  # baseline -> ``sculpt.replay.suite.SetResult.equal_risk`` row


def _reduce(x: np.ndarray, how: str, points: int = POINTS) -> FloatArray:
    n = len(x)
    if n <= points:
        return x.astype(np.float64)
    b = int(np.ceil(n / points))
    pad = (-n) % b
    y = np.concatenate([x.astype(np.float64), np.full(pad, x[-1])]).reshape(-1, b)
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
    for i in range(1, n):  # a step line: only where the level changes
        if round(float(ys[i]), 1) != round(float(ys[i - 1]), 1):
            parts.append(f"H{xs[i]:.1f}V{ys[i]:.1f}")
    parts.append(f"H{xs[-1]:.1f}")
    return "".join(parts)


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{html.escape(n)}</span>' for n, c in items) + "</div>"


def _svg(body: str, height: int = H) -> str:
    return f'<svg viewBox="0 0 {W} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">{body}</svg>'


def cumulative_cost_svg(r: ReplayResult) -> str:
    series = {p: np.cumsum(b.sum(axis=1, dtype=np.float64)) for p, b in r.bills.items()}
    ymax = max(float(s[-1]) for s in series.values()) * 1.05 or 1.0
    hours = float(r.valid.shape[0] * r.traces[0].step_s / 3600)
    body = _axis(ymax, hours, "cumulative $")
    for p, s in series.items():
        body += f'<path d="{_path(_reduce(s, "last"), ymax)}" fill="none" stroke="{COLOURS[p]}" stroke-width="2"/>'
    return _svg(body) + _legend([(p, COLOURS[p]) for p in series])


def oracle_moves(r: ReplayResult, j: int) -> int:
    """Shape changes of the oracle on trace ``j`` (0 when it has no oracle)."""
    if "oracle" not in r.shapes:
        return 0
    s = r.shapes["oracle"][: int(r.valid[:, j].sum()), j]
    return int((s[1:] != s[:-1]).sum())


def window(r: ReplayResult, j: int) -> tuple[int, int]:
    """The week (whole days) of trace ``j`` in which the oracle moves most: where sizing matters."""
    n = int(r.valid[:, j].sum())
    w = int(WEEK_STEPS_S / r.traces[j].step_s)
    if n <= w:
        return 0, n
    ref = r.shapes.get("oracle", next(iter(r.shapes.values())))[:n, j]
    moves = np.concatenate([[0], np.cumsum(ref[1:] != ref[:-1])])
    day = max(1, int(86400 / r.traces[j].step_s))
    starts = np.arange(0, n - w + 1, day)
    best = int(starts[np.argmax(moves[starts + w - 1] - moves[starts])])
    return best, best + w


def demand_svg(r: ReplayResult, j: int, kind: str, win: tuple[int, int] | None = None,
               points: int = CHART_POINTS) -> str:
    a, b = win or (0, int(r.valid[:, j].sum()))
    n = b - a
    demand = (r.cpu if kind == "cpu" else np.nan_to_num(r.mem, nan=0.0))[a:b, j]
    cap_of = r.arrays.vcpu if kind == "cpu" else r.arrays.memory_gib
    caps = {p: cap_of[np.maximum(s[a:b, j], 0)] for p, s in r.shapes.items()}
    d = _reduce(demand, "max", points)
    reduced = {p: _reduce(c, "min", points) for p, c in caps.items()}
    tops = {p: float(np.percentile(c, 99)) for p, c in reduced.items()}
    ymax = max(float(d.max()), *tops.values()) * 1.1 or 1.0
    rest = max([float(d.max())] + [v for p, v in tops.items() if p != "static"]) * 1.1 or 1.0
    off = ""
    if "static" in tops and tops["static"] > 3 * rest:  # a vastly over-provisioned static shape flattens the rest
        ymax = rest
        unit = "vCPU" if kind == "cpu" else "GiB"
        off = (f'<text x="{W - PAD_R}" y="{PAD_T + 10}" font-size="11" text-anchor="end" fill="{COLOURS["static"]}">'
               f"static: {tops['static']:g} {unit}, off the scale ↑</text>")
    hours = n * r.traces[j].step_s / 3600
    body = _axis(ymax, hours, "vCPU" if kind == "cpu" else "GiB", day0=round(a * r.traces[j].step_s / 86400, 1))
    body += off
    body += (f'<path d="{_path(d, ymax)} V{H - PAD_B} H{PAD_L} Z" fill="#222" fill-opacity="0.18" stroke="#222" '
             'stroke-width="0.8"/>')
    widths = np.linspace(5.5, 1.4, max(len(reduced), 1))  # first drawn widest: coinciding lines stay visible
    for (p, c), w in zip(reduced.items(), widths, strict=False):
        body += f'<path d="{_path(c, ymax, step=True)}" fill="none" stroke="{COLOURS[p]}" stroke-width="{w:.1f}"/>'
    return _svg(body)


def shape_colours(r: ReplayResult, j: int) -> dict[int, str]:
    """One colour per shape trace ``j`` uses (cheapest first), so its charts agree with each other."""
    n = int(r.valid[:, j].sum())
    used = sorted({int(x) for s in r.shapes.values() for x in np.unique(s[:n, j]) if x >= 0},
                  key=lambda i: (r.arrays.price[i], str(r.arrays.names[i])))
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(used)}


def timeline_svg(r: ReplayResult, j: int, win: tuple[int, int] | None = None,
                 points: int = CHART_POINTS) -> tuple[str, list[tuple[str, str]]]:
    a0, b0 = win or (0, int(r.valid[:, j].sum()))
    pols = list(r.shapes)
    colour = shape_colours(r, j)
    used = [s for s in colour if any((r.shapes[p][a0:b0, j] == s).any() for p in pols)]
    row_h = 24
    height = PAD_T + row_h * len(pols) + 6
    body = []
    for k, p in enumerate(pols):
        y = PAD_T + k * row_h
        body.append(f'<text x="{PAD_L - 6}" y="{y + 16}" font-size="12" text-anchor="end">{p}</text>')
        s = _reduce(r.shapes[p][a0:b0, j], "last", points).astype(np.int64)
        n = len(s)
        change = np.flatnonzero(np.diff(s)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [n]])
        for a, b in zip(starts, ends, strict=True):
            x0 = PAD_L + (W - PAD_L - PAD_R) * a / n
            w = max((W - PAD_L - PAD_R) * (b - a) / n, 0.6)
            body.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                        f'fill="{colour.get(int(s[a]), "#fff")}"/>')
    legend = [(f"{r.arrays.names[s]} ({r.arrays.vcpu[s]:g} vCPU, {r.arrays.memory_gib[s]:g} GiB, "
               f"${r.arrays.price[s]:.3f}/h)", colour[s]) for s in used]
    return _svg("".join(body), height), legend


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:28px 40px;color:#222;max-width:1240px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:22px 0 4px} .sub{color:#666;font-size:13px;margin-bottom:10px}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{padding:4px 9px;text-align:right;border-bottom:1px solid #eee}
th{background:#f5f5f5} td:first-child,th:first-child{text-align:left}
.legend{font-size:12px;margin:2px 0 8px 64px} .legend span{margin-right:16px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
.best{font-weight:600;color:#1a6b35} .note{font-size:12px;color:#666}
.lead{font-size:17px;line-height:1.5;margin:10px 0 6px} .lead b{color:#1a6b35} .lead b.bad{color:#b3261e}
.flags{font-size:14px;background:#fff6f0;border-left:4px solid #e07b39;padding:8px 12px;margin:12px 0}
.flags li{margin:3px 0} .floor{font-size:13px;background:#f3f6fa;border-left:4px solid #4e79a7;padding:8px 12px}
.loss{color:#b3261e;font-weight:600} .tag{font-size:11px;border-radius:3px;padding:0 4px;margin-left:3px;color:#fff;white-space:nowrap}
.tag.s{background:#9467bd} .tag.r{background:#e07b39} .tag.o{background:#b3261e} .tag.f{background:#4e79a7}
table.sortable th{cursor:pointer;user-select:none} table.sortable th:hover{background:#e8eef5}
table.sortable th[data-dir=asc]::after{content:" \\25B2"} table.sortable th[data-dir=desc]::after{content:" \\25BC"}
#traces tbody tr{cursor:pointer} #traces tbody tr:hover{background:#f3f7fb} #traces tbody tr.sel{background:#e3edf7}
.filters button{font-size:12px;margin:0 6px 6px 0;padding:3px 8px;border:1px solid #bbb;background:#fff;border-radius:3px}
.filters button.on{background:#2b7bba;color:#fff;border-color:#2b7bba}
.trace{border-top:2px solid #2b7bba;margin-top:18px;padding-top:4px}
.js .trace{display:none} .js .trace.open{display:block}
"""

JS = """
document.body.classList.add('js');
function openTrace(j, scroll){
  document.querySelectorAll('.trace').forEach(function(d){d.classList.toggle('open', d.id === 'trace-' + j);});
  document.querySelectorAll('#traces tbody tr').forEach(function(tr){tr.classList.toggle('sel', tr.dataset.j === String(j));});
  var el = document.getElementById('trace-' + j);
  if (el && scroll) { el.scrollIntoView(); history.replaceState(null, '', '#trace-' + j); }
}
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
      table.querySelectorAll('th').forEach(function(h){delete h.dataset.dir;});
      th.dataset.dir = dir;
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = a.cells[i].dataset.v, y = b.cells[i].dataset.v, nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
        return dir === 'asc' ? c : -c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
document.querySelectorAll('#traces tbody tr').forEach(function(tr){
  tr.addEventListener('click', function(){openTrace(tr.dataset.j, true);});
});
document.querySelectorAll('.filters button').forEach(function(b){
  b.addEventListener('click', function(){
    document.querySelectorAll('.filters button').forEach(function(o){o.classList.toggle('on', o === b);});
    var f = b.dataset.f;
    document.querySelectorAll('#traces tbody tr').forEach(function(tr){
      tr.style.display = (!f || (' ' + tr.dataset.flags + ' ').indexOf(' ' + f + ' ') >= 0) ? '' : 'none';
    });
  });
});
(function(){
  var h = decodeURIComponent(location.hash.slice(1)), j = null;
  if (/^trace-\\d+$/.test(h)) j = h.slice(6);
  else document.querySelectorAll('#traces tbody tr').forEach(function(tr){ if (tr.dataset.trace === h) j = tr.dataset.j; });
  if (j === null) { var first = document.querySelector('#traces tbody tr'); if (first) j = first.dataset.j; }
  if (j !== null) openTrace(j, !!h);
})();
"""


def _money(v: float) -> str:
    sign = "−" if v < 0 else ""
    return f"{sign}${abs(v):,.0f}" if abs(v) >= 100 else f"{sign}${abs(v):,.2f}"


def _num(key: str, value: float | int | None, text: str) -> str:
    """A headline figure, tagged with its JSON key (``data-h``) and exact value (``data-v``)."""
    v = "" if value is None else repr(value)
    return f'<span data-h="{key}" data-v="{v}">{html.escape(text)}</span>'


def _saving_text(key: str, s: dict[str, float | None]) -> str:
    usd, pct = float(s["usd_month"] or 0.0), s["pct"]
    word = "saves" if usd >= 0 else "costs"
    cls = "" if usd >= 0 else ' class="bad"'
    p = f" ({abs(pct):.1f} %)" if pct is not None else ""
    more = "" if usd >= 0 else " more"
    return (f"{word} <b{cls}>{_num(key + '.usd_month', s['usd_month'], _money(abs(usd)))} a month{more}</b>"
            f"{_num(key + '.pct', s['pct'], p)}")


def headline_section(r: ReplayResult, hl: dict[str, Any]) -> str:
    pols = list(r.scores)
    mo, sv, cap = hl["monthly_usd"], hl["saving_vs"], hl["captured_vs_oracle"]
    out = ["<h2>Headline</h2>"]
    if SUBJECT in mo:
        lead = [f"On {hl['traces']} trace(s) recorded {hl['date_range']['first']} to {hl['date_range']['last']}, "
                f"sculpt costs <b>{_num('monthly_usd.' + SUBJECT, mo[SUBJECT], _money(mo[SUBJECT]))}</b> a month"]
        for base in ("static", "reactive"):
            if base in sv:
                lead.append(f"; against {base} it " + _saving_text(f"saving_vs.{base}.{SUBJECT}", sv[base][SUBJECT]))
        if cap.get(SUBJECT) is not None:
            c = cap[SUBJECT]
            lead.append(f"; it captures {_num('captured_vs_oracle.' + SUBJECT, c, f'{100 * c:.0f} %')} of the "
                        "saving the oracle (hindsight) finds over static")
        out.append('<p class="lead">' + "".join(lead) + ".</p>")
    head = ["policy", "$ / month", "saving vs static", "saving vs reactive", "captured vs oracle",
            "under-provisioned", "OOM events", "migrations"]
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for p in pols:
        cells = [f'<i style="display:inline-block;width:10px;height:10px;background:{COLOURS[p]};margin-right:6px">'
                 f"</i>{p}", _num(f"monthly_usd.{p}", mo[p], _money(mo[p]))]
        for base in ("static", "reactive"):
            s = sv.get(base, {}).get(p)
            cells.append("–" if s is None else _num(f"saving_vs.{base}.{p}.usd_month", s["usd_month"],
                                                     _money(float(s["usd_month"] or 0.0)))
                         + " " + _num(f"saving_vs.{base}.{p}.pct", s["pct"],
                                      "" if s["pct"] is None else f"({s['pct']:+.1f} %)"))
        c = cap.get(p)
        cells.append("–" if c is None else _num(f"captured_vs_oracle.{p}", c, f"{100 * c:.1f} %"))
        rk = hl["risk"][p]
        cells.append(_num(f"risk.{p}.underprovisioned_fraction", rk["underprovisioned_fraction"],
                          f"{rk['underprovisioned_fraction']:.3%}"))
        cells.append(_num(f"risk.{p}.oom_events", rk["oom_events"], f"{rk['oom_events']:,}"))
        cells.append(_num(f"risk.{p}.migrations", rk["migrations"], f"{rk['migrations']:,}"))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("".join(rows) + "</table>")
    out.append(f'<p class="note">A month is {MONTH_H:g} h: each trace\'s cost per replayed hour × {MONTH_H:g}, summed '
               f"over the {hl['traces']} trace(s) — the fleet's monthly bill if every VM ran all month as it did in "
               "the trace. Cost includes the boot overlap of every move (both shapes billed). Under-provisioned: "
               "share of steps whose CPU demand exceeded the serving shape. OOM events: times memory demand rose "
               "above it. Captured vs oracle: (static − policy) / (static − oracle). The oracle knows the future: "
               "the lower bound with no under-provisioning.</p>")
    out.append(_losses(hl))
    out.append(_floor_note(r, hl))
    return "\n".join(out)


def _losses(hl: dict[str, Any]) -> str:
    lo = hl["losses"]
    if not lo.get("policy"):
        return ""
    n = hl["traces"]
    items = []
    for base in ("static", "reactive"):
        key = f"costlier_than_{base}"
        if key in lo:
            k = len(lo[key])
            extra = lo[f"extra_usd_month_vs_{base}"]
            items.append(f"<li>sculpt costs more than {base} on "
                         f"<span class='loss'>{_num('losses.' + key, k, str(k))}</span> of {n} traces "
                         f"({_num(f'losses.extra_usd_month_vs_{base}', extra, _money(extra))} a month more on "
                         f"those) — filter the table: “costlier than {base}”</li>")
    if "oom_where_static_had_none" in lo:
        k = len(lo["oom_where_static_had_none"])
        e = lo["oom_events_where_static_had_none"]
        items.append(f"<li>OOM events under sculpt on <span class='loss'>"
                     f"{_num('losses.oom_where_static_had_none', k, str(k))}</span> traces where static had none "
                     f"({_num('losses.oom_events_where_static_had_none', e, f'{e:,}')} events) — filter: “OOM, "
                     "static none”</li>")
    return '<div class="flags"><b>Where sculpt loses</b><ul>' + "".join(items) + "</ul></div>"


def _floor_note(r: ReplayResult, hl: dict[str, Any]) -> str:
    fl = hl["floor"]
    k = len(fl["traces"])
    if not k:
        return ""
    shapes = ", ".join(fl["shapes"])
    i = int(np.flatnonzero(r.arrays.names == fl["shapes"][0])[0])
    return (f'<p class="floor">{_num("floor.traces", k, str(k))} of {hl["traces"]} traces sit on the smallest '
            f"allowed shape ({html.escape(shapes)}: {r.arrays.vcpu[i]:g} vCPU, {r.arrays.memory_gib[i]:g} GiB, "
            f"${r.arrays.price[i]:.3f}/h) under every policy, the oracle included: their demand never needs "
            "more, so no policy can save anything there and they count the same in every column. The savings "
            "above come from the other traces. Filter: “smallest shape”.</p>")


def _colour(name: str, k: int) -> str:
    """A curve named after a policy (``sculpt``, ``reactive (margin)``) takes that policy's colour."""
    head = name.split()[0] if name.split() else name
    return COLOURS.get(head, PALETTE[k % len(PALETTE)])


def cost_risk_section(r: ReplayResult, hl: dict[str, Any], curves: Curves | None = None, labels: Labels | None = None,
                      equal_risk: EqualRisk | None = None) -> str:
    """Cost against risk (issue 13): each policy's $/month against its under-provisioned fraction (large
    dots); ``curves``, named polylines of (under-provisioned fraction, $/month) — sculpt swept over its
    aggressiveness, each baseline over its margin — through the same axes, each point labelled from
    ``labels``; ``equal_risk`` (from ``sculpt replay --suite --curves``) adds a dashed guide at each
    baseline's risk and a table of sculpt's cost there."""
    pts = {p: (float(hl["risk"][p]["underprovisioned_fraction"]), float(hl["monthly_usd"][p])) for p in r.scores}
    all_pts = list(pts.values()) + [xy for c in (curves or {}).values() for xy in c]
    xmax = max(x for x, _ in all_pts) * 1.15 or 0.01
    ylo = min(y for _, y in all_pts) * 0.9
    yhi = max(y for _, y in all_pts) * 1.05 or 1.0
    ylo = ylo if yhi > ylo else 0.0
    h = 340

    def xy(x: float, y: float) -> tuple[float, float]:
        return (PAD_L + (W - PAD_L - PAD_R) * x / xmax, h - PAD_B - (h - PAD_B - PAD_T) * (y - ylo) / (yhi - ylo))

    body = [f'<line x1="{PAD_L}" y1="{h - PAD_B}" x2="{W - PAD_R}" y2="{h - PAD_B}" stroke="#333"/>',
            f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{h - PAD_B}" stroke="#333"/>']
    for i in range(5):
        yv = ylo + (yhi - ylo) * i / 4
        x0, y0 = xy(xmax * i / 4, yv)
        body.append(f'<line x1="{PAD_L}" y1="{y0:.1f}" x2="{W - PAD_R}" y2="{y0:.1f}" stroke="#eee"/>')
        body.append(f'<text x="{x0:.1f}" y="{h - 8}" font-size="11" text-anchor="middle">{xmax * i / 4:.2%}</text>')
        body.append(f'<text x="{PAD_L - 6}" y="{y0 + 4:.1f}" font-size="11" text-anchor="end">{_money(yv)}</text>')
    body.append(f'<text x="{W - PAD_R}" y="{h - PAD_B - 6}" font-size="11" text-anchor="end">'
                "under-provisioned fraction →</text>")
    for base, row in (equal_risk or {}).items():
        gx, _ = xy(float(row["risk"]), ylo)
        body.append(f'<line x1="{gx:.1f}" y1="{PAD_T}" x2="{gx:.1f}" y2="{h - PAD_B}" stroke="{_colour(base, 0)}" '
                    f'stroke-dasharray="4 4" stroke-width="1"><title>{html.escape(base)}\'s risk</title></line>')
    for k, (name, c) in enumerate((curves or {}).items()):
        col = _colour(name, k)
        d = " L".join(f"{a:.1f},{b:.1f}" for a, b in (xy(x, y) for x, y in c))
        body.append(f'<path d="M{d}" fill="none" stroke="{col}" stroke-width="1.8" stroke-opacity="0.8">'
                    f"<title>{html.escape(name)}</title></path>")
        names = list((labels or {}).get(name, []))
        placed: list[tuple[float, float, list[str]]] = []  # settings landing on one spot share one label
        for j, (x, y) in enumerate(c):
            a, b = xy(x, y)
            lab = names[j] if j < len(names) else ""
            body.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="#fff" stroke="{col}" stroke-width="1.6">'
                        f"<title>{html.escape(f'{name} {lab}: {x:.3%} under-provisioned, {_money(y)}/month')}"
                        "</title></circle>")
            if placed and abs(placed[-1][0] - a) < 4 and abs(placed[-1][1] - b) < 4:
                placed[-1][2].append(lab)
            else:
                placed.append((a, b, [lab]))
        for a, b, labs in placed:
            text = labs[0] if len(labs) == 1 else f"{labs[0]}…{labs[-1].partition('=')[2] or labs[-1]}"
            if text:
                body.append(f'<text x="{a + 5:.1f}" y="{b - 5:.1f}" font-size="10" fill="{col}">{html.escape(text)}'
                            "</text>")
    for p, (x, y) in pts.items():
        a, b = xy(x, y)
        body.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="6" fill="{COLOURS.get(p, "#777")}"/>'
                    f'<text x="{a + 9:.1f}" y="{b + 4:.1f}" font-size="12">{p}</text>')
    note = ("each policy's $/month against its under-provisioned fraction (down and left is better; large dots: "
            "the settings the table above ran).")
    if curves:
        note += (" Lines: each policy swept over its knob — sculpt's aggressiveness (a), each baseline's safety "
                 "margin (m: the need × (1 + m)) — so policies can be compared at equal risk, not only at their "
                 "defaults.")
    legend = _legend([(n, _colour(n, k)) for k, n in enumerate(curves or {})]) if curves else ""
    return (f'<h2 id="cost-risk">Cost against risk</h2><div class="sub">{note}</div>'
            + _svg("".join(body), h) + legend + _equal_risk_table(equal_risk))


def _equal_risk_table(rows: EqualRisk | None) -> str:
    if not rows:
        return ""
    head = ["baseline (default)", "its under-provisioned", "its × oracle", "sculpt × oracle at that risk",
            "cheapest baseline there", "sculpt ÷ cheapest"]
    out = ['<h3>At equal risk</h3><table id="equal-risk"><tr>' + "".join(f"<th>{c}</th>" for c in head) + "</tr>"]
    for b, row in rows.items():
        mine, ratio = row.get("sculpt_x_oracle"), row.get("ratio_to_best")
        cells = [html.escape(b), f"{float(row['risk']):.3%}", f"{float(row['x_oracle']):.3f}",
                 "not reached" if mine is None else f"{float(mine):.3f}",
                 "–" if row.get("best_baseline") is None else
                 f"{html.escape(str(row['best_baseline']))} {float(row['best_x_oracle']):.3f}",
                 "–" if ratio is None else f'<span class="{"best" if ratio < 1 else "loss"}">{float(ratio):.3f}</span>']
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table><p class=\"note\">Sculpt's cost read off its cost–risk frontier (the swept settings no "
               "other setting beats on both axes, linearly interpolated) at the risk of each baseline's default; "
               "“not reached”: no aggressiveness ran that safe. The cheapest baseline there is the lowest of the "
               "baselines' frontiers at that risk. Below 1: sculpt costs less at equal risk.</p>")
    return "".join(out)


def _flag_tags(flags: list[str]) -> str:
    names = {"static": ("s", "> static", "sculpt costs more than static"),
             "reactive": ("r", "> reactive", "sculpt costs more than reactive"),
             "oom": ("o", "OOM", "OOM events under sculpt, none under static"),
             "floor": ("f", "min shape", "every policy on the smallest allowed shape")}
    return "".join(f'<span class="tag {names[f][0]}" title="{names[f][2]}">{names[f][1]}</span>' for f in flags)


def trace_flags(r: ReplayResult, hl: dict[str, Any]) -> list[list[str]]:
    lo, fl = hl["losses"], set(hl["floor"]["traces"])
    sets = {"static": set(lo.get("costlier_than_static", [])), "reactive": set(lo.get("costlier_than_reactive", [])),
            "oom": set(lo.get("oom_where_static_had_none", []))}
    return [[f for f, s in sets.items() if t.name in s] + (["floor"] if t.name in fl else []) for t in r.traces]


def per_trace_table(r: ReplayResult, hl: dict[str, Any]) -> str:
    pols = list(r.scores)
    mo = monthly_per_trace(r)
    flags = trace_flags(r, hl)
    online = [p for p in pols if p != "oracle"]
    head = (["trace", "hours"] + [f"{p} $/mo" for p in pols]
            + (["sculpt vs static $/mo", "captured"] if {"sculpt", "static"} <= set(pols) else [])
            + [f"{p} under" for p in online] + [f"{p} OOM" for p in online] + [f"{p} moves" for p in pols] + ["flags"])
    filters = [("", "all"), ("static", "costlier than static"), ("reactive", "costlier than reactive"),
               ("oom", "OOM, static none"), ("floor", "smallest shape")]
    out = ['<div class="filters">' + "".join(f'<button data-f="{f}"{" class=on" if not f else ""}>{t}</button>'
                                            for f, t in filters) + "</div>",
           '<table id="traces" class="sortable"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
           + "</tr></thead><tbody>"]
    order = np.argsort(-mo.get("oracle", next(iter(mo.values()))), kind="stable")
    for i in (int(x) for x in order):
        tr = r.traces[i]
        best = min(online, key=lambda p: float(r.scores[p].cost_usd[i])) if online else None
        cells = [(tr.name, html.escape(tr.name)), (f"{tr.hours:.2f}", f"{tr.hours:,.0f}")]
        for p in pols:
            v = float(mo[p][i])
            cls = ' class="best"' if p == best else ""
            cells.append((f"{v:.4f}", f'<span{cls} title="${float(r.scores[p].cost_usd[i]):,.2f} over the trace">'
                                      f"{v:,.2f}</span>"))
        if {"sculpt", "static"} <= set(pols):
            d = float(mo["static"][i] - mo["sculpt"][i])
            cells.append((f"{d:.4f}", f'<span class="{"loss" if d < -1e-9 else ""}">{d:+,.2f}</span>'))
            room = float(mo["static"][i] - mo["oracle"][i]) if "oracle" in mo else 0.0
            c = d / room if room > 1e-9 else None
            cells.append(("" if c is None else f"{c:.4f}", "–" if c is None else f"{100 * c:.0f} %"))
        for p in online:
            u = float(r.scores[p].under_steps[i] / max(r.scores[p].steps[i], 1))
            cells.append((f"{u:.6f}", f"{u:.2%}"))
        for p in online:
            k = int(r.scores[p].oom_events[i])
            cells.append((str(k), str(k)))
        for p in pols:
            k = int(r.scores[p].migrations[i])
            cells.append((str(k), str(k)))
        cells.append((" ".join(flags[i]), _flag_tags(flags[i])))
        tds = "".join(f'<td data-v="{html.escape(v)}">{t}</td>' for v, t in cells)
        out.append(f'<tr data-j="{i}" data-trace="{html.escape(tr.name)}" data-flags="{" ".join(flags[i])}">{tds}</tr>')
    out.append("</tbody></table>")
    out.append('<p class="note">$/mo: the trace\'s cost per replayed hour × 730 (hover for its cost over the '
               "trace); the cheapest online policy in bold; click a column to sort, a row to open its charts.</p>")
    return "".join(out)


def trace_panel(r: ReplayResult, j: int, flags: list[str]) -> str:
    """Trace ``j``'s charts: demand against each policy's capacity (whole trace), its shapes, the oracle's week."""
    tr = r.traces[j]
    pols = list(r.scores)
    costs = ", ".join(f"{p} ${float(r.scores[p].cost_usd[j]):,.2f}" for p in pols)
    parts = [f'<div class="trace" id="trace-{j}" data-trace="{html.escape(tr.name)}">',
             f"<h3>{html.escape(tr.name)} {_flag_tags(flags)}</h3><div class='sub'>{tr.layout} trace, "
             f"{date_of(float(tr.t[0]))} to {date_of(float(tr.t[-1]))}, {tr.hours:,.0f} h replayed; {costs}</div>"]
    if "floor" in flags:
        parts.append('<p class="floor">Every policy sits on the smallest allowed shape throughout: demand never '
                     "needs more, so there is nothing to save on this trace.</p>")
    pol_legend = _legend([("demand", "#bbb")] + [(p, COLOURS[p]) for p in r.shapes])
    parts.append("<div class='sub'>CPU demand (shaded, bucket maxima) against each policy's vCPUs "
                 "(bucket minima; where policies coincide their lines nest, widest first), whole trace</div>" + demand_svg(r, j, "cpu") + pol_legend)
    if tr.has_memory:
        parts.append("<div class='sub'>Memory demand against each policy's GiB, whole trace</div>"
                     + demand_svg(r, j, "mem"))
    svg, legend = timeline_svg(r, j)
    parts.append("<div class='sub'>Shapes, whole trace</div>" + svg + _legend(legend))
    moves = oracle_moves(r, j)
    n = int(r.valid[:, j].sum())
    if "oracle" in r.shapes and moves == 0:
        parts.append('<p class="note">The oracle never moves on this trace: in hindsight one shape serves all of '
                     "it, so every move an online policy makes here is a cost.</p>")
    elif moves and n * tr.step_s > WEEK_STEPS_S:
        win = window(r, j)
        day0 = win[0] * tr.step_s / 86400
        when = f"days {day0:.0f}–{day0 + (win[1] - win[0]) * tr.step_s / 86400:.0f}, the week the oracle moves most"
        wsvg, wlegend = timeline_svg(r, j, win)
        parts.append(f"<div class='sub'>CPU demand and shapes, {when}</div>" + demand_svg(r, j, "cpu", win)
                     + wsvg + _legend(wlegend))
    parts.append("</div>")
    return "".join(parts)


def render(r: ReplayResult, *, allowed: np.ndarray | None = None, curves: Curves | None = None,
           labels: Labels | None = None, equal_risk: EqualRisk | None = None) -> str:
    """The report's HTML. ``allowed``: the shapes the policies chose among (for "smallest allowed shape");
    ``curves``/``labels``/``equal_risk``: the cost–risk curves of a sweep (see ``cost_risk_section``)."""
    hl = headline(r, allowed)
    flags = trace_flags(r, hl)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>sculpt replay</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>sculpt replay</h1>",
             f'<div class="sub">{len(r.traces)} trace(s), {r.trace_hours:,.0f} hours replayed at '
             f"{r.traces[0].step_s:g} s steps, recorded {hl['date_range']['first']} to {hl['date_range']['last']}, "
             f"on the simulated cloud ({r.arrays.offerings[0].region}, {r.shapes_considered} shapes considered), "
             f"sculpt model: {html.escape(r.model or '-')}; ran in {r.elapsed_s:.1f} s.</div>",
             headline_section(r, hl),
             cost_risk_section(r, hl, curves, labels, equal_risk),
             "<h2>Cumulative cost, all traces</h2>", cumulative_cost_svg(r),
             "<h2>Per trace</h2>", per_trace_table(r, hl),
             '<div id="charts">' + "".join(trace_panel(r, j, flags[j]) for j in range(len(r.traces))) + "</div>"]
    for note in r.notes:
        parts.append(f'<p class="note">note: {html.escape(note)}</p>')
    parts.append(f"<script>{JS}</script></body></html>")
    return "\n".join(parts)


def write_report(r: ReplayResult, path: str | Path, *, allowed: np.ndarray | None = None,
                 curves: Curves | None = None, labels: Labels | None = None,
                 equal_risk: EqualRisk | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(r, allowed=allowed, curves=curves, labels=labels, equal_risk=equal_risk), encoding="utf-8")
    return p
