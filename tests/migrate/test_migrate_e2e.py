"""``sculpt morph`` for real: an agent, demo-app processes, the load balancer, and the load generator driving
250 requests/s of mixed reads and writes through it while the morph runs (as its own process, so
``crash-at`` faults really SIGKILL it). After each morph every acknowledged write is read back.

One stack per module (a real agent); each test morphs it to the shape it is not on, so tests are
independent of order. Checks after every test: the stack and the running instances agree, every instance
is healthy and writable, the LB is not paused, and no demo-app process runs outside the fleet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from sculpt.catalog import local_catalog
from sculpt.demoapp.loadgen import LoadGen, LoadResult, verify
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import load_spec
from sculpt.engine.local import LocalEngine
from sculpt.ledger import Ledger
from sculpt.migrate import recover
from sculpt.migrate.local import LocalPlatform
from sculpt.migrate.states import BLUE_GREEN_STEPS
from sculpt.migrate.transport import http_call as _http
from sculpt.providers.local.cgroups import detect_mode
from sculpt.providers.local.client import AgentClient
from sculpt.providers.local.provider import LocalProvider

pytestmark = pytest.mark.e2e

SHAPES = ("std-0.5c-512m", "std-1c-1024m")
RATE_RPS = 250.0
LIVE_RESIZE = detect_mode() in ("cgroup-v1", "cgroup-v2")


@dataclass
class Stack:
    name: str
    home: Path
    spec: Path
    ledger: Ledger
    engine: LocalEngine
    url: str

    @property
    def client(self) -> AgentClient:
        return AgentClient(self.home, self.name)

    def fleet(self) -> Fleet:
        f = self.engine.current()
        assert f is not None
        return f

    def other_shape(self) -> str:
        return SHAPES[1] if self.fleet().slots[0].shape == SHAPES[0] else SHAPES[0]


def _stack(root: Path, name: str, extra: str = "") -> Iterator[Stack]:
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "sculpt.yaml"
    spec.write_text(f"fleet: {name}\nshape: {SHAPES[0]}\nregion: local-a\nregions: [local-b]\n{extra}")
    home = root / "state"
    ledger = Ledger(home / "ledger.db")
    engine = LocalEngine(name, ledger, local_catalog(), LocalProvider(home, name, timeout_s=30))
    engine.up(Fleet.from_spec(load_spec(spec)), "test stack")
    st = engine.provider.status()
    assert st is not None
    s = Stack(name, home, spec, ledger, engine, f"http://{st['lb']['address']}")
    yield s
    pids = {i["pid"] for i in s.client.status()["instances"] if i["pid"]}
    engine.destroy()
    ledger.close()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _stack(tmp_path_factory.mktemp("morph"), "web")


def sculpt_morph(s: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCULPT_HOME": str(s.home)}
    env.pop("SCULPT_FAULT", None)
    return subprocess.run([sys.executable, "-m", "sculpt.cli.main", "morph", "--spec", str(s.spec), "--json",
                           *args], capture_output=True, text=True, env=env, timeout=120, check=False)


class CapacityProbe:
    """Samples the LB every few ms during a morph: the fewest healthy backends with weight > 0 it saw."""

    def __init__(self, s: Stack) -> None:
        import threading

        self.client, self.low = s.client, 10**6
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                b = self.client.stats()["backends"].values()
            except Exception:  # noqa: BLE001 - the agent may be busy; the next sample counts
                continue
            self.low = min(self.low, sum(1 for x in b if x["active"] and x["healthy"] and x["weight"] > 0))
            self.samples += 1
            time.sleep(0.005)

    def __enter__(self) -> CapacityProbe:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def under_load(s: Stack, args: list[str], seed: int,
               probe: CapacityProbe | None = None) -> tuple[subprocess.CompletedProcess[str], LoadResult, int]:
    """Run ``sculpt morph ARGS`` while the load generator drives the LB; recover if the morph was killed."""
    load = LoadGen(s.url, RATE_RPS, write_ratio=0.5, keys=300, duration_s=300.0, seed=seed)
    load.start()
    try:
        time.sleep(0.6)
        if probe is not None:
            with probe:
                proc = sculpt_morph(s, *args)
        else:
            proc = sculpt_morph(s, *args)
        if proc.returncode < 0:  # SIGKILLed by an injected crash: what the next sculpt command does
            recover(s.home, s.name)
        time.sleep(0.6)
    finally:
        res = load.stop()
    return proc, res, verify(s.url, res)


def demo_processes(home: Path) -> set[int]:
    """Demo-app processes whose data dir is under this stack's state dir (orphans included)."""
    out = set()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if "sculpt.demoapp" in cmd and any(str(home) in a for a in cmd) and p.info["status"] != "zombie":
            out.add(p.info["pid"])
    return out


def assert_settled(s: Stack) -> dict[str, Any]:
    """The stack, the agent's instances and the OS agree; one writer; nothing paused or read-only."""
    assert s.ledger.unfinished_migrations(s.name) == []
    st = s.client.status()
    insts = st["instances"]
    assert sorted(i["id"] for i in insts) == sorted(x.id for x in s.fleet().slots)
    assert all(i["healthy"] for i in insts)
    assert demo_processes(s.home) == {i["pid"] for i in insts}, "an instance outside the fleet is running"
    assert s.client.stats()["paused"] is False
    for i in insts:
        code, body = _http(i["address"], "GET", "/admin/readonly")
        assert code == 200 and json.loads(body)["readonly"] is False
    serving = [i for i in insts if i["weight"] > 0]
    assert len(serving) == len(s.fleet().slots)  # no blue left serving beside its green
    return st


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    return dict(json.loads(proc.stdout))


def test_blue_green_morph_under_load_drops_nothing_and_loses_nothing(stack: Stack) -> None:
    target = stack.other_shape()
    before = stack.fleet().slots[0]
    probe = CapacityProbe(stack)
    proc, res, lost = under_load(stack, ["--shape", target, "--strategy", "blue-green"], seed=1, probe=probe)
    assert probe.samples > 10 and probe.low == 1  # never without a serving instance
    rep = report(proc)
    assert proc.returncode == 0, proc.stderr
    assert rep["result"] == "done" and rep["strategy"] == "blue-green"
    assert [x["state"] for x in rep["steps"]] == [x.value for x in BLUE_GREEN_STEPS]
    assert all(x["ended"] >= x["started"] for x in rep["steps"])
    assert set(rep) >= {"migration_id", "strategy", "from", "to", "result", "steps", "pause_ms"}
    assert rep["from"]["shape"] == before.shape and rep["to"]["shape"] == target
    assert res.requests >= 200 and res.writes > 50 and len(res.acked_writes) > 50
    assert (res.failed, lost, res.stale_reads) == (0, 0, 0)
    st = assert_settled(stack)
    (inst,) = st["instances"]
    assert inst["shape"] == target and inst["id"] != before.id and inst["colour"] != before.colour
    assert "PAUSE_FINAL_DELTA ..." in proc.stderr  # progress per step on stderr
    last = stack.ledger.versions(stack.name)[-1]  # one user-visible version, its stack updates as steps
    assert (last.kind, last.result, rep["versions"]) == ("morph", "succeeded", [last.version])
    steps = [st.message for st in stack.ledger.steps(stack.name, last.version)]
    assert [k.split(": ", 1)[1].split(" ")[0] for k in steps] == ["add", "shift", "retire"]


@pytest.mark.skipif(not LIVE_RESIZE, reason="in-place morphs need writable cgroups, which this machine lacks")
def test_in_place_morph_resizes_the_running_process_live(stack: Stack) -> None:
    target = stack.other_shape()
    (before,) = stack.client.status()["instances"]
    proc, res, lost = under_load(stack, ["--shape", target, "--strategy", "in-place"], seed=2)
    rep = report(proc)
    assert (proc.returncode, rep["result"], rep["strategy"]) == (0, "done", "in-place"), proc.stderr
    assert (res.failed, lost, res.stale_reads) == (0, 0, 0) and res.requests >= 200
    (after,) = assert_settled(stack)["instances"]
    assert after["pid"] == before["pid"]  # same process, new limits
    shape = local_catalog().shape(target)
    assert (after["shape"], after["cpu_limit"], after["mem_limit_mb"]) == (
        target, shape.vcpu, int(shape.memory_gib * 1024))


def test_in_place_is_refused_with_a_fix_when_the_region_changes(stack: Stack) -> None:
    proc = sculpt_morph(stack, "--region", "local-b", "--strategy", "in-place")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: cannot morph in place") and "To fix: use --strategy blue-green" in line


@pytest.mark.parametrize("fault", ["green-unhealthy", "restore-fails", "shift-fails", "step-timeout",
                                   "step-timeout:DRAIN_BLUE"])
def test_each_injected_fault_rolls_back_with_blue_serving_and_nothing_lost(stack: Stack, fault: str) -> None:
    before = stack.fleet()
    proc, res, lost = under_load(stack, ["--shape", stack.other_shape(), "--strategy", "blue-green",
                                         "--fault", fault, "--timeout", "2", "--step-timeout", "2"], seed=3)
    rep = report(proc)
    assert proc.returncode == 1 and rep["result"] == "rolled_back"
    assert f"rolled back: {rep['reason']}" in proc.stderr
    assert (res.failed, lost, res.stale_reads) == (0, 0, 0) and res.requests >= 200
    assert [x.id for x in stack.fleet().slots] == [x.id for x in before.slots]  # blue kept; green removed
    assert stack.fleet().slots[0].shape == before.slots[0].shape
    assert_settled(stack)
    last = stack.ledger.versions(stack.name)[-1]  # the morph's version, failed with the reason
    assert (last.kind, last.result) == ("morph", "failed") and rep["reason"] in last.message
    assert "rolled back" in stack.ledger.steps(stack.name, last.version)[-1].message
    m = stack.ledger.migration(rep["migration_id"])
    assert (m.result, m.reason) == ("rolled_back", rep["reason"])


@pytest.mark.parametrize("state", [x.value for x in BLUE_GREEN_STEPS])
def test_a_controller_killed_at_any_step_is_recovered(stack: Stack, state: str) -> None:
    target = stack.other_shape()
    before = stack.fleet().slots[0].shape
    proc, res, lost = under_load(stack, ["--shape", target, "--strategy", "blue-green",
                                         "--fault", f"crash-at:{state}"], seed=4)
    assert proc.returncode == -9, proc.stderr  # really SIGKILLed
    assert lost == 0 and res.requests >= 200
    m = stack.ledger.migrations(stack.name)[-1]
    forward = state in ("SHIFT", "RESUME", "DRAIN_BLUE", "RETIRE_BLUE")  # green is authoritative from SHIFT on
    assert [e.state for e in stack.ledger.journal_entries(m.id) if e.data.get("recovered")] == (
        [] if forward else ["ROLLBACK"])
    assert m.result == ("done" if forward else "rolled_back")
    assert stack.fleet().slots[0].shape == (target if forward else before)
    assert_settled(stack)


@pytest.fixture(scope="module")
def hashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _stack(tmp_path_factory.mktemp("morph-hash"), "kv",
                      "replicas: {min: 2, max: 3, desired: 2}\nlb: {routing: hash}\n")


def test_a_hash_routed_two_replica_fleet_rolls_one_replica_at_a_time(hashed: Stack) -> None:
    target = hashed.other_shape()
    probe = CapacityProbe(hashed)
    proc, res, lost = under_load(hashed, ["--shape", target, "--strategy", "blue-green"], seed=5, probe=probe)
    assert probe.samples > 10 and probe.low == 2  # replicas.min: 2, held at every sample
    rep = report(proc)
    assert (proc.returncode, rep["result"]) == (0, "done"), proc.stderr
    assert [x["replica"] for x in rep["steps"] if x["state"] == "SHIFT"] == [0, 1]
    assert (res.failed, lost, res.stale_reads) == (0, 0, 0) and res.requests >= 200
    st = assert_settled(hashed)
    assert {i["shape"] for i in st["instances"]} == {target}


@pytest.mark.parametrize("fault", ["step-timeout:15", "crash-at:12"])
def test_a_failure_on_the_second_replica_rolls_back_only_that_replica(hashed: Stack, fault: str) -> None:
    """8 steps per replica: step 12 is replica 1's PAUSE_FINAL_DELTA (a crash there rolls back), 15 its
    DRAIN_BLUE (after traffic reached green, so the rollback copies green's keys back). Replica 0 stays moved;
    replica 1 is back on blue."""
    before = {x.id: x.shape for x in hashed.fleet().slots}
    target = hashed.other_shape()
    proc, res, lost = under_load(hashed, ["--shape", target, "--strategy", "blue-green", "--fault", fault,
                                          "--step-timeout", "2"], seed=7)
    assert (lost, res.stale_reads) == (0, 0) and res.requests >= 200
    m = hashed.ledger.migrations(hashed.name)[-1]
    assert m.result == "rolled_back"
    rolled = [e.data["ctx"]["replica"] for e in hashed.ledger.journal_entries(m.id) if e.state == "ROLLBACK"]
    assert rolled and set(rolled) == {1}
    slots = hashed.fleet().slots
    assert sorted(x.shape for x in slots) == sorted([target, next(iter(set(before.values())))])
    assert len(slots) == 2 and sum(1 for x in slots if x.id in before) == 1  # one moved, one kept
    if fault.startswith("step-timeout"):
        assert proc.returncode == 1 and res.failed == 0
    else:
        assert proc.returncode == -9
    assert_settled(hashed)
    # put the fleet back on one shape for the tests after this one
    back = sculpt_morph(hashed, "--shape", target, "--strategy", "blue-green")
    assert back.returncode == 0, back.stderr
    assert_settled(hashed)


@pytest.mark.skipif(not LIVE_RESIZE, reason="in-place morphs need writable cgroups, which this machine lacks")
def test_in_place_resizes_a_multi_replica_fleet_one_replica_at_a_time(hashed: Stack) -> None:
    target = hashed.other_shape()
    pids = {i["id"]: i["pid"] for i in hashed.client.status()["instances"]}
    proc, res, lost = under_load(hashed, ["--shape", target, "--strategy", "in-place"], seed=10)
    rep = report(proc)
    assert (proc.returncode, rep["result"], rep["strategy"]) == (0, "done", "in-place"), proc.stderr
    assert [(x["state"], x["replica"]) for x in rep["steps"]] == [
        ("RESIZE", 0), ("WAIT_HEALTHY", 0), ("RESIZE", 1), ("WAIT_HEALTHY", 1)]
    assert len(rep["versions"]) == 1  # one user-visible version ...
    (v,) = rep["versions"]
    assert len(hashed.ledger.steps(hashed.name, v)) == 2  # ... with one stack update per replica
    assert (res.failed, lost, res.stale_reads) == (0, 0, 0)
    st = assert_settled(hashed)
    assert {i["id"]: i["pid"] for i in st["instances"]} == pids
    assert {i["shape"] for i in st["instances"]} == {target}


def test_only_moved_key_ranges_are_copied_for_a_hash_routed_fleet(hashed: Stack) -> None:
    """The planner's ring is the LB's ring: the owner it predicts is where the LB sends the key."""
    plat = LocalPlatform(hashed.engine, hashed.home)
    ring = tuple((x.id, x.weight) for x in hashed.fleet().slots)
    served_by = {}
    for k in (f"key{i}" for i in range(40)):
        code, _ = _http(hashed.url.removeprefix("http://"), "PUT", f"/kv/{k}", b"v")
        assert code == 200
        served_by[k] = plat.owner(k, ring)
    for sid in {x for x, _ in ring}:
        cp = plat.checkpoint(sid, since=0)
        mine = {k for k, o in served_by.items() if o == sid}
        assert mine <= set(cp.items)


_PY = sys.executable
_CHECKPOINT = (f"{_PY} -c \"import sys, urllib.request as u; open(sys.argv[2], 'wb')"
               ".write(u.urlopen(sys.argv[1] + '/checkpoint').read())\" {url} {file}")
_RESTORE = (f"{_PY} -c \"import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1] + '/restore', "
            "data=open(sys.argv[2], 'rb').read(), method='POST'))\" {url} {file}")


@pytest.fixture(scope="module", params=["command", "volume"])
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import yaml

    sync: dict[str, Any] = {"strategy": request.param}
    if request.param == "command":
        sync.update(checkpoint_command=_CHECKPOINT, restore_command=_RESTORE)
    extra = yaml.safe_dump({"app": {"state_sync": sync}})
    yield from _stack(tmp_path_factory.mktemp(f"morph-{request.param}"), f"s-{request.param}", extra)


def test_command_and_volume_state_sync_hand_over_every_acknowledged_write(synced: Stack) -> None:
    target = synced.other_shape()
    proc, res, lost = under_load(synced, ["--shape", target, "--strategy", "blue-green"], seed=6)
    rep = report(proc)
    assert (proc.returncode, rep["result"]) == (0, "done"), proc.stderr
    assert (res.failed, lost, res.stale_reads) == (0, 0, 0) and len(res.acked_writes) > 50
    assert assert_settled(synced)["instances"][0]["shape"] == target


def test_an_unknown_shape_is_refused_in_one_line_before_anything_starts(stack: Stack) -> None:
    n = len(stack.ledger.migrations(stack.name))
    proc = sculpt_morph(stack, "--shape", "huge-99c")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: shape 'huge-99c' is not in the local catalog") and "To fix:" in line
    assert len(stack.ledger.migrations(stack.name)) == n


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_mid_morph_rolls_back_at_once(stack: Stack, sig: str) -> None:
    import signal

    before = stack.fleet()
    n = len(stack.ledger.migrations(stack.name))
    env = {**os.environ, "SCULPT_HOME": str(stack.home)}
    load = LoadGen(stack.url, RATE_RPS, write_ratio=0.5, keys=300, duration_s=300.0, seed=8)
    load.start()
    try:
        with subprocess.Popen([sys.executable, "-m", "sculpt.cli.main", "morph", "--spec", str(stack.spec),
                               "--shape", stack.other_shape(), "--strategy", "blue-green", "--fault",
                               "step-timeout", "--step-timeout", "60"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as proc:
            deadline = time.monotonic() + 30
            while not any(m.state == "SYNC_STATE" for m in stack.ledger.migrations(stack.name)[n:]):
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise AssertionError(f"the morph never reached SYNC_STATE: {proc.communicate()[1]}")
                time.sleep(0.05)
            proc.send_signal(getattr(signal, sig))
            _, err = proc.communicate(timeout=30)
    finally:
        res = load.stop()
    assert proc.returncode == 130, err  # the shell's "interrupted" code, after the rollback finished
    said = "interrupted (Ctrl-C)" if sig == "SIGINT" else "interrupted (SIGTERM)"
    assert f"rolling back: {said}" in err
    m = stack.ledger.migrations(stack.name)[-1]
    assert (m.result, m.reason) == ("rolled_back", said)
    assert (res.failed, verify(stack.url, res), res.stale_reads) == (0, 0, 0)
    assert [x.id for x in stack.fleet().slots] == [x.id for x in before.slots]
    assert_settled(stack)


@pytest.fixture
def lonely(tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path / "lonely", "lone")


@pytest.mark.parametrize("state", ["SHIFT", "DRAIN_BLUE"])
def test_recovery_works_even_when_the_agent_died_with_the_controller(lonely: Stack, state: str) -> None:
    """Controller and agent both SIGKILLed mid-morph (say, the machine lost power): the next command
    restarts the agent through the engine and finishes the migration; no acknowledged write is lost.
    (The agent is killed with its LB holding requests, so no write is in doubt when it dies.)"""
    import signal

    target = lonely.other_shape()
    agent_pid = int(lonely.client.status()["agent_pid"])
    load = LoadGen(lonely.url, RATE_RPS, write_ratio=0.5, keys=300, duration_s=300.0, seed=9)
    load.start()
    try:
        time.sleep(0.6)
        proc = sculpt_morph(lonely, "--shape", target, "--strategy", "blue-green", "--fault", f"crash-at:{state}")
        assert proc.returncode == -9
        # The LB dies with the agent. A write it had already sent to green would be applied without its
        # answer ever reaching the load generator, which would then count the value it left as lost (or a
        # read of it as stale). So hold new requests and let those sent answer: every write is then either
        # acknowledged or never applied, and the check below stays exact.
        lonely.client.pause()
        deadline = time.monotonic() + 30.0
        while lonely.client.stats()["in_flight"]:
            assert time.monotonic() < deadline, "requests sent to the fleet never answered"
            time.sleep(0.005)
        os.kill(agent_pid, signal.SIGKILL)
        time.sleep(0.3)
        (rep,) = recover(lonely.home, lonely.name)
        time.sleep(0.6)
    finally:
        res = load.stop()
    assert rep.result == "done"  # the shift was requested in both: green holds the writes, roll forward
    assert lonely.fleet().slots[0].shape == target
    assert lonely.client.status()["agent_pid"] != agent_pid
    assert (verify(lonely.url, res), res.stale_reads) == (0, 0)
    assert_settled(lonely)
