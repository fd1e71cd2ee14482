"""The local agent with real processes: reconcile, enforcement, live resize (and the refusal to replace a
running instance), crash restart, one agent per stack, clean shutdown, and the one-line errors for a dying
app and a taken LB port.

Every test starts a real agent process (``ensure_agent``) running real app processes (the demo app) behind
a real LB process and tears it down in the fixture's finalizer, checking that no process survives. Agent
death and adoption: ``test_agent_death.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sculpt.domain.errors import NotFoundError, ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import parse_spec
from sculpt.providers.local.agent import AgentPaths
from sculpt.providers.local.cgroups import detect_mode
from sculpt.providers.local.client import AgentClient, agent_command, ensure_agent
from tests.helpers import gone, http, wait_until

pytestmark = pytest.mark.e2e

CGROUPS = detect_mode() in ("cgroup-v1", "cgroup-v2")
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason="needs writable cgroups (this machine has none)")


def fleet(replicas: int = 1, shape: str = "std-0.5c-512m", **extra: Any) -> Fleet:
    data = {"fleet": "web", "shape": shape, "region": "local-a",
            "replicas": {"min": 0, "max": 3, "desired": replicas}, **extra}
    return Fleet.from_spec(parse_spec(data))


def cgroup_cpu_quota(pid: int) -> int:
    """The CFS quota the kernel enforces on ``pid`` (cgroup v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "cpu" in ctrls.split(","):
            return int(Path("/sys/fs/cgroup/cpu", path.lstrip("/"), "cpu.cfs_quota_us").read_text())
        if ctrls == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return int(Path("/sys/fs/cgroup", path.lstrip("/"), "cpu.max").read_text().split()[0])
    raise AssertionError(f"pid {pid} has no cpu cgroup")


class Tracked:
    """An agent under test plus every pid it ever ran, for the no-survivor check."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.pids: set[int] = set()
        self.client: AgentClient | None = None

    def start(self) -> AgentClient:
        self.client = ensure_agent(self.state, "web")
        self.pids.add(self.client.ping()["pid"])
        return self.client

    def track(self, status: dict[str, Any]) -> dict[str, Any]:
        self.pids.update(i["pid"] for i in status["instances"] if i["pid"])
        if status.get("lb_pid"):
            self.pids.add(status["lb_pid"])
        return status


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Tracked]:
    t = Tracked(tmp_path / "state")
    yield t
    c = AgentClient(t.state, "web")
    try:
        if c.running():
            t.track(c.status())
        c.shutdown()
    finally:
        for pid in t.pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"pid {pid} survived the agent's shutdown")


def test_apply_runs_instances_behind_one_lb_address_with_their_shape_enforced(agent: Tracked) -> None:
    c = agent.start()
    st = agent.track(c.apply(fleet(2), timeout_s=30))
    assert [i["id"] for i in st["instances"]] == ["web-0", "web-1"]
    assert all(i["healthy"] and i["pid"] for i in st["instances"])
    assert {i["enforcement"] for i in st["instances"]} == {st["enforcement"]}
    assert all((i["cpu_limit"], i["mem_limit_mb"]) == (0.5, 512) for i in st["instances"])
    if CGROUPS:
        assert {cgroup_cpu_quota(i["pid"]) for i in st["instances"]} == {50_000}
    lb = st["lb"]["address"]
    code, _ = http("GET", f"http://{lb}/healthz")
    assert code == 200
    stats = c.stats()
    assert set(stats["backends"]) >= {"web-0", "web-1"} and stats["requests"] >= 1


@needs_cgroups
def test_shape_change_is_a_live_resize_of_the_same_process(agent: Tracked) -> None:
    c = agent.start()
    before = agent.track(c.apply(fleet(1), timeout_s=30))["instances"][0]
    after = agent.track(c.apply(fleet(1, shape="std-1c-1024m"), timeout_s=30))["instances"][0]
    assert after["pid"] == before["pid"] and after["uid"] == before["uid"]
    assert (after["shape"], after["cpu_limit"], after["mem_limit_mb"]) == ("std-1c-1024m", 1.0, 1024)
    assert cgroup_cpu_quota(after["pid"]) == 100_000
    # the client's resize goes the other way, also live
    res = c.resize("web-0", "std-0.25c-256m")["instances"][0]
    assert (res["pid"], res["cpu_limit"], res["mem_limit_mb"]) == (before["pid"], 0.25, 256)
    assert cgroup_cpu_quota(res["pid"]) == 25_000
    with pytest.raises(NotFoundError, match="no slot 'web-9'"):
        c.resize("web-9", "std-1c-1024m")


def test_without_cgroups_a_shape_change_is_refused_before_anything_is_touched(
        agent: Tracked, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing the instance would copy a data dir it still writes (issue 11, case 4): the agent refuses,
    in one line, and the running instance, its data and the other slots stay as they were."""
    monkeypatch.setenv("SCULPT_ENFORCEMENT", "affinity+rlimit")
    c = agent.start()
    assert c.ping()["enforcement"] == "affinity+rlimit" and c.ping()["live_resize"] is False
    st = agent.track(c.apply(fleet(1), timeout_s=30))
    old = st["instances"][0]
    lb = st["lb"]["address"]
    assert http("PUT", f"http://{lb}/kv/colour", b"teal")[0] in (200, 201, 204)
    # a second slot in the same apply must not be started either: the refusal comes first
    with pytest.raises(ProviderError) as ei:
        c.apply(fleet(2, shape="std-1c-1024m"), timeout_s=30)
    assert str(ei.value) == ("slot web-0: changing its shape to std-1c-1024m needs a blue/green morph on this "
                             "machine (cgroups are not writable). To fix: run `sculpt up` or `sculpt morph "
                             "--strategy blue-green`: they hand its state over.")
    assert ei.value.retryable is False
    now = agent.track(c.status())["instances"]
    assert [(i["id"], i["pid"], i["uid"], i["shape"]) for i in now] == [("web-0", old["pid"], "web-0", old["shape"])]
    assert http("GET", f"http://{lb}/kv/colour") == (200, b"teal")
    affinity = psutil.Process(old["pid"]).cpu_affinity()
    assert len(affinity) == min(1, len(os.sched_getaffinity(0)))
    with pytest.raises(ProviderError, match="in-place resize needs writable cgroups. To fix: use --strategy blue-green"):
        c.resize("web-0", "std-0.5c-512m")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)


def test_an_app_change_keeps_the_running_instance_and_the_config_it_was_started_with(agent: Tracked) -> None:
    """``app.env``/``command``/``health_path`` changed: the agent leaves the running instance alone (the
    orchestrator replaces it blue/green with a state handover); a new slot starts with the new app; a restart
    after a crash uses the instance's own config; the LB checks each backend on its own health path."""
    c = agent.start()
    st = agent.track(c.apply(fleet(1, app={"env": {"COLOUR": "teal"}}), timeout_s=30))
    first = st["instances"][0]
    assert first["app_current"] is True and _environ(first["pid"])["COLOUR"] == "teal"
    changed = {"env": {"COLOUR": "plum"}, "health_path": "/metrics"}
    st = agent.track(c.apply(fleet(2, app=changed), timeout_s=30))
    kept, new = st["instances"]
    assert (kept["pid"], kept["uid"], kept["health_path"], kept["app_current"]) == (
        first["pid"], "web-0", "/healthz", False)
    assert _environ(kept["pid"])["COLOUR"] == "teal"
    assert (new["health_path"], new["app_current"]) == ("/metrics", True) and _environ(new["pid"])["COLOUR"] == "plum"
    assert all(i["healthy"] for i in st["instances"])
    backends = c.stats()["backends"]
    assert backends["web-0"]["healthy"] and backends["web-1"]["healthy"]
    os.kill(kept["pid"], signal.SIGKILL)
    again = wait_until(lambda: (i := agent.track(c.status())["instances"][0])["restarts"] == 1 and i["healthy"] and i,
                       what="the restart of the killed instance")
    assert again["pid"] != kept["pid"] and _environ(again["pid"])["COLOUR"] == "teal"
    assert again["health_path"] == "/healthz"


def test_removed_slots_are_stopped_and_weights_reach_the_lb(agent: Tracked) -> None:
    c = agent.start()
    st = agent.track(c.apply(fleet(3), timeout_s=30))
    third = st["instances"][2]["pid"]
    st = c.apply(fleet(2), timeout_s=30)
    assert [i["id"] for i in st["instances"]] == ["web-0", "web-1"]
    wait_until(lambda: gone(third), what="the removed instance to stop")
    st = c.set_weights({"web-0": 0})
    assert [i["weight"] for i in st["instances"]] == [0, 100]
    assert c.stats()["backends"]["web-0"]["weight"] == 0
    lb = st["lb"]["address"]
    codes = [http("GET", f"http://{lb}/healthz")[0] for _ in range(4)]
    assert codes == [200] * 4
    assert c.stats()["backends"]["web-0"]["requests"] == 0
    c.pause()
    assert c.stats()["paused"] is True
    c.resume()
    assert c.stats()["paused"] is False


def test_a_killed_instance_is_restarted_and_counted(agent: Tracked) -> None:
    c = agent.start()
    first = agent.track(c.apply(fleet(1), timeout_s=30))["instances"][0]
    os.kill(first["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        i = agent.track(c.status())["instances"][0]
        return i if i["restarts"] == 1 and i["healthy"] and i["pid"] != first["pid"] else None

    again = wait_until(restarted, what="the agent to restart the killed instance")
    assert again["uid"] == "web-0"
    code, _ = http("GET", f"http://{c.status()['lb']['address']}/healthz")
    assert code == 200


def test_an_app_that_exits_at_once_fails_apply_with_its_last_stderr_line(agent: Tracked) -> None:
    c = agent.start()
    bad = [sys.executable, "-c", "import sys; sys.stderr.write('boom: cannot open {data_dir}\\n'); sys.exit(3)"]
    with pytest.raises(ProviderError, match=r"exited at once with code 3: boom: cannot open .*web-0") as ei:
        c.apply(fleet(1, app={"command": bad}), timeout_s=30)
    assert "\n" not in str(ei.value) and "To fix:" in str(ei.value)
    assert c.status()["instances"] == []


def test_a_taken_lb_port_is_a_clear_error(agent: Tracked) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        c = agent.start()
        with pytest.raises(ProviderError, match=rf"cannot listen on 127.0.0.1:{port}.*To fix: set lb.port"):
            c.apply(fleet(1, lb={"port": port}), timeout_s=30)
    assert c.status()["instances"] == []


def test_lb_port_picked_once_is_kept_across_agent_restarts(agent: Tracked) -> None:
    c = agent.start()
    addr = agent.track(c.apply(fleet(1), timeout_s=30))["lb"]["address"]
    c.shutdown()
    c = agent.start()
    assert agent.track(c.apply(fleet(1), timeout_s=30))["lb"]["address"] == addr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moved = c.apply(fleet(1, lb={"port": port}), timeout_s=30)  # an explicit port moves the LB there
    assert moved["lb"]["address"] == f"127.0.0.1:{port}"
    assert http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200


def test_a_second_agent_for_the_same_stack_refuses(agent: Tracked) -> None:
    c = agent.start()
    pid = c.ping()["pid"]
    out = subprocess.run(agent_command(agent.state.resolve(), "web"), capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"an agent for stack 'web' already runs (pid {pid})" in out.stderr
    assert c.ping()["pid"] == pid


def test_shutdown_stops_everything_and_removes_socket_pid_file_and_cgroups(agent: Tracked) -> None:
    c = agent.start()
    st = agent.track(c.apply(fleet(2), timeout_s=30))
    pids = {i["pid"] for i in st["instances"]} | {st["agent_pid"], st["lb_pid"]}
    assert c.shutdown() is True
    assert all(gone(p) for p in pids)
    paths = AgentPaths(agent.state.resolve(), "web")
    assert not paths.sock.exists() and not paths.pid.exists() and not paths.lb_sock.exists()
    if CGROUPS:
        from sculpt.providers.local.cgroups import group_dir_name

        leftovers = [p for p in Path("/sys/fs/cgroup").glob(f"**/sculpt/{group_dir_name('web', paths.state_dir)}")]
        assert leftovers == []
    assert c.running() is False
    assert c.shutdown() is False  # nothing left to stop


def test_instances_of_no_recorded_slot_are_stopped_without_waiting_for_their_reaper(tmp_path: Path) -> None:
    """A new agent stops recorded instances that belong to no slot of the last applied fleet. They are not its
    children: init (or, in a container, nobody) reaps them, so it waits until they are dead, not reaped.
    Here the test process is the parent that has not reaped yet."""
    import json

    from sculpt.providers.local.agent import Agent

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        a = Agent(tmp_path / "state", "web", mode="affinity+rlimit")
        a.paths.dir.mkdir(parents=True)
        rec = {"uid": "web-0", "pid": child.pid, "create_time": psutil.Process(child.pid).create_time()}
        a.paths.state.write_text(json.dumps({"lb_port": None, "fleet": None, "instances": [rec]}))
        a._adopt()
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE  # dead, left to its parent
        assert a.instances == {} and a.lb is None
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGTERM


def test_the_agent_reads_every_local_catalog_shape_from_its_name() -> None:
    from sculpt.catalog import local_catalog
    from sculpt.providers.local.agent import parse_local_shape

    shapes = local_catalog(cores=4).shapes()
    assert shapes and all(parse_local_shape(n) == s for n, s in shapes.items())
    assert parse_local_shape("m6i.large") is None


HOG_APP = """
import http.server, sys
hog = []
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/eat"):
            b = bytearray(int(self.path.split("=")[1]) * 1024 * 1024)
            for i in range(0, len(b), 4096):
                b[i] = 1
            hog.append(b)
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@needs_cgroups
def test_the_memory_limit_is_real_an_instance_over_it_is_killed_and_restarted(agent: Tracked, tmp_path: Path) -> None:
    app_file = tmp_path / "hog.py"
    app_file.write_text(HOG_APP)
    c = agent.start()
    st = agent.track(c.apply(fleet(1, shape="std-0.25c-256m", app={"command": [sys.executable, str(app_file),
                                                                               "{port}"]}), timeout_s=30))
    first = st["instances"][0]
    assert first["mem_limit_mb"] == 256
    assert http("GET", f"http://{first['address']}/eat?mb=64")[0] == 200  # under the limit: fine
    with pytest.raises(OSError):
        http("GET", f"http://{first['address']}/eat?mb=400")  # over it: the kernel kills the process
    wait_until(lambda: gone(first["pid"]), what="the OOM kill")
    again = wait_until(lambda: (i := agent.track(c.status())["instances"][0])["restarts"] == 1 and i["healthy"] and i,
                       what="the restart after the OOM kill")
    assert again["pid"] != first["pid"] and again["mem_limit_mb"] == 256


def test_a_state_dir_too_deep_for_a_unix_socket_path_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    paths = AgentPaths(deep.resolve(), "web")
    assert len(str(paths.sock)) <= 100 and paths.sock == AgentPaths(deep.resolve(), "web").sock
    c = ensure_agent(deep, "web")
    try:
        assert c.ping()["stack"] == "web" and paths.sock.exists()
    finally:
        pid = c.ping()["pid"]
        c.shutdown()
    assert gone(pid) and not paths.sock.exists()


def test_limits_and_forced_enforcement_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from sculpt.domain.errors import ConfigError
    from sculpt.providers.local.cgroups import Limits

    assert Limits.of(0.25, 0.25) == Limits(cpu=0.25, mem_mb=256)
    assert Limits.of(0.25, 0.25).cfs_quota_us() == 25_000
    assert Limits(cpu=0.001, mem_mb=1).cfs_quota_us() == 1000  # the kernel's minimum quota
    monkeypatch.setenv("SCULPT_ENFORCEMENT", "affinity+rlimit")
    assert detect_mode() == "affinity+rlimit"
    monkeypatch.setenv("SCULPT_ENFORCEMENT", "magic")
    with pytest.raises(ConfigError, match="SCULPT_ENFORCEMENT='magic' is not a mode. To fix: use one of: cgroup-v1"):
        detect_mode()


def test_a_taken_kept_lb_port_moves_the_lb_with_a_note(agent: Tracked) -> None:
    """The spec left the port to sculpt: when the kept one is taken the LB moves, and says so."""
    c = agent.start()
    addr = agent.track(c.apply(fleet(1), timeout_s=30))["lb"]["address"]
    assert c.status()["notes"] == []
    port = int(addr.rpartition(":")[2])
    c.shutdown()
    with socket.socket() as s:       # someone else takes the kept port while the stack is down
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        c = agent.start()
        st = agent.track(c.apply(fleet(1), timeout_s=30))
        new = st["lb"]["address"]
        assert new != addr and http("GET", f"http://{new}/healthz")[0] == 200
        (note,) = st["notes"]
        assert f"port {port} was taken" in note and new in note and f"lb.port: {port}" in note
