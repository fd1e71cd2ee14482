"""Chaos on a throwaway local stack under verified load: the harness of ``sculpt bench morph --chaos N`` and of
the state-safety tests (``tests/statesafety/``).

Why it exists: sculpt promises that no acknowledged write is ever lost and that the fleet keeps serving, not
only on the happy path but when a command or the agent is killed mid-way, when nobody runs a command for a
while, and when the next command is any verb. This module drives exactly that, from the outside: every
``sculpt`` verb runs as its own process (``python -m sculpt.cli.main VERB --spec ...`` with ``SCULPT_HOME``
set), a steady open-loop load of mixed PUT/GET goes through the stack's load balancer with every request
recorded (:class:`sculpt.demoapp.loadgen.RequestRecord`), and the checks read only what a user can see: the
load generator's answers, a read-back of every key, ``status --json``, ``history --json``, the LB's
``/__lb/stats`` and the processes on the machine.

What is checked (:meth:`Chaos.check`, :func:`check_reads`):

- **no acknowledged write lost**: every read (the load's own and a read-back of every key) returns the
  key's last acknowledged value, or the value of a later write whose answer never came (it may have been
  applied: "in doubt"). A 404 or an older value is a lost write.
- **no unacknowledged write applied late or twice**: values are unique per request, so a read that returns
  an unacknowledged write sent *before* the key's last acknowledged one means that write was applied after
  (or again, over) a later acknowledged one: ``reverted``. An unacknowledged write may appear only as the
  newest value.
- **the fleet serves within a bound**: after each step a PUT and a GET scheduled after it succeed within
  ``serving_bound_s`` (the pause lease plus recovery time; a liveness deadline, not a speed target).
- **history reads like the commands**: the kinds in ``history --json`` are the verbs that ran, one version
  per changing command (``up|morph|rollback|down``; optional when it failed, was killed or changed
  nothing), and no version stays ``pending`` once a sculpt command ran after a kill.
- after ``down``: no process whose command line names the stack's directory (demo apps, agent, LB).

Longest unavailability (:func:`longest_outage`) is measured from the load generator's own records: the longest
time in which no request completed successfully (a held request counts when its answer arrives).
"""

from __future__ import annotations

import bisect
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sculpt.demoapp.loadgen import LoadGen, LoadResult, RequestRecord

SHAPES = ("std-0.5c-512m", "std-1c-1024m")
REGIONS = ("local-a", "local-b")
LEASE_S = 3.0
RATE_RPS = 150.0
RECOVERY_S = 10.0
"""Seconds past the pause lease the fleet may take to serve again after a kill (the agent notices a dead
pause owner, runs ``sculpt.migrate.recovery``, resumes the LB; a new agent adopts the LB and instances)."""
CHANGING = frozenset({"up", "morph", "rollback", "down"})
TRACEBACK = "Traceback (most recent call last)"
MORPH_KINDS = ("in-place", "blue-green", "region")
UP_KINDS = ("unchanged", "shape", "env")
RECOVERY_VERBS = ("status", "history", "up", "morph")
BLUE_GREEN_STEPS = 8


# -- one sculpt command ---------------------------------------------------------------------------------------

@dataclass
class Ran:
    """A finished ``sculpt`` command. Times are ``time.perf_counter()`` readings (the load's clock)."""

    verb: str
    args: list[str]
    returncode: int | None  # None: it hung past its timeout (then the harness SIGKILLed it)
    stdout: str
    stderr: str
    started: float
    ended: float
    sent: str | None = None  # the signal the harness sent while it ran (SIGKILL, SIGTERM), if any
    sent_at: float | None = None
    unchanged: bool = False  # the harness changed nothing the command could act on: a version is optional

    @property
    def killed(self) -> bool:
        """Died of SIGKILL (sent by the harness or by an injected ``crash-*`` fault)."""
        return self.returncode == -signal.SIGKILL

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr

    def json(self) -> Any:
        try:
            return json.loads(self.stdout) if self.stdout.strip() else None
        except json.JSONDecodeError:
            return None

    @property
    def locked(self) -> bool:
        """Refused because another process holds the stack's lock (nothing was done)."""
        return self.returncode == 1 and "is locked by" in self.stderr

    def writes_version(self) -> str:
        """``must``, ``may`` or ``no``: whether this command leaves one user-visible version in history."""
        if self.verb not in CHANGING:
            return "no"
        if self.returncode != 0 or self.unchanged:
            return "may"
        out = self.json()
        if self.verb == "morph" and isinstance(out, dict) and out.get("result") == "unchanged":
            return "may"
        return "must"

    def line(self) -> str:
        tail = (self.stderr.strip().splitlines() or [""])[-1][:300]
        how = f"rc={self.returncode}" + (f" after {self.sent}" if self.sent else "")
        return f"`sculpt {self.verb} {' '.join(self.args)}` {how} in {self.ended - self.started:.1f}s: {tail}"


class Running:
    """A ``sculpt`` command running in the background; its stderr is read line by line (progress markers)."""

    def __init__(self, verb: str, args: list[str], proc: subprocess.Popen[str], unchanged: bool = False) -> None:
        self.verb, self.args, self.proc, self.unchanged = verb, args, proc, unchanged
        self.started = time.perf_counter()
        self.err: list[str] = []
        self.out: list[str] = []
        self.sent: str | None = None
        self.sent_at: float | None = None
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
                         threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._cond:
                into.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, marker: str, timeout_s: float = 60.0) -> bool:
        """Wait until a stderr line contains ``marker``; False if the command ended (or timed out) first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(marker in x for x in self.err):
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def send(self, sig: signal.Signals) -> bool:
        """Send ``sig`` if the command still runs; whether it was sent."""
        if self.proc.poll() is not None:
            return False
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            return False
        self.sent, self.sent_at = sig.name, time.perf_counter()
        return True

    def finish(self, timeout_s: float = 120.0) -> Ran:
        try:
            rc: int | None = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        ended = time.perf_counter()
        for t in self._threads:
            t.join(5.0)
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()
        return Ran(self.verb, self.args, rc, "".join(self.out), "".join(self.err), self.started, ended, self.sent,
                   self.sent_at, self.unchanged)


# -- the load and what its records say -----------------------------------------------------------------------

class _Http:
    """A keep-alive HTTP/1.1 client to one ``host:port`` that reconnects after an error."""

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        host, _, port = address.removeprefix("http://").rpartition(":")
        self.host, self.port, self.timeout_s = host, int(port), timeout_s
        self.c: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body); (0, b"") when the connection failed or timed out."""
        try:
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self.c.request("GET", path)
            r = self.c.getresponse()
            data = r.read()
            if r.will_close:
                self.close()
            return r.status, data
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, b""

    def close(self) -> None:
        if self.c is not None:
            self.c.close()
            self.c = None


@dataclass(frozen=True)
class Probe:
    """One read-back GET made by the harness itself (not by the load)."""

    key: str
    sent: float
    done: float
    status: int
    body: str | None


@dataclass(frozen=True)
class Violation:
    """A read that returned what it must not: ``lost`` (404 or an older acknowledged value after an
    acknowledged write), ``reverted`` (an unacknowledged write sent before the last acknowledged one),
    ``unknown`` (a value no request of this load wrote)."""

    kind: str
    key: str
    got: str | None
    want: str | None
    source: str  # "load" (a read of the load generator) or "readback"
    at: float

    def __str__(self) -> str:
        return f"{self.kind} write on {self.key} ({self.source} read): got {self.got!r}, last acknowledged {self.want!r}"


class Load:
    """The steady verified load: :class:`LoadGen` with every request recorded."""

    def __init__(self, url: str, rate_rps: float = RATE_RPS, keys: int = 200, seed: int = 0) -> None:
        self.url = url
        self.records: list[RequestRecord] = []
        self.probes: list[Probe] = []
        self.gen = LoadGen(url, rate_rps, write_ratio=0.5, keys=keys, duration_s=24 * 3600.0, seed=seed,
                           timeout_s=5.0, on_request=self.records.append)
        self.started = 0.0
        self.stopped: float | None = None
        self.result: LoadResult | None = None
        self._cursor = 0

    def start(self) -> None:
        self.started = time.perf_counter()
        self.gen.start()

    def stop(self) -> LoadResult:
        if self.result is None:
            self.result = self.gen.stop()
            self.stopped = time.perf_counter()
        return self.result

    def snapshot(self) -> list[RequestRecord]:
        return list(self.records)

    def wait_serving(self, since: float, bound_s: float) -> float | None:
        """Seconds from ``since`` until a PUT and a GET scheduled after ``since`` both succeeded (None: not
        within ``bound_s``)."""
        deadline = time.perf_counter() + bound_s
        got: set[str] = set()
        done_at = since
        i = self._cursor
        while True:
            recs = self.records
            while i < len(recs):
                r = recs[i]
                i += 1
                if r.due >= since and r.ok and 200 <= r.status < 300:
                    got.add(r.method)
                    done_at = max(done_at, r.done)
            if {"PUT", "GET"} <= got:
                return max(0.0, done_at - since)
            if time.perf_counter() > deadline:
                return None
            time.sleep(0.02)

    def keys_written(self) -> list[str]:
        return sorted({r.key for r in self.snapshot() if r.method == "PUT"})

    def read_back(self, keys: Iterable[str] | None = None, retry_for_s: float = 2.0) -> list[Probe]:
        """GET every key (default: every key the load wrote) through the LB, recording each answer. A read that
        gets no answer (connection error, 5xx) is retried every 0.25 s while ``retry_for_s`` (for the whole
        read-back) lasts; after that each key is tried once."""
        conn = _Http(self.url)
        out: list[Probe] = []
        deadline = time.perf_counter() + retry_for_s
        try:
            for key in (self.keys_written() if keys is None else keys):
                while True:
                    t0 = time.perf_counter()
                    status, data = conn.get("/kv/" + quote(key, safe=""))
                    p = Probe(key, t0, time.perf_counter(), status,
                              data.decode("utf-8", "replace") if status == 200 else None)
                    if status in (200, 404) or time.perf_counter() > deadline:
                        out.append(p)
                        break
                    time.sleep(0.25)
        finally:
            conn.close()
        self.probes.extend(out)
        return out


def _acked(r: RequestRecord) -> bool:
    return r.error is None and 200 <= r.status < 300


def check_reads(records: Iterable[RequestRecord], probes: Iterable[Probe] = ()) -> list[Violation]:
    """Every read (the load's, then the harness's read-backs) against the writes of the same key.

    A load read of key k follows the writes to k scheduled before it (one worker owns k, so they finished
    first): with ``a`` the last acknowledged of them, it may return ``a``'s value or that of a later,
    unacknowledged one (in doubt), or 404 when nothing was acknowledged. A read-back runs beside the load:
    ``a`` is the last write acknowledged before the GET was sent and any write after ``a`` scheduled before
    the GET's answer may show.
    """
    recs = list(records)
    writes: dict[str, list[RequestRecord]] = {}
    for r in recs:
        if r.method == "PUT":
            writes.setdefault(r.key, []).append(r)
    for ws in writes.values():
        ws.sort(key=lambda w: w.index)
    index = {k: [w.index for w in ws] for k, ws in writes.items()}
    out: list[Violation] = []

    def judge(key: str, got: str | None, prior: list[RequestRecord], later: list[RequestRecord], source: str,
              at: float) -> None:
        a = prior[-1] if prior else None
        if a is not None and got == a.value:
            return
        if got is not None and any(w.value == got for w in later):
            return
        if got is None and a is None:
            return
        want = a.value if a else None
        kind = "lost"
        if got is not None:
            older = next((w for w in writes.get(key, []) if w.value == got), None)
            if older is None:
                kind = "unknown"
            elif not _acked(older):
                kind = "reverted"
        out.append(Violation(kind, key, got, want, source, at))

    for r in recs:
        if r.method != "GET" or r.error is not None or r.status not in (200, 404):
            continue
        ws = writes.get(r.key, [])
        before = ws[:bisect.bisect_left(index.get(r.key, []), r.index)]
        acked = [w for w in before if _acked(w)]
        a_idx = before.index(acked[-1]) if acked else -1
        got = r.body.decode("utf-8", "replace") if r.status == 200 else None
        judge(r.key, got, acked[-1:], before[a_idx + 1:], "load", r.done)
    for p in probes:
        if p.status not in (200, 404):
            continue
        ws = writes.get(p.key, [])
        acked = [w for w in ws if _acked(w) and w.done < p.sent]
        a = acked[-1] if acked else None
        later = [w for w in ws if (a is None or w.index > a.index) and w.due < p.done]
        judge(p.key, p.body, [a] if a else [], later, "readback", p.done)
    return out


def longest_outage(records: Iterable[RequestRecord], start: float, end: float) -> float:
    """The longest stretch of ``[start, end]`` in which no request completed successfully (seconds)."""
    done = sorted(r.done for r in records if r.ok)
    points = [start] + [t for t in done if start < t < end] + [end]
    return round(max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0), 3)


def worst_gap_start(records: Iterable[RequestRecord], start: float, end: float) -> float:
    """Where the stretch :func:`longest_outage` measures begins."""
    done = sorted(r.done for r in records if r.ok)
    points = [start] + [t for t in done if start < t < end] + [end]
    return max(zip(points, points[1:], strict=False), key=lambda ab: ab[1] - ab[0], default=(start, end))[0]


def outage_after(records: Iterable[RequestRecord], at: float, until: float, *, method: str | None = None) -> float:
    """The longest time without a successful answer (to a ``method`` request, if given) that starts at or after
    ``at`` and overlaps ``[at, until]`` (a stretch that began before ``at`` counts from ``at``); 0 when ``at``
    is past ``until``."""
    if until <= at:
        return 0.0
    done = sorted(r.done for r in records if r.ok and method in (None, r.method))
    i = bisect.bisect_right(done, at)
    prev = at
    worst = 0.0
    for t in done[i:]:
        worst = max(worst, t - prev)
        if t >= until:
            break
        prev = t
    else:
        worst = max(worst, until - prev)
    return round(worst, 3)


# -- a throwaway stack ----------------------------------------------------------------------------------------

def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


class ChaosStack:
    """A local stack in ``root`` (spec ``root/sculpt.yaml``, state ``root/state``), driven only through the CLI."""

    def __init__(self, root: Path, name: str = "web", *, replicas: int = 1, routing: str = "weighted",
                 lease_s: float = LEASE_S, env: dict[str, str] | None = None,
                 spec: dict[str, Any] | None = None) -> None:
        self.root, self.name, self.lease_s = root, name, lease_s
        self.home = root / "state"
        self.spec_path = root / "sculpt.yaml"
        self.spec: dict[str, Any] = {
            "fleet": name, "shape": SHAPES[0], "region": REGIONS[0], "regions": [REGIONS[1]],
            "replicas": {"min": replicas, "max": max(3, replicas), "desired": replicas},
            "lb": {"routing": routing, "pause_lease_s": lease_s}}
        _merge(self.spec, spec or {})
        self.extra_env = dict(env or {})
        self.commands: list[Ran] = []
        self.events: list[tuple[float, str]] = []  # (perf_counter, "agent-kill" | "controller-kill")
        self.since_kill = 0  # sculpt commands run since the last controller kill
        self.address: str | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.write_spec()

    @property
    def replicas(self) -> int:
        return int(self.spec["replicas"]["desired"])

    def write_spec(self, **changes: Any) -> None:
        """Merge ``changes`` into the spec (nested dicts merge) and write ``sculpt.yaml``."""
        import yaml

        _merge(self.spec, changes)
        self.spec_path.write_text(yaml.safe_dump(self.spec, sort_keys=False))

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "SCULPT_HOME": str(self.home), **self.extra_env, **(extra or {})}
        if "SCULPT_FAULT" not in (extra or {}):
            env.pop("SCULPT_FAULT", None)
        return env

    # commands
    def start(self, verb: str, *args: str, env: dict[str, str] | None = None, unchanged: bool = False) -> Running:
        """Start ``sculpt VERB --spec SPEC ARGS`` in the background (cwd: the stack's directory, so the
        ``sculpt`` imported is the one on ``PYTHONPATH``/installed, never one in the working directory)."""
        words = verb.split()
        argv = [sys.executable, "-m", "sculpt.cli.main", *words, "--spec", str(self.spec_path), *args]
        proc = subprocess.Popen(argv, cwd=self.root, env=self.env(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return Running(verb, list(args), proc, unchanged)

    def record(self, ran: Ran) -> Ran:
        self.commands.append(ran)
        if ran.killed:
            self.events.append((ran.sent_at or ran.ended, "controller-kill"))
            self.since_kill = 0
        else:
            self.since_kill += 1
        if ran.verb in ("up", "status") and ran.returncode == 0:
            lb = (ran.json() or {}).get("lb") or {}
            self.address = lb.get("address") or self.address
        return ran

    def sculpt(self, verb: str, *args: str, env: dict[str, str] | None = None, timeout_s: float = 120.0,
               unchanged: bool = False) -> Ran:
        """Run a verb to its end and record it."""
        return self.record(self.start(verb, *args, env=env, unchanged=unchanged).finish(timeout_s))

    def signal_after(self, delay_s: float, verb: str, *args: str, sig: signal.Signals = signal.SIGKILL,
                     marker: str | None = None, env: dict[str, str] | None = None, unchanged: bool = False) -> Ran:
        """Run a verb and send it ``sig`` ``delay_s`` seconds after it started (or after a stderr line
        containing ``marker``); if it ended first, it just ran."""
        r = self.start(verb, *args, env=env, unchanged=unchanged)
        if marker is None or r.wait_for(marker):
            time.sleep(max(0.0, delay_s))
            r.send(sig)
        return self.record(r.finish())

    def up(self, *args: str, unchanged: bool = False) -> Ran:
        return self.sculpt("up", "--json", *args, unchanged=unchanged)

    def status(self) -> dict[str, Any] | None:
        r = self.sculpt("status", "--json")
        out = r.json()
        return out if isinstance(out, dict) else None

    def history(self) -> list[dict[str, Any]]:
        r = self.sculpt("history", "--json")
        out = r.json()
        return list(out) if isinstance(out, list) else []

    def down(self) -> Ran:
        return self.sculpt("down")

    @property
    def url(self) -> str:
        if self.address is None:
            self.status()
        if self.address is None:
            raise RuntimeError(f"stack {self.name} has no load balancer address (is it up?)")
        return f"http://{self.address}"

    # the agent and the LB
    def agent_pid(self) -> int | None:
        """The agent's pid: ``agents/<stack>.pid`` when it names a live agent of this state dir, else what
        ``status --json`` says."""
        import psutil

        try:
            pid = int((self.home / "agents" / f"{self.name}.pid").read_text().split()[0])
            cmd = psutil.Process(pid).cmdline()
            if any("agent" in a for a in cmd) and any(str(self.home) in a for a in cmd):
                return pid
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        st = self.status() or {}
        got = st.get("agent_pid")
        return int(got) if got else None

    def kill_agent(self, pid: int | None = None) -> int | None:
        """SIGKILL the agent; its pid, or None when none was running."""
        pid = pid or self.agent_pid()
        if pid is None:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        self.events.append((time.perf_counter(), "agent-kill"))
        return pid

    def lb_stats(self) -> dict[str, Any] | None:
        """``GET /__lb/stats`` on the LB (answered even while paused); None when it does not answer."""
        if self.address is None:
            return None
        c = _Http(self.address, 2.0)
        try:
            code, body = c.get("/__lb/stats")
        finally:
            c.close()
        return dict(json.loads(body)) if code == 200 else None

    def processes(self) -> list[dict[str, Any]]:
        """Live processes (not zombies, not this one) whose command line names the stack's directory."""
        import psutil

        me, root = os.getpid(), str(self.root)
        out = []
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            cmd = p.info["cmdline"] or []
            mine = any(a == root or f"{root}/" in a for a in cmd)
            if p.info["pid"] != me and p.info["status"] != psutil.STATUS_ZOMBIE and mine:
                out.append({"pid": p.info["pid"], "cmdline": " ".join(cmd)})
        return out

    def demo_pids(self) -> set[int]:
        return {int(p["pid"]) for p in self.processes() if "sculpt.demoapp" in p["cmdline"]}

    def teardown(self, grace_s: float = 5.0) -> list[dict[str, Any]]:
        """``sculpt down``, then the processes still left after ``grace_s`` (then SIGKILLed, so nothing leaks
        into the next test)."""
        self.down()
        deadline = time.monotonic() + grace_s
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.processes()
        for p in left:
            try:
                os.kill(int(p["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left


# -- history checks -------------------------------------------------------------------------------------------

def kinds_mismatch(commands: Iterable[Ran], versions: list[dict[str, Any]]) -> str | None:
    """None when the versions' kinds are the changing commands' verbs in order (one version per command that
    must write one, at most one for those that may), else what differs."""
    cmds = [(c.verb, w) for c in commands if (w := c.writes_version()) != "no"]
    kinds = [str(v.get("kind")) for v in versions]
    memo: dict[tuple[int, int], bool] = {}

    def ok(i: int, j: int) -> bool:
        if (i, j) in memo:
            return memo[(i, j)]
        if i == len(cmds):
            res = j == len(kinds)
        else:
            verb, w = cmds[i]
            res = (j < len(kinds) and kinds[j] == verb and ok(i + 1, j + 1)) or (w == "may" and ok(i + 1, j))
        memo[(i, j)] = res
        return res

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(cmds) + len(kinds)) + 100))
    if ok(0, 0):
        return None
    want = " ".join(f"{v}{'?' if w == 'may' else ''}" for v, w in cmds)
    return f"history kinds [{' '.join(kinds)}] do not match the commands run [{want}]"


def previous_succeeded(versions: list[dict[str, Any]]) -> int | None:
    """The succeeded user-visible version before the current (last succeeded) one: plain ``rollback``'s target."""
    ok = [int(v["version"]) for v in versions if v.get("result") == "succeeded" and v.get("kind") != "down"]
    return ok[-2] if len(ok) >= 2 else None


def applied_fleet(versions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(shape, region) of each serving slot of the last succeeded version, sorted."""
    ok = [v for v in versions if v.get("result") == "succeeded"]
    return fleet_of(ok[-1]) if ok else []


def fleet_of(version: dict[str, Any]) -> list[tuple[str, str]]:
    slots = (version.get("fleet") or {}).get("slots", [])
    return sorted((str(s["shape"]), str(s["region"])) for s in slots if int(s.get("weight", 100)) > 0)


def serving_instances(status: dict[str, Any] | None) -> list[tuple[str, str]]:
    insts = (status or {}).get("instances") or []
    return sorted((str(i["shape"]), str(i["region"])) for i in insts if int(i.get("weight") or 0) > 0)


# -- the operations and the invariants ------------------------------------------------------------------------

PROBLEM_KINDS = ("lost", "reverted", "not-serving", "history", "pending", "fleet", "rollback-target", "exit",
                 "traceback", "hung", "leftover", "harness")


@dataclass
class Figures:
    """What one chaos sequence did (``to_json`` is one row of ``sculpt bench morph --chaos``)."""

    seed: int
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    acked_writes: int = 0  # acknowledged PUT requests
    acked_keys: int = 0  # keys with an acknowledged write (each read back at the end)
    lost: int = 0  # keys whose last acknowledged write was not read back at the end
    reverted: int = 0
    bad_reads: int = 0
    in_doubt_applied: int = 0
    longest_unavailable_s: float = 0.0
    longest_unavailable_in: str | None = None  # the step in which that stretch began
    failed_by_step: dict[str, int] = field(default_factory=dict)  # "<step> <method> <status|error>": n
    after_agent_kill_s: float | None = None
    after_controller_kill_s: float | None = None
    agent_kills: int = 0
    controller_kills: int = 0
    leftover_processes: int = 0
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _other(shape: str) -> str:
    return SHAPES[1] if shape == SHAPES[0] else SHAPES[0]


class Chaos:
    """The operations of a chaos sequence on one stack under load (``up``, ``morph``, ``rollback``, kills,
    waits, recovery by a verb) and the invariants after each (:meth:`check`). Problems are collected in
    :attr:`problems` as ``"<kind>: <text>"`` (kinds: :data:`PROBLEM_KINDS`), never raised: the tests assert
    the list is empty, the bench counts them."""

    def __init__(self, stack: ChaosStack, load: Load | None = None, *, seed: int = 0,
                 serving_bound_s: float | None = None, log: Callable[[str], None] | None = None) -> None:
        self.stack = stack
        self.load = load
        self.rng = random.Random(seed)
        self.seed = seed
        self.bound_s = serving_bound_s if serving_bound_s is not None else stack.lease_s + RECOVERY_S
        self.problems: list[str] = []
        self.steps: list[str] = []
        self.step_started: list[float] = []  # perf_counter at the start of each step
        self.live_resize = False
        self.env_gen = 0
        self.log = log or (lambda _m: None)
        self._reported: set[Violation] = set()
        self._versions: list[dict[str, Any]] | None = None
        self._expect: list[tuple[str, str]] | None = None  # the serving fleet the last command must have left

    # lifecycle
    def begin(self, rate_rps: float = RATE_RPS) -> None:
        """``sculpt up`` and the load."""
        r = self.stack.up()
        self.log(r.line())
        if r.returncode != 0:
            raise RuntimeError(f"sculpt up failed: {r.line()}")
        st = r.json() or {}
        self.live_resize = any(str(i.get("enforcement", "")).startswith("cgroup") for i in st.get("instances", []))
        if self.load is None:
            self.load = Load(self.stack.url, rate_rps, seed=self.seed)
        self.load.start()
        time.sleep(0.5)

    def _step(self, name: str) -> None:
        self.steps.append(name)
        self.step_started.append(time.perf_counter())

    def step_at(self, t: float) -> str:
        """The step running at perf time ``t`` (``"up"`` before the first)."""
        i = bisect.bisect_right(self.step_started, t) - 1
        return f"{i}:{self.steps[i]}" if i >= 0 else "up"

    def problem(self, kind: str, text: str) -> None:
        assert kind in PROBLEM_KINDS, kind
        line = f"{kind}: {text}"
        self.log(f"PROBLEM {line}")
        self.problems.append(line)

    def _where(self) -> str:
        return f"after {self.steps[-1] if self.steps else 'up'}"

    def _command(self, r: Ran, *, ok: tuple[int, ...] = (0,)) -> Ran:
        """The checks every command gets: no traceback, no hang, the expected exit code (a kill is fine)."""
        self.log(r.line())
        self._versions = None
        if r.traceback:
            self.problem("traceback", r.line() + " | " + r.stderr[-800:].replace("\n", " | "))
        if r.returncode is None:
            self.problem("hung", r.line())
        elif not r.killed and not r.sent and not r.locked and r.returncode not in ok:
            self.problem("exit", r.line())
        return r

    def versions(self) -> list[dict[str, Any]]:
        if self._versions is None:
            self._versions = self.stack.history()
        return self._versions

    def current(self) -> list[tuple[str, str]]:
        """(shape, region) of each serving slot of the last succeeded version."""
        return applied_fleet(self.versions())

    # operations (each is one step of a sequence)
    def up(self, kind: str) -> Ran:
        """``sculpt up`` with the spec unchanged, with another shape, or with a changed ``app.env``."""
        self._step(f"up:{kind}")
        before = self.current()
        expect = before
        if kind == "shape":
            new = _other(str(self.stack.spec["shape"]))
            self.stack.write_spec(shape=new)
            expect = sorted((new, region) for _, region in before)
        elif kind == "env":
            self.env_gen += 1
            self.stack.write_spec(app={"env": {"CHAOS_GEN": str(self.env_gen)}})
        r = self._command(self.stack.up(unchanged=kind == "unchanged"))
        self._expect = expect if r.returncode == 0 and before else None
        return r

    def morph(self, kind: str) -> Ran:
        """``sculpt morph`` to the other shape in place / blue-green, or to the other region."""
        self._step(f"morph:{kind}")
        before = self.current()
        shape, region = before[0] if before else (SHAPES[0], REGIONS[0])
        if kind == "region":
            region = REGIONS[1] if region == REGIONS[0] else REGIONS[0]
            args = ["--region", region]
        else:
            shape = _other(shape)
            strategy = "blue-green" if kind == "blue-green" else "in-place" if self.live_resize else "auto"
            args = ["--shape", shape, "--strategy", strategy]
        r = self._command(self.stack.sculpt("morph", "--json", *args, "--timeout", "20", "--step-timeout", "20"))
        self._expect = [(shape, region)] * len(before) if r.returncode == 0 else None
        return r

    def rollback(self, pick: int | None) -> Ran:
        """``sculpt rollback`` (``pick`` None: it must go to the last succeeded user-visible version before the
        current one) or ``--to`` the ``pick``-th (mod their number) succeeded version."""
        self._step(f"rollback:{'prev' if pick is None else pick}")
        versions = self.versions()
        ok = [v for v in versions if v.get("result") == "succeeded" and v.get("kind") != "down"]
        want: int | None
        if pick is None:
            want = previous_succeeded(versions)
            r = self._command(self.stack.sculpt("rollback", "--json"), ok=(0,) if want else (1,))
        else:
            want = int((ok[pick % len(ok)] if ok else {"version": 1})["version"])
            r = self._command(self.stack.sculpt("rollback", "--json", "--to", str(want)))
        self._expect = None
        out = r.json()
        if r.returncode == 0 and isinstance(out, dict):
            got = out.get("rolled_back_to")
            if want is not None and got != want:
                self.problem("rollback-target", f"`sculpt rollback{'' if pick is None else f' --to {want}'}` went "
                             f"to version {got}, not {want}" + (" (the last succeeded user-visible version "
                                                                "before the current one)" if pick is None else ""))
            tv = next((v for v in versions if v.get("version") == got), None)
            self._expect = fleet_of(tv) if tv else None
        return r

    def kill_controller(self, verb: str, at: int, delay_s: float, via_fault: bool = False) -> Ran:
        """kill -9 of a running command: a blue/green ``morph`` with ``--fault crash-at:<at>`` (steps 1..8), or
        an ``up`` replacing instances (changed env) / a ``rollback``, either with ``SCULPT_FAULT=crash-at:<at>``
        (``via_fault``: they hand state over through the same orchestrator) or killed ``delay_s`` seconds after
        it started."""
        how = f"crash-at:{at}" if verb == "morph" or via_fault else f"{delay_s:.2f}s"
        self._step(f"kill-controller:{verb}:{how}")
        before = self.current()
        self._expect = None
        fault = {"SCULPT_FAULT": f"crash-at:{at}"} if via_fault else None
        if verb == "morph":
            shape = _other(before[0][0] if before else SHAPES[0])
            r = self.stack.sculpt("morph", "--json", "--shape", shape, "--strategy", "blue-green",
                                  "--fault", f"crash-at:{at}")
        else:
            if verb == "up":
                self.env_gen += 1
                self.stack.write_spec(app={"env": {"CHAOS_GEN": str(self.env_gen)}})
            if via_fault:
                r = self.stack.sculpt(verb, "--json", env=fault)
            else:
                r = self.stack.signal_after(delay_s, verb, "--json")
        return self._command(r, ok=(0, 1))

    def kill_agent(self, during_morph: bool, delay_s: float) -> Ran | None:
        """kill -9 of the agent, idle or ``delay_s`` seconds into a blue/green morph."""
        self._step(f"kill-agent:{'morph' if during_morph else 'idle'}:{round(delay_s, 2)}")
        before = self.current()
        pid = self.stack.agent_pid()
        if pid is None:
            self.problem("not-serving", f"{self._where()}: no agent was running to kill")
        if not during_morph:
            time.sleep(delay_s)
            self.stack.kill_agent(pid)
            return None
        self._expect = None
        shape = _other(before[0][0] if before else SHAPES[0])
        run = self.stack.start("morph", "--json", "--shape", shape, "--strategy", "blue-green",
                               "--timeout", "20", "--step-timeout", "20")
        time.sleep(delay_s)
        self.stack.kill_agent(pid)
        return self._command(self.stack.record(run.finish()), ok=(0, 1))

    def wait_past_lease(self, extra_s: float = 0.5) -> None:
        """Run nothing for longer than the pause lease (plus a second and ``extra_s``)."""
        self._step("wait")
        time.sleep(self.stack.lease_s + 1.0 + extra_s)

    def recover(self, verb: str) -> Ran:
        """The next command after trouble, any verb: ``status``, ``history``, ``up`` or ``morph``."""
        if verb == "up":
            r = self.up("unchanged")
        elif verb == "morph":
            r = self.morph("blue-green")
        else:
            self._step(f"recover:{verb}")
            r = self._command(self.stack.sculpt(verb, "--json"))
            return r
        self.steps[-1] = f"recover:{self.steps[-1]}"
        return r

    def random_step(self) -> None:
        """One operation drawn from :attr:`rng` (the bench's sequences)."""
        rng = self.rng
        op = rng.choices(["up", "morph", "rollback", "kill-controller", "kill-agent", "wait", "recover"],
                         weights=[2, 3, 1, 3, 2, 1, 2])[0]
        if op == "up":
            self.up(rng.choice(UP_KINDS))
        elif op == "morph":
            self.morph(rng.choice(MORPH_KINDS))
        elif op == "rollback":
            self.rollback(None if rng.random() < 0.5 else rng.randrange(8))
        elif op == "kill-controller":
            self.kill_controller(rng.choice(["morph", "morph", "up", "rollback"]),
                                 rng.randint(1, BLUE_GREEN_STEPS), rng.uniform(0.3, 1.5), rng.random() < 0.5)
        elif op == "kill-agent":
            self.kill_agent(rng.random() < 0.5, rng.uniform(0.0, 1.5))
        elif op == "wait":
            self.wait_past_lease(rng.uniform(0.0, 1.0))
        else:
            self.recover(rng.choice(RECOVERY_VERBS))

    # invariants
    def check(self) -> list[str]:
        """The invariants after a step; returns the new problems (also appended to :attr:`problems`)."""
        n = len(self.problems)
        assert self.load is not None
        where = self._where()
        if self.load.wait_serving(time.perf_counter(), self.bound_s) is None:
            self.problem("not-serving", f"{where}: no PUT and GET succeeded within {self.bound_s:.0f}s")
        self.load.read_back()
        self._report(check_reads(self.load.snapshot(), self.load.probes), where)
        ran_since = self.stack.since_kill
        self._versions = None
        versions = self.versions()
        why = kinds_mismatch(self.stack.commands, versions)
        if why:
            self.problem("history", f"{where}: {why}")
        pending = [v["version"] for v in versions if v.get("result") == "pending"]
        if ran_since >= 1 and pending:
            self.problem("pending", f"{where}: version(s) {pending} still pending after a sculpt command ran")
        if self._expect is not None:
            got = serving_instances(self.stack.status())
            if got != sorted(self._expect):
                self.problem("fleet", f"{where}: status serves {got}, expected {sorted(self._expect)}")
            elif applied_fleet(versions) != got:
                self.problem("fleet", f"{where}: status serves {got}, but history's last succeeded version has "
                             f"{applied_fleet(versions)}")
            self._expect = None
        return self.problems[n:]

    def _report(self, bad: list[Violation], where: str) -> None:
        new = [v for v in bad if v not in self._reported]
        self._reported.update(new)
        for kind in ("lost", "reverted", "unknown"):
            mine = [v for v in new if v.kind == kind]
            if mine:
                self.problem("reverted" if kind == "reverted" else "lost",
                             f"{where}: {len(mine)} read(s) on {len({v.key for v in mine})} key(s), e.g. {mine[0]}")

    def finish(self) -> Figures:
        """Stop the load, read every key back, ``sculpt down``, check no process is left; the figures."""
        assert self.load is not None
        load = self.load
        load.wait_serving(time.perf_counter(), self.bound_s)
        res = load.stop()
        end = load.stopped or time.perf_counter()
        final = load.read_back(retry_for_s=self.bound_s)
        recs = load.snapshot()
        bad = check_reads(recs, load.probes)
        self._report(bad, "at the end")
        lost_keys = {v.key for v in check_reads(recs, final) if v.source == "readback"}
        left = self.stack.teardown()
        if left:
            self.problem("leftover", f"after `sculpt down` {len(left)} process(es) were left: "
                         f"{[(x['pid'], x['cmdline'][:160]) for x in left[:3]]}")
        why = kinds_mismatch(self.stack.commands, self.stack.history())
        if why:
            self.problem("history", f"at the end: {why}")
        f = Figures(seed=self.seed, steps=list(self.steps), problems=list(self.problems))
        f.requests, f.failed, f.acked_keys = res.requests, res.failed, len(res.acked_writes)
        f.acked_writes = sum(1 for r in recs if r.method == "PUT" and _acked(r))
        f.lost = len(lost_keys)
        f.reverted = sum(1 for v in bad if v.kind == "reverted")
        f.bad_reads = len(bad)
        acked_vals = {r.value for r in recs if r.method == "PUT" and _acked(r)}
        f.in_doubt_applied = sum(1 for p in final if p.body is not None and p.body not in acked_vals)
        f.longest_unavailable_s = longest_outage(recs, load.started, end)
        f.longest_unavailable_in = self.step_at(worst_gap_start(recs, load.started, end))
        f.failed_by_step = dict(Counter(f"{self.step_at(r.due)} {r.method} {r.status or r.error}"
                                        for r in recs if not r.ok))
        ev = sorted(self.stack.events)
        for kind, attr in (("agent-kill", "after_agent_kill_s"), ("controller-kill", "after_controller_kill_s")):
            outs = [outage_after(recs, at, min(next((t for t, _ in ev[i + 1:] if t > at), end), end))
                    for i, (at, k) in enumerate(ev) if k == kind and at < end]
            setattr(f, attr, max(outs) if outs else None)
        f.agent_kills = sum(1 for _, k in ev if k == "agent-kill")
        f.controller_kills = sum(1 for _, k in ev if k == "controller-kill")
        f.leftover_processes = len(left)
        f.wall_s = round(time.perf_counter() - load.started, 2)
        return f


def run_sequence(seed: int, steps: int = 5, *, rate_rps: float = RATE_RPS, lease_s: float = LEASE_S,
                 log: Callable[[str], None] | None = None) -> Figures:
    """One chaos sequence on a throwaway stack: ``up``, load, ``steps`` random operations with the invariants
    after each, then the final read-back and ``down``."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sculpt-chaos-") as tmp:
        stack = ChaosStack(Path(tmp), "chaos", lease_s=lease_s)
        chaos = Chaos(stack, seed=seed, log=log)
        try:
            chaos.begin(rate_rps)
            for _ in range(steps):
                chaos.random_step()
                chaos.check()
        except Exception as e:  # noqa: BLE001 - a harness error is a finding of the sequence, not a crash
            chaos.problem("harness", f"{type(e).__name__}: {e}")
        if chaos.load is None:  # `up` failed: nothing ran
            stack.teardown()
            return Figures(seed=seed, steps=chaos.steps, problems=chaos.problems)
        return chaos.finish()


def summarize(rows: list[Figures]) -> dict[str, Any]:
    """The totals of ``sculpt bench morph --chaos``."""
    def worst(attr: str) -> float | None:
        vals = [float(getattr(r, attr)) for r in rows if getattr(r, attr) is not None]
        return max(vals) if vals else None

    problems = Counter(p.split(":", 1)[0] for r in rows for p in r.problems)
    return {
        "sequences": len(rows), "steps": sum(len(r.steps) for r in rows),
        "acked_writes": sum(r.acked_writes for r in rows), "acked_keys": sum(r.acked_keys for r in rows),
        "lost": sum(r.lost for r in rows),
        "reverted": sum(r.reverted for r in rows), "bad_reads": sum(r.bad_reads for r in rows),
        "requests": sum(r.requests for r in rows), "failed": sum(r.failed for r in rows),
        "longest_unavailable_s": worst("longest_unavailable_s"),
        "longest_unavailable_after_agent_kill_s": worst("after_agent_kill_s"),
        "longest_unavailable_after_controller_kill_s": worst("after_controller_kill_s"),
        "agent_kills": sum(r.agent_kills for r in rows), "controller_kills": sum(r.controller_kills for r in rows),
        "sequences_with_problems": sum(1 for r in rows if r.problems), "problems": dict(problems),
        "leftover_processes": sum(r.leftover_processes for r in rows),
    }
