"""The state-safety harness for tests: a throwaway local stack driven only through the ``sculpt`` CLI, a
steady verified load through its LB, and end-of-test checks.

The machinery lives in the product module :mod:`sculpt.cli.chaos` (``sculpt bench morph --chaos`` runs the
same code); this module adds what the tests need on top: a :class:`Live` stack with its load, a
:class:`Verdict` (every acknowledged write read back, no unacknowledged one applied late or twice, the fleet
serving within a bound) and small readers of ``status --json`` / ``history --json``.

Everything is real: every verb is ``python -m sculpt.cli.main VERB --spec <tmp>/sculpt.yaml`` with
``SCULPT_HOME=<tmp>/state`` (cwd ``<tmp>``, so the ``sculpt`` under test is the installed one, or the one on
``PYTHONPATH``), the agent, LB and demo apps are real processes, kills are real signals.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from sculpt.cli.chaos import (
    LEASE_S,
    RATE_RPS,
    RECOVERY_S,
    SHAPES,
    ChaosStack,
    Load,
    Probe,
    Ran,
    Violation,
    check_reads,
    longest_outage,
    serving_instances,
)
from sculpt.demoapp.loadgen import RequestRecord

BOUND_S = LEASE_S + RECOVERY_S
"""How long the fleet may take to serve again after a step: the pause lease plus the seconds recovery takes
(a liveness deadline: the checks wait *up to* it, they never assert how fast)."""

__all__ = ["BOUND_S", "LEASE_S", "SHAPES", "Live", "Verdict", "kinds", "pending", "serving_instances"]


@dataclass
class Verdict:
    """What the load saw, once the stack has settled and every key was read back."""

    acked: int
    requests: int
    failed: int
    serving: bool
    lost_keys: list[str]
    bad: list[Violation]
    outage_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.serving and not self.lost_keys and not self.bad

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for v in self.bad:
            kinds[v.kind] = kinds.get(v.kind, 0) + 1
        return (f"{len(self.lost_keys)} of {self.acked} acknowledged keys lost at the end; bad reads {kinds or 0}"
                + (f", e.g. {self.bad[0]}" if self.bad else "")
                + f"; {self.failed} of {self.requests} requests failed; longest unavailability {self.outage_s}s"
                + ("" if self.serving else f"; NOT serving within {BOUND_S:.0f}s")
                + "".join(f"; {n}" for n in self.notes))


class Live:
    """A stack that is up, with the steady verified load running through its LB."""

    def __init__(self, stack: ChaosStack, *, rate_rps: float = RATE_RPS, seed: int = 0, warm_s: float = 0.7) -> None:
        self.stack = stack
        self.up = stack.up()
        assert self.up.returncode == 0, self.up.line()
        self.version = int((self.up.json() or {}).get("version") or 0)
        self.load = Load(stack.url, rate_rps, seed=seed)
        self.load.start()
        time.sleep(warm_s)  # acknowledged writes before anything happens
        self.verdict_: Verdict | None = None

    # commands
    def sculpt(self, verb: str, *args: str, **kw: Any) -> Ran:
        return self.stack.sculpt(verb, *args, **kw)

    def morph(self, *args: str, **kw: Any) -> Ran:
        return self.stack.sculpt("morph", "--json", *args, **kw)

    def history(self) -> list[dict[str, Any]]:
        return self.stack.history()

    def status(self) -> dict[str, Any] | None:
        return self.stack.status()

    def records_between(self, start: float, end: float) -> list[RequestRecord]:
        return [r for r in self.load.snapshot() if start <= r.due < end]

    def wait_until(self, t: float) -> None:
        time.sleep(max(0.0, t - time.perf_counter()))

    def wait_answered(self, timeout_s: float) -> bool:
        """Wait until every request dispatched so far has its record (an answer, an error or a timeout);
        whether they all had within ``timeout_s``."""
        k = self.load.gen.sent
        deadline = time.perf_counter() + timeout_s
        while sum(1 for r in self.load.snapshot() if r.index < k) < k:
            if time.perf_counter() > deadline:
                return False
            time.sleep(0.1)
        return True

    # the end
    def verdict(self) -> Verdict:
        """Wait (up to the bound) for the fleet to serve, stop the load, read every key back, judge every read."""
        if self.verdict_ is not None:
            return self.verdict_
        serving = self.load.wait_serving(time.perf_counter(), BOUND_S) is not None
        res = self.load.stop()
        final: list[Probe] = self.load.read_back(retry_for_s=BOUND_S if serving else 2.0)
        recs = self.load.snapshot()
        bad = check_reads(recs, self.load.probes)
        lost = sorted({v.key for v in check_reads(recs, final) if v.source == "readback"})
        end = self.load.stopped or time.perf_counter()
        self.verdict_ = Verdict(len(res.acked_writes), res.requests, res.failed, serving, lost, bad,
                                longest_outage(recs, self.load.started, end))
        return self.verdict_

    def assert_kept(self, what: str = "") -> Verdict:
        v = self.verdict()
        assert v.ok, f"{what}: {v.summary()}" if what else v.summary()
        return v

    def close(self) -> list[dict[str, Any]]:
        """Stop the load (if still running) and tear the stack down; the processes that were left."""
        self.load.stop()
        return self.stack.teardown()


def kinds(versions: list[dict[str, Any]]) -> list[str]:
    return [str(v.get("kind")) for v in versions]


def pending(versions: list[dict[str, Any]]) -> list[int]:
    return [int(v["version"]) for v in versions if v.get("result") == "pending"]


def no_traceback(r: Ran) -> None:
    assert not r.traceback, f"{r.line()}\n{r.stderr[-3000:]}"


def other(shape: str) -> str:
    return SHAPES[1] if shape == SHAPES[0] else SHAPES[0]


SIGTERM = signal.SIGTERM
SIGKILL = signal.SIGKILL
