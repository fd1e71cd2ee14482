#!/usr/bin/env python3
"""Rewrite the figure blocks of the docs from the benchmarks' JSON, so quoted figures cannot go stale.

A block is everything between ``<!-- figures:NAME -->`` and the next ``<!-- /figures -->`` (each on its own
line); NAME says what is rendered there:

- ``replay``: the policies' table ($/month, × oracle, saving vs static, risk) and the headline sentence,
  from ``sculpt bench replay``'s JSON;
- ``replay-json``: the ``sculpt replay --json`` example, from the same JSON.

Usage (from the repository root)::

    python scripts/update_doc_figures.py            # rewrite README.md and docs/replay.md from the JSON
    python scripts/update_doc_figures.py --run      # run `sculpt bench replay --out JSON` first (minutes)
    python scripts/update_doc_figures.py --check    # exit 1 when a block differs from what the JSON gives

The JSON (default ``docs/figures/bench-replay.json``) is committed with the docs: ``--check`` (a test runs
it) fails when someone edits a figure by hand or updates the JSON without the docs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "docs" / "figures" / "bench-replay.json"
DEFAULT_DOCS = [ROOT / "README.md", ROOT / "docs" / "replay.md"]
OPEN = re.compile(r"^<!-- figures:(?P<name>[\w-]+) -->$", re.M)
BLOCK = re.compile(r"^<!-- figures:(?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- /figures -->$", re.M | re.S)
POLICIES = ("static", "reactive", "sculpt", "oracle")


class FigureError(Exception):
    """A one-line problem: printed as ``error: ...``, exit 1."""


def _money(v: float) -> str:
    return f"${v:,.0f}"


def replay_table(b: dict[str, Any]) -> str:
    """The policies side by side, then the headline in words."""
    pol, hl = b["policies"], b.get("headline", {})
    mo = hl.get("monthly_usd", {})
    oracle = pol.get("oracle", {}).get("cost_usd")
    vs_static = hl.get("saving_vs", {}).get("static", {})
    when = f" on {b['measured_at'][:10]}" if b.get("measured_at") else ""
    m = b.get("machine") or {}
    load = " ".join(f"{x:g}" for x in m.get("load_avg", []))
    on = f" ({m['cpus']} CPUs, load average {load})" if m.get("cpus") else ""
    dates = hl.get("date_range")
    rec = f", recorded {dates['first']} to {dates['last']}" if dates else ""
    busy = ""
    if m.get("cpus") and m.get("load_avg") and m["load_avg"][0] > 1.5 * m["cpus"]:
        busy = ": the machine was busy, so that wall time overstates the replay's"
    lines = [f"`sculpt bench replay`{when}{on}: {b['traces']} traces, {b['trace_hours']:,.0f} h{rec}, "
             f"model `{b.get('model', '-')}`, {b.get('wall_s', b.get('elapsed_s', 0)):.0f} s wall{busy} "
             f"(a month = {hl.get('month_h', 730):g} h).", "",
             "| policy | $/month | × oracle | saving vs static | under-provisioned | OOM events | migrations |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in POLICIES:
        if p not in pol:
            continue
        s = pol[p]
        ratio = f"{s['cost_usd'] / oracle:.2f}" if oracle else "–"
        sv = vs_static.get(p)
        saving = f"{_money(sv['usd_month'])} ({sv['pct']:.1f} %)" if sv and sv.get("pct") is not None else "–"
        month = _money(mo[p]) if p in mo else "–"
        lines.append(f"| {p} | {month} | {ratio} | {saving} | {100 * s['underprovisioned_fraction']:.3f} % | "
                     f"{s['oom_events']:,} | {s['migrations']:,} |")
    words = _headline_words(b)
    if words:
        lines += ["", words]
    return "\n".join(lines)


def _headline_words(b: dict[str, Any]) -> str:
    hl = b.get("headline")
    if not hl or "sculpt" not in hl.get("monthly_usd", {}):
        return ""
    n, sv, lo = hl["traces"], hl["saving_vs"], hl["losses"]
    out = []
    for base in ("static", "reactive"):
        s = sv.get(base, {}).get("sculpt")
        if s:
            gain = s["usd_month"] >= 0
            out.append(f"{'saves' if gain else 'costs'} {_money(abs(s['usd_month']))} a month"
                       f"{'' if gain else ' more'} ({abs(s['pct'] or 0):.1f} %) against {base}")
    cap = hl.get("captured_vs_oracle", {}).get("sculpt")
    text = "sculpt " + " and ".join(out)
    if cap is not None:
        text += f" — {100 * cap:.0f} % of the saving the oracle finds over static"
    loss = [f"more than {b_} on {len(lo[f'costlier_than_{b_}'])} of {n} traces"
            for b_ in ("static", "reactive") if f"costlier_than_{b_}" in lo]
    if loss:
        text += "; but it costs " + " and ".join(loss)
    if "oom_where_static_had_none" in lo:
        text += (f", and has {lo['oom_events_where_static_had_none']:,} OOM events on "
                 f"{len(lo['oom_where_static_had_none'])} traces where static had none")
    floor = hl.get("floor", {}).get("traces", [])
    if floor:
        text += (f". {len(floor)} of {n} traces sit on the smallest allowed shape "
                 f"({', '.join(hl['floor']['shapes'])}) under every policy: nothing to save there")
    return text + "."


def replay_json(b: dict[str, Any]) -> str:
    """The ``sculpt replay --json`` example (the fields the bench shares with it)."""
    pol = b["policies"]
    rows = []
    names = [p for p in POLICIES if p in pol]
    for i, p in enumerate(names):
        lead = '{"policies": {' if i == 0 else "              "
        pad = " " * (9 - len(p))
        end = "}," if i == len(names) - 1 else ","
        rows.append(f'{lead}"{p}":{pad}{json.dumps(pol[p])}{end}')
    rows.append(f' "traces": {b["traces"]}, "trace_hours": {b["trace_hours"]}, "elapsed_s": {b["elapsed_s"]}, '
                '"headline": {...}}')
    return "```json\n" + "\n".join(rows) + "\n```"


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {"replay": replay_table, "replay-json": replay_json}


def rewrite(text: str, bench: dict[str, Any], where: str) -> str:
    """``text`` with every figure block rendered afresh from ``bench``."""
    if len(OPEN.findall(text)) != len(BLOCK.findall(text)):
        raise FigureError(f"{where}: a `<!-- figures:NAME -->` has no `<!-- /figures -->` after it. "
                          "To fix: close the block on a line of its own")

    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            raise FigureError(f"{where}: unknown figure block '{name}'. To fix: use one of {', '.join(RENDERERS)}")
        return f"<!-- figures:{name} -->\n{RENDERERS[name](bench)}\n<!-- /figures -->"

    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("docs", nargs="*", type=Path, help="files to rewrite (default: README.md, docs/replay.md)")
    ap.add_argument("--replay-json", type=Path, default=DEFAULT_JSON, help="sculpt bench replay's JSON")
    ap.add_argument("--run", action="store_true", help="run `sculpt bench replay --out JSON` first")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when a doc differs")
    args = ap.parse_args(argv)
    try:
        if args.run:
            subprocess.run([sys.executable, "-m", "sculpt.cli.main", "bench", "replay", "--out",
                            str(args.replay_json)], check=True, stdout=subprocess.DEVNULL)
        try:
            bench = json.loads(args.replay_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise FigureError(f"cannot read {args.replay_json}: {e}. To fix: run with --run, or pass "
                              "--replay-json FILE written by `sculpt bench replay --out FILE`") from e
        stale = []
        for doc in args.docs or DEFAULT_DOCS:
            old = doc.read_text(encoding="utf-8")
            new = rewrite(old, bench, str(doc))
            if new != old:
                stale.append(doc)
                if not args.check:
                    doc.write_text(new, encoding="utf-8")
    except (FigureError, subprocess.CalledProcessError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for doc in stale:
        verb = "differs from" if args.check else "rewritten from"
        print(f"{doc}: figures {verb} {args.replay_json}")
    if args.check and stale:
        print("run `python scripts/update_doc_figures.py` to rewrite them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
