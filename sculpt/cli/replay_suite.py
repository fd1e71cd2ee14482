"""The human output of ``sculpt replay --suite``: one table per data set, and with ``--curves`` the sweep's
points and sculpt's cost at each baseline's risk (the figures of ``sculpt.replay.suite``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from sculpt.replay.suite import SetResult


def _f(v: Any, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def print_suite(results: Sequence[SetResult], console: Console | None = None) -> None:
    import sys

    out = console or Console(width=None if sys.stdout.isatty() else 132)  # a pipe gets whole columns
    for s in results:
        r = s.result
        t = Table(title=f"{s.name}: {len(r.traces)} traces, {s.vm_days:,.0f} VM-days, model {r.model or '-'} "
                        f"({r.elapsed_s:.1f} s)")
        for col in ("policy", "cost $", "x oracle", "captured", "under-provisioned", "OOM events", "moves/VM-day"):
            t.add_column(col, justify="left" if col == "policy" else "right")
        for p, m in s.policies().items():
            t.add_row(p, f"{m['cost_usd']:,.2f}", _f(m["x_oracle"], ".3f"), _f(m["captured"], ".1%"),
                      f"{m['underprovisioned_fraction']:.3%}", f"{m['oom_events']:,}", f"{m['moves_per_vm_day']:.3f}")
        out.print(t)
        if not r.sweep:
            continue
        c = Table(title=f"{s.name}: cost-risk sweep (a: aggressiveness, m: margin; * default)")
        for col in ("policy", "setting", "x oracle", "under-provisioned", "OOM events", "moves/VM-day"):
            c.add_column(col, justify="left" if col in ("policy", "setting") else "right")
        for p, pts in s.curves().items():
            for q in pts:
                knob = f"a={q['param']:g}" if p == "sculpt" else f"m={q['param']:+.0%}"
                c.add_row(p, knob + (" *" if q["default"] else ""), _f(q["x_oracle"], ".3f"),
                          f"{q['underprovisioned_fraction']:.3%}", f"{q['oom_events']:,}",
                          f"{q['moves_per_vm_day']:.3f}")
        out.print(c)
        e = Table(title=f"{s.name}: at equal risk (sculpt's frontier at each baseline's default risk)")
        for col in ("baseline", "its under-prov.", "its x oracle", "sculpt x oracle there", "cheapest baseline there",
                    "sculpt / cheapest"):
            e.add_column(col, justify="left" if col == "baseline" else "right")
        for b, row in s.equal_risk().items():
            best = "–" if row["best_baseline"] is None else f"{row['best_baseline']} {row['best_x_oracle']:.3f}"
            mine = "not reached" if row["sculpt_x_oracle"] is None else f"{row['sculpt_x_oracle']:.3f}"
            e.add_row(b, f"{row['risk']:.3%}", f"{row['x_oracle']:.3f}", mine, best, _f(row["ratio_to_best"], ".3f"))
        out.print(e)
