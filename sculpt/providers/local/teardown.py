"""``sculpt down`` for the local provider: stop every process a stack owns, with or without a live agent.

Why it exists: asking the agent to shut down is the normal path, but the agent may be dead (``kill -9``)
or hung while its LB process and instances serve on. So ``stop_stack``

1. marks a down in progress (``agents/<stack>.down``, holding this process's pid) and tells the LB process,
   so neither restarts an agent;
2. asks the agent to stop everything and waits for it; an agent that does not answer or does not exit is
   SIGKILLed (its recorded pid, checked against its create time);
3. takes the agent's ``flock`` itself, so no agent can start while it finishes;
4. stops whatever is still recorded in ``agents/<stack>.json`` (instances: process groups, SIGTERM then
   SIGKILL; the LB process), plus any process found to be the stack's (an LB or agent process started for
   this state dir and stack, an instance running in one of its data dirs), removes the recorded cgroups,
   the sockets, the pid file;
5. raises ``ProviderError`` (one line) naming what could not be stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from sculpt.domain.errors import ProviderError
from sculpt.providers.local import procs
from sculpt.providers.local.procs import AgentPaths

log = logging.getLogger("sculpt.down")

LOCK_WAIT_S = 10.0


def recorded(paths: AgentPaths) -> list[dict[str, Any]]:
    """The stack's recorded processes that still run: ``{"pid", "create_time", "role", "name"}``."""
    state = procs.load_state(paths)
    out = []
    lb = state.get("lb")
    if lb and procs.alive(lb):
        out.append({"pid": lb["pid"], "create_time": lb.get("create_time"), "role": "lb", "name": "load balancer"})
    for rec in state.get("instances") or []:
        if rec.get("pid") and procs.alive(rec):
            out.append({"pid": rec["pid"], "create_time": rec.get("create_time"), "role": "instance",
                        "name": f"instance {rec.get('uid')}"})
    return out


def down_in_progress(paths: AgentPaths) -> bool:
    """A ``down`` marker whose process still runs (a marker left by a killed ``down`` does not count)."""
    try:
        pid = int(json.loads(paths.down.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return paths.down.exists()
    return procs.same_process(pid, None)


def stop_stack(paths: AgentPaths, timeout_s: float = 30.0) -> bool:
    """Stop the stack's agent, LB process and instances; True if anything was running.

    ``ProviderError`` (after stopping all it could) when a process survived."""
    if not paths.dir.is_dir() and not paths.instances.is_dir():
        return False  # nothing of this stack was ever started here
    paths.dir.mkdir(parents=True, exist_ok=True)
    paths.down.write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))
    ran = False
    left: dict[str, Any] = {"stopped": [], "survivors": [], "cgroups": []}
    try:
        with contextlib.suppress(ProviderError):
            from sculpt.providers.local.lbproc import lb_call

            lb_call(paths, "down", 2.0)
        ran = _stop_agent(paths, timeout_s) or ran
        fd = _lock(paths)
        try:
            left = _stop_rest(paths)
            ran = ran or bool(left["stopped"])
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            paths.down.unlink()
    if left["survivors"]:
        what = ", ".join(f"{r['name']} (pid {r['pid']})" for r in left["survivors"])
        pids = " ".join(str(r["pid"]) for r in left["survivors"])
        raise ProviderError(f"could not stop {what} of stack '{paths.stack}'",
                            f"kill -9 {pids}, then run `sculpt down` again", retryable=True)
    if left["cgroups"]:
        raise ProviderError(f"could not remove the cgroups {', '.join(str(d) for d in left['cgroups'])} of stack "
                            f"'{paths.stack}'", "remove them with rmdir once they hold no process")
    return ran


def _stop_agent(paths: AgentPaths, timeout_s: float) -> bool:
    """Ask the agent to stop everything and wait until it exits; kill it if it will not. True if one ran."""
    from sculpt.providers.local.client import AgentClient

    pid = procs.agent_alive(paths)
    client = AgentClient(paths.state_dir, paths.stack)
    asked = False
    try:
        res = client.call("shutdown", wait_s=5.0)
        pid = int(res.get("pid") or 0) or pid
        asked = True
    except ProviderError:
        pass
    if pid is None:
        return asked
    created = procs.create_time(pid)
    if pid == os.getpid():  # an agent running inside this process (tests): it stops itself
        deadline = time.monotonic() + timeout_s
        while procs.agent_alive(paths) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True
    if not asked:
        log.warning("the agent (pid %d) of stack '%s' does not answer: stopping it", pid, paths.stack)
        procs.signal_verified(pid, created, signal.SIGTERM)
        timeout_s = min(timeout_s, 3.0)
    left = procs.wait_gone([{"pid": pid, "create_time": created}], timeout_s)
    if left:
        log.warning("the agent (pid %d) of stack '%s' did not exit: killing it", pid, paths.stack)
        procs.signal_verified(pid, created, signal.SIGKILL)
        procs.wait_gone(left, 5.0)
    return True


def _lock(paths: AgentPaths) -> int | None:
    """Hold the agent's flock (no agent can start meanwhile); None if it stays taken (a hung agent that
    survived SIGKILL: the rest is stopped anyway)."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def _stop_rest(paths: AgentPaths) -> dict[str, Any]:
    from sculpt.providers.local.cgroups import make_enforcer, remove_dirs

    state = procs.load_state(paths)
    recs = recorded(paths)
    seen = {r["pid"] for r in recs}
    for r in procs.stack_processes(paths.state_dir, paths.stack):
        if r["pid"] not in seen:
            recs.append({**r, "name": r["role"] if r["role"] != "instance" else "an instance"})
            seen.add(r["pid"])
    agents = [r for r in recs if r["role"] == "agent"]
    insts = [r for r in recs if r["role"] == "instance"]
    lbs = [r for r in recs if r["role"] == "lb"]
    for r in agents:  # an agent still here (it could not claim the stack, or it is hung): kill it first
        procs.signal_verified(int(r["pid"]), r.get("create_time"), signal.SIGKILL)
    survivors = procs.wait_gone(agents, 5.0)
    survivors += procs.terminate(insts, 3.0, group=True)
    survivors += procs.terminate(lbs, 3.0, group=False)
    dirs = [Path(d) for d in state.get("cgroups") or []]
    with contextlib.suppress(Exception):
        dirs += make_enforcer(paths.stack, paths.state_dir).dirs()
    cgroups = remove_dirs(list(dict.fromkeys(dirs)))
    for f in (paths.sock, paths.lb_sock, paths.pid):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    keep: dict[str, Any] = {k: state[k] for k in ("lb_port", "gen") if k in state}
    procs.save_state(paths, {**keep, "version": state.get("version", 2), "lb": None, "fleet": None, "instances": []})
    return {"stopped": recs, "survivors": survivors, "cgroups": cgroups}
