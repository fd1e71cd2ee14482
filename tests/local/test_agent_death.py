"""Agent death is not an outage (issue 11, case 6), and the pause lease (case 5) — real processes, sockets.

* ``kill -9`` of the agent under verified load: nothing lost, nothing fails, the LB process restarts the
  agent, the new agent adopts the same LB process (same port) and the same instance pids, and ``status``
  says so while it happens;
* ``kill -9`` of the LB process: the agent restarts it on the same port with the same backends;
* agent and LB both dead: the next agent adopts the live instances, restarts a dead one from its data dir
  and starts a new LB on the same port;
* ``down`` leaves no process of the stack even with the agent killed first, or hung;
* through the CLI: ``sculpt status`` reports the running instances with the agent dead, ``sculpt down``
  stops everything;
* the pause lease: a controller that pauses and dies, or outlives its lease, makes the agent run the
  recovery (here a stand-in command that records that it ran and resumes the LB).

The figures these tests print (``-s``): the longest gap between two successful requests across the kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sculpt.demoapp.loadgen import LoadGen, RequestRecord, verify
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import parse_spec
from sculpt.providers.local.client import AgentClient, ensure_agent
from sculpt.providers.local.procs import AgentPaths, stack_processes
from sculpt.providers.local.provider import LocalProvider
from tests.helpers import gone, http, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def fleet(replicas: int = 1, **extra: Any) -> Fleet:
    data = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a",
            "replicas": {"min": 0, "max": 3, "desired": replicas}, **extra}
    return Fleet.from_spec(parse_spec(data))


class Stack:
    """A stack under test plus every pid it ever ran (agents, LB processes, instances)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.paths = AgentPaths(state.resolve(), "web")
        self.pids: set[int] = set()

    def start(self) -> AgentClient:
        c = ensure_agent(self.state, "web")
        self.pids.add(c.ping()["pid"])
        return c

    def track(self, st: dict[str, Any]) -> dict[str, Any]:
        self.pids.update(i["pid"] for i in st["instances"] if i["pid"])
        self.pids.add(st["agent_pid"])
        if st.get("lb_pid"):
            self.pids.add(st["lb_pid"])
        return st

    def leftovers(self) -> list[int]:
        return sorted({p for p in self.pids if not gone(p)} |
                      {r["pid"] for r in stack_processes(self.paths.state_dir, "web")})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path / "state")
    yield s
    try:
        AgentClient(s.state, "web").shutdown()
    finally:
        left = s.leftovers()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert left == [], f"processes survived the shutdown: {left}"


class Gaps:
    """The longest time between two successful answers while load runs (what a user sees as an outage)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: list[float] = []

    def record(self, r: RequestRecord) -> None:
        if r.error is None and 200 <= r.status < 300 or r.status == 404:
            with self.lock:
                self.ok.append(r.done)

    def longest_s(self, after: float = 0.0) -> float:
        with self.lock:
            t = sorted(x for x in self.ok if x >= after)
        return max((b - a for a, b in zip(t, t[1:], strict=False)), default=0.0)


def _serving_same(live: dict[str, Any], before: dict[str, Any]) -> bool:
    return ([(i["id"], i["pid"]) for i in live["instances"]] == [(i["id"], i["pid"]) for i in before["instances"]]
            and (live["lb"], live["lb_pid"]) == (before["lb"], before["lb_pid"]))


def test_kill_9_of_the_agent_under_load_loses_nothing_and_a_new_agent_adopts_everything(stack: Stack) -> None:
    c = stack.start()
    st = stack.track(c.apply(fleet(2, lb={"routing": "hash"}), timeout_s=30))
    url = f"http://{st['lb']['address']}"
    gaps = Gaps()
    gen = LoadGen(url, rate_rps=150, write_ratio=0.5, keys=300, duration_s=120, seed=6, on_request=gaps.record)
    gen.start()
    wait_until(lambda: gen.sent > 150, what="load to flow")
    old_agent = st["agent_pid"]
    killed_at = time.perf_counter()
    os.kill(old_agent, signal.SIGKILL)
    # `status` while the agent is being replaced: it waits for the agent the LB process restarts (or starts
    # one), and that agent reports what it adopted — never "not running" while instances serve
    live = LocalProvider(stack.state, "web").status()
    assert live is not None
    stack.track(live)
    assert live["agent_pid"] != old_agent and gone(old_agent)
    assert _serving_same(live, st), (live, st)
    assert all(i["adopted"] and i["healthy"] for i in live["instances"])
    assert live["fleet"] == {"name": "web", "slots": [s.model_dump(mode="json") for s in fleet(2).slots]}
    sent = gen.sent
    wait_until(lambda: gen.sent > sent + 150, what="load to flow with the new agent")
    res = gen.stop()
    lost = verify(url, res)
    worst = gaps.longest_s(after=killed_at - 1.0)
    print(f"\nagent kill -9 under {gen.rate_rps:g} req/s: {res.requests} requests, {len(res.acked_writes)} acked "
          f"keys, {res.failed} failed, {lost} lost, longest gap between successes {worst * 1000:.1f} ms")
    assert (res.failed, res.errors, lost) == (0, {}, 0), res.codes
    assert res.acked_writes and res.stale_reads == 0
    # the new agent drives the adopted LB: a change goes through
    after = stack.track(c.set_weights({"web-1": 0}))
    assert c.stats()["backends"]["web-1"]["weight"] == 0 and after["agent_pid"] == live["agent_pid"]
    assert c.shutdown() is True
    assert stack.leftovers() == []


def test_kill_9_of_the_lb_process_makes_the_agent_restart_it_on_the_same_port(stack: Stack) -> None:
    c = stack.start()
    st = stack.track(c.apply(fleet(1), timeout_s=30))
    lb = {**st["lb"], "pid": st["lb_pid"]}
    url = f"http://{lb['address']}"
    assert http("PUT", f"{url}/kv/k", b"kept")[0] == 200
    gaps = Gaps()
    gen = LoadGen(url, rate_rps=150, write_ratio=0.5, keys=300, duration_s=120, seed=7, on_request=gaps.record)
    gen.start()
    wait_until(lambda: gen.sent > 150, what="load to flow")
    killed_at = time.perf_counter()
    os.kill(lb["pid"], signal.SIGKILL)
    again = wait_until(lambda: (s := c.status())["lb_pid"] not in (None, lb["pid"]) and s, what="a new LB process")
    stack.track(again)
    assert again["lb"]["address"] == lb["address"] and gone(lb["pid"])
    assert [i["pid"] for i in again["instances"]] == [i["pid"] for i in st["instances"]]
    sent = gen.sent
    wait_until(lambda: gen.sent > sent + 150, what="load to flow through the new LB process")
    res = gen.stop()
    lost = verify(url, res)  # a write cut off with the LB was never acknowledged: nothing acknowledged is lost
    print(f"\nLB process kill -9 under {gen.rate_rps:g} req/s: {res.requests} requests, {res.failed} failed "
          f"({res.errors}), {lost} lost, longest gap between successes {gaps.longest_s(killed_at - 1.0) * 1000:.1f} ms")
    assert lost == 0 and res.stale_reads == 0
    assert http("GET", f"{url}/kv/k") == (200, b"kept")
    assert set(c.stats()["backends"]) == {"web-0"}


def test_with_agent_and_lb_dead_the_next_agent_adopts_the_instances_and_restarts_a_dead_one(stack: Stack) -> None:
    c = stack.start()
    st = stack.track(c.apply(fleet(2), timeout_s=30))
    a, b = st["instances"]
    assert http("PUT", f"http://{b['address']}/kv/k", b"on-b")[0] == 200
    for pid in (st["agent_pid"], st["lb_pid"]):  # nothing left to restart the other
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: gone(st["agent_pid"]) and gone(st["lb_pid"]), what="agent and LB to die")
    os.kill(b["pid"], signal.SIGKILL)
    wait_until(lambda: gone(b["pid"]), what="instance web-1 to die")
    assert http("GET", f"http://{a['address']}/healthz")[0] == 200  # web-0 serves on, unsupervised
    live = LocalProvider(stack.state, "web").status()  # status starts the agent; it adopts
    assert live is not None
    stack.track(live)
    assert live["lb"]["address"] == st["lb"]["address"] and live["lb_pid"] != st["lb_pid"]
    ia, ib = live["instances"]
    assert (ia["pid"], ia["adopted"], ia["restarts"]) == (a["pid"], True, 0)
    assert (ib["adopted"], ib["restarts"], ib["data_dir"]) == (False, 1, b["data_dir"]) and ib["pid"] != b["pid"]
    assert wait_until(lambda: http("GET", f"http://{ib['address']}/kv/k") == (200, b"on-b"), what="web-1 back")


def test_down_stops_everything_when_the_agent_was_killed_first(stack: Stack) -> None:
    c = stack.start()
    st = stack.track(c.apply(fleet(2), timeout_s=30))
    os.kill(st["agent_pid"], signal.SIGKILL)
    assert c.shutdown() is True  # at once: the LB process may be restarting the agent right now
    assert stack.leftovers() == []
    assert not stack.paths.down.exists() and not stack.paths.lb_sock.exists()
    if st["enforcement"].startswith("cgroup"):
        from sculpt.providers.local.cgroups import group_dir_name

        name = group_dir_name("web", stack.paths.state_dir)
        assert list(Path("/sys/fs/cgroup").glob(f"**/sculpt/{name}")) == []
    assert LocalProvider(stack.state, "web").status() is None
    assert c.shutdown() is False


def test_down_stops_a_hung_agent_and_everything_it_owns(stack: Stack) -> None:
    c = stack.start()
    st = stack.track(c.apply(fleet(1), timeout_s=30))
    os.kill(st["agent_pid"], signal.SIGSTOP)  # alive, answering nothing
    try:
        live = LocalProvider(stack.state, "web").status()  # from the records, and says so
        assert live is not None and live["agent_pid"] is None and "not answering" in live["notes"][0]
        assert [(i["id"], i["pid"], i["healthy"]) for i in live["instances"]] == [("web-0", st["instances"][0]["pid"],
                                                                                  True)]
        assert (live["lb"], live["lb_pid"]) == (st["lb"], st["lb_pid"])
        assert c.shutdown(timeout_s=5) is True
    finally:
        if not gone(st["agent_pid"]):
            os.kill(st["agent_pid"], signal.SIGCONT)
    assert stack.leftovers() == []


def test_down_says_in_one_line_what_it_could_not_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that survives SIGTERM and (here, by a signal that never arrives) SIGKILL: ``down`` stops all
    else and fails with the pid to kill."""
    from sculpt.domain.errors import ProviderError
    from sculpt.providers.local import procs, teardown

    paths = AgentPaths((tmp_path / "state").resolve(), "web")
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
                                start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
        rec = {"uid": "web-0", "pid": stubborn.pid, "create_time": procs.create_time(stubborn.pid)}
        procs.save_state(paths, {"lb": None, "fleet": None, "instances": [rec]})
        real = procs.signal_verified

        def no_kill(pid: int, created: float | None, sig: int, *, group: bool = False) -> bool:
            return False if sig == signal.SIGKILL and pid == stubborn.pid else real(pid, created, sig, group=group)

        monkeypatch.setattr(procs, "signal_verified", no_kill)
        with pytest.raises(ProviderError) as ei:
            teardown.stop_stack(paths)
        assert str(ei.value) == (f"could not stop instance web-0 (pid {stubborn.pid}) of stack 'web'. To fix: "
                                 f"kill -9 {stubborn.pid}, then run `sculpt down` again.")
        assert not paths.down.exists()
    finally:
        stubborn.kill()
        stubborn.wait()
        assert stubborn.stdout is not None
        stubborn.stdout.close()


def _sculpt(home: Path, spec: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCULPT_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "sculpt.cli.main", *args, "--spec", str(spec)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(spec.parent))


def test_cli_status_and_down_tell_the_truth_with_the_agent_dead(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stack = Stack(home)
    spec = tmp_path / "sculpt.yaml"
    spec.write_text("fleet: web\nprovider: local\nshape: std-0.5c-512m\nregion: local-a\n"
                    "replicas: {min: 0, max: 2, desired: 1}\n")
    try:
        up = _sculpt(home, spec, "up")
        assert up.returncode == 0, up.stderr
        before = json.loads(_sculpt(home, spec, "status", "--json").stdout)
        stack.track(before)
        os.kill(before["agent_pid"], signal.SIGKILL)
        got = _sculpt(home, spec, "status", "--json")
        assert got.returncode == 0, got.stderr
        during = json.loads(got.stdout)
        stack.track(during)
        assert during["agent_pid"] != before["agent_pid"]
        assert [(i["id"], i["pid"], i["healthy"]) for i in during["instances"]] == \
               [(i["id"], i["pid"], True) for i in before["instances"]]
        assert during["lb"]["address"] == before["lb"]["address"]
        os.kill(during["agent_pid"], signal.SIGKILL)
        down = _sculpt(home, spec, "down")
        assert down.returncode == 0, down.stderr
        assert "web: down" in down.stdout
        assert stack.leftovers() == []
    finally:
        AgentClient(home, "web").shutdown()
        for pid in stack.leftovers():
            os.kill(pid, signal.SIGKILL)


# -- the pause lease ----------------------------------------------------------------------------------------

STAND_IN_RECOVERY = """\
# a stand-in for `python -m sculpt.migrate.recovery` (tests only): record what it saw, resume the LB
# (only from its N-th run on, N being the optional 4th argument: a recovery that fails is retried)
import json, os, sys, time
from sculpt.providers.local.client import AgentClient
state, stack, out = sys.argv[1:4]
resume_on = int(sys.argv[4]) if len(sys.argv) > 4 else 1
c = AgentClient(state, stack)
st = c.stats()
t0 = time.time()
n = len(open(out).read().splitlines()) + 1 if os.path.exists(out) else 1
time.sleep(0.2)
with open(out, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:4], "paused": st["paused"],
                        "paused_by": st["paused_by"], "run": n, "start": t0, "end": time.time()}) + "\\n")
if n >= resume_on:
    c.resume()
"""

PAUSER = """\
import os, sys, time
from sculpt.providers.local.client import AgentClient
state, stack, lease, mode = sys.argv[1:5]
AgentClient(state, stack).pause(auto_resume_s=float(lease), owner_pid=os.getpid())
print("paused", flush=True)
if mode == "die":
    os._exit(0)
time.sleep(300)
"""


class InProcessAgent:
    """An agent in a thread of the test (so its recovery command can be the stand-in), with real instances
    and a real LB process."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        from sculpt.providers.local.agent import Agent

        self.state = tmp / "state"
        self.ran = tmp / "recovery-ran.jsonl"
        script = tmp / "stand_in_recovery.py"
        script.write_text(STAND_IN_RECOVERY)
        self.agent = Agent(self.state, "web", recovery_argv=[sys.executable, str(script), str(self.state), "web",
                                                             str(self.ran), *extra])
        self.thread = threading.Thread(target=self.agent.run, kwargs={"install_signals": False}, daemon=True)
        self.thread.start()
        self.client = AgentClient(self.state, "web")
        self.pausers: list[subprocess.Popen[str]] = []
        wait_until(self.client.running, what="the in-process agent")

    def pauser(self, lease_s: float, mode: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-c", PAUSER, str(self.state), "web", str(lease_s), mode],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.pausers.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "paused"
        return p

    def runs(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(x) for x in self.ran.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def close(self) -> None:
        for p in self.pausers:
            if p.poll() is None:
                p.kill()
            p.wait()
            assert p.stdout is not None
            p.stdout.close()
        self.agent.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def inproc(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[InProcessAgent]:
    a = InProcessAgent(tmp_path, *getattr(request, "param", ()))
    try:
        yield a
    finally:
        a.close()


def _held_request(url: str) -> tuple[list[tuple[int, bytes]], threading.Thread]:
    got: list[tuple[int, bytes]] = []
    t = threading.Thread(target=lambda: got.append(http("PUT", url, b"held")), daemon=True)
    t.start()
    return got, t


def test_a_controller_that_pauses_and_dies_makes_the_agent_run_the_recovery(inproc: InProcessAgent) -> None:
    c = inproc.client
    st = c.apply(fleet(1, lb={"pause_max_ms": 60_000}), timeout_s=30)
    url = f"http://{st['lb']['address']}/kv/k"
    owner = inproc.pauser(lease_s=30, mode="die")
    assert owner.wait(10) == 0
    paused = c.stats()
    got, t = _held_request(url)
    runs = wait_until(inproc.runs, what="the recovery command to run")
    t.join(30)
    assert got == [(200, b'{"seq":1}')]  # held, then released by the recovery's resume (not by the clock)
    assert len(runs) == 1 and runs[0]["argv"] == [str(inproc.state), "web", str(inproc.ran)]
    assert runs[0]["paused"] is True and runs[0]["paused_by"]["pid"] == owner.pid
    assert runs[0]["paused_by"]["lease_s"] == 30
    assert paused["paused"] and paused["paused_by"]["pid"] == owner.pid
    assert c.status()["paused_by"] is None and c.stats()["paused_by"] is None


def test_a_controller_past_its_lease_is_killed_and_the_recovery_runs(inproc: InProcessAgent) -> None:
    c = inproc.client
    st = c.apply(fleet(1, lb={"pause_max_ms": 60_000}), timeout_s=30)
    owner = inproc.pauser(lease_s=1, mode="live")
    try:
        shown = c.status()["paused_by"]
        assert shown["pid"] == owner.pid and shown["lease_s"] == 1 and shown["since"] <= time.time()
        got, t = _held_request(f"http://{st['lb']['address']}/kv/k")
        assert owner.wait(30) == -signal.SIGKILL  # the agent killed it once the lease was over
        runs = wait_until(inproc.runs, what="the recovery command to run")
        t.join(30)
        # past the lease the LB was still paused (its own auto-resume is a last resort far beyond it): only
        # the recovery released the held write
        assert runs[0]["paused"] is True and runs[0]["paused_by"]["pid"] == owner.pid
        assert got == [(200, b'{"seq":1}')]
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.wait()


def test_a_pause_without_owner_or_lease_runs_no_recovery(inproc: InProcessAgent) -> None:
    c = inproc.client
    st = c.apply(fleet(1, lb={"pause_max_ms": 300}), timeout_s=30)
    c.pause()
    code, _ = http("GET", f"http://{st['lb']['address']}/healthz")
    assert code == 503  # held past pause_max_ms, as ever
    shown = c.status()["paused_by"]
    assert c.stats()["paused"] is True and shown == {"pid": None, "since": shown["since"], "lease_s": None}
    c.resume()
    assert inproc.runs() == []


@pytest.mark.parametrize("inproc", [("2",)], indirect=True)
def test_a_recovery_that_leaves_the_lb_paused_is_retried_one_at_a_time(inproc: InProcessAgent) -> None:
    c = inproc.client
    c.apply(fleet(1, lb={"pause_max_ms": 60_000}), timeout_s=30)
    owner = inproc.pauser(lease_s=30, mode="die")
    assert owner.wait(10) == 0
    runs = wait_until(lambda: len(r := inproc.runs()) >= 2 and r, what="the recovery to be retried")
    wait_until(lambda: c.stats()["paused"] is False, what="the second run to resume the LB")
    first, second = runs[:2]
    assert (first["run"], second["run"]) == (1, 2) and first["pid"] != second["pid"]
    assert second["start"] >= first["end"]  # never two at a time
    assert first["paused"] is True and second["paused"] is True
