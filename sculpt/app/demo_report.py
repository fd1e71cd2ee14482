"""What ``sculpt demo`` tells: each morph as a ``Move``, the run as a ``DemoResult``, the closing summary.

Why it exists: the demo's story (in place or blue/green, the pause, the keys verified, what was shown and
what was not) is data with its own wording and tests (``tests/unit/test_ux.py``), apart from the orchestration
in ``sculpt.app.demo`` that produces it; ``--json`` prints ``DemoResult.to_json()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sculpt.migrate.actuator import MorphOutcome


@dataclass
class Move:
    """One morph as the demo tells it: how it was made and what the state looked like after it."""

    kind: str  # "in-place" | "blue-green"
    from_shape: str
    to_shape: str
    from_region: str
    to_region: str
    result: str
    seconds: float
    pause_ms: float = 0.0  # how long the load balancer held requests (blue/green only)
    steps: list[str] = field(default_factory=list)
    keys_checked: int = 0
    keys_verified: int = 0
    reason: str = ""

    @property
    def region_move(self) -> bool:
        return self.from_region != self.to_region

    def how(self) -> str:
        """``in place`` / ``blue/green, pause 41 ms`` plus the keys check, for the story line."""
        how = "in place (same process, cgroup limits changed live)" if self.kind == "in-place" else \
            f"blue/green, pause {self.pause_ms:.0f} ms"
        if self.keys_checked:
            how += f", {self.keys_verified}/{self.keys_checked} keys verified"
        return how

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": self.from_shape, "to": self.to_shape, "from_region": self.from_region,
                "to_region": self.to_region, "region_move": self.region_move, "result": self.result,
                "seconds": round(self.seconds, 3), "pause_ms": round(self.pause_ms, 1), "steps": self.steps,
                "keys_checked": self.keys_checked, "keys_verified": self.keys_verified, "reason": self.reason}


@dataclass
class DemoResult:
    source: str
    morphs: list[MorphOutcome] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)  # every morph attempted, told: kind, pause, keys
    first_morph_s: float | None = None  # from the start of the load
    first_morph_total_s: float | None = None  # from the start of the command
    ticks: int = 0
    requests: int = 0
    failed: int = 0
    writes: int = 0
    writes_failed: int = 0
    leftovers: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "morphs": [a.to_json() for a in self.morphs],
                "moves": [m.to_json() for m in self.moves], "shown": self.shown(),
                "first_morph_s": None if self.first_morph_s is None else round(self.first_morph_s, 2),
                "first_morph_total_s": None if self.first_morph_total_s is None else round(self.first_morph_total_s, 2),
                "ticks": self.ticks, "requests": self.requests, "failed": self.failed,
                "writes": self.writes, "writes_failed": self.writes_failed,
                "leftover_pids": self.leftovers, "elapsed_s": round(self.elapsed_s, 2)}

    def shown(self) -> dict[str, bool]:
        """Which parts of the story happened (done morphs only)."""
        done = [m for m in self.moves if m.result == "done"]
        return {"in_place": any(m.kind == "in-place" for m in done),
                "blue_green": any(m.kind == "blue-green" and m.keys_checked and m.keys_verified == m.keys_checked
                                  for m in done),
                "region_move": any(m.region_move for m in done)}



def summary(result: DemoResult) -> list[str]:
    """The closing lines: the morphs by kind (each blue/green one told), what was shown and what was not,
    requests and writes, and what is left running."""
    done = [m for m in result.moves if m.result == "done"]
    in_place = [m for m in done if m.kind == "in-place"]
    bg = [m for m in done if m.kind != "in-place"]
    told = f"{len(in_place)} in place, {len(bg)} blue/green" + "".join(
        f"; {m.from_shape}@{m.from_region} -> {m.to_shape}@{m.to_region}"
        f"{' (region move)' if m.region_move else ''}: {m.how()}" for m in bg)
    shown = result.shown()
    parts = (("an in-place resize", shown["in_place"]),
             ("a blue/green handover with every key verified", shown["blue_green"]),
             ("a region move", shown["region_move"]))
    lines = [f"[demo] done in {result.elapsed_s:.0f}s: {len(done)} morph(s): {told}",
             "[demo] shown: " + ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in parts)]
    if result.first_morph_s is not None:
        lines.append(f"[demo] first morph after {result.first_morph_s:.1f}s of load "
                     f"({result.first_morph_total_s or float('nan'):.1f}s after start)")
    lines.append(f"[demo] {result.requests} requests, {result.failed} failed; {result.writes} writes, "
                 f"{result.writes_failed} failed; "
                 + ("no process left" if not result.leftovers else f"LEFT RUNNING: {result.leftovers}"))
    missing = [name for name, ok in parts if not ok]
    if missing:
        lines.append(f"[demo] not shown this run: {', '.join(missing)} (the decision did not call for it in "
                     "time; a longer --duration gives the model more history)")
    return lines


def move_of(a: MorphOutcome, rep: Any, from_region: str) -> Move:
    """A morph as the demo tells it, from the loop's action and the orchestrator's report."""
    kind = getattr(rep, "strategy", None) or ("blue-green" if a.region != from_region else "in-place")
    steps = [f"{s.state.value} {((s.ended or s.started) - s.started) * 1000:.0f} ms"
             for s in getattr(rep, "steps", None) or []]
    return Move(kind=kind, from_shape=a.from_shape, to_shape=a.to_shape, from_region=from_region,
                to_region=a.region, result=a.result, seconds=a.seconds,
                pause_ms=float(getattr(rep, "pause_ms", 0.0) or 0.0), steps=steps)
