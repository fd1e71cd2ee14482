"""Processes a stack owns, as recorded by pid + create time: is it still that process, stop it, start one.

Why it exists: the agent, the load-balancer process and ``sculpt down`` all act on processes that are not
their children (a new agent adopts what a killed one started; ``down`` stops what a dead agent left). A pid
alone may have been reused by then, so every record carries the process's ``create_time`` and nothing is
signalled unless both match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CREATE_TIME_SLACK_S = 0.01
MAX_UNIX_PATH = 100


@dataclass(frozen=True)
class AgentPaths:
    """Where a stack's agent and LB process keep their files (all derived from the state dir and the stack)."""

    state_dir: Path
    stack: str

    @property
    def dir(self) -> Path:
        return self.state_dir / "agents"

    def _sock(self, suffix: str) -> Path:
        p = self.dir / f"{self.stack}{suffix}"
        if len(str(p).encode()) <= MAX_UNIX_PATH:
            return p
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"sculpt-{os.getuid()}" / f"{digest}-{self.stack}{suffix}"

    @property
    def sock(self) -> Path:
        """The agent's control socket (a short path under the temp dir when the state dir is too deep)."""
        return self._sock(".sock")

    @property
    def lb_sock(self) -> Path:
        """The LB process's control socket."""
        return self._sock(".lb.sock")

    @property
    def pid(self) -> Path:
        return self.dir / f"{self.stack}.pid"

    @property
    def lock(self) -> Path:
        return self.dir / f"{self.stack}.lock"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.stack}.log"

    @property
    def lb_log(self) -> Path:
        return self.dir / f"{self.stack}.lb.log"

    @property
    def state(self) -> Path:
        return self.dir / f"{self.stack}.json"

    @property
    def down(self) -> Path:
        """Present while a ``down`` is in progress: the LB process restarts no agent then."""
        return self.dir / f"{self.stack}.down"

    @property
    def instances(self) -> Path:
        return self.state_dir / "instances" / self.stack


def read_pid(paths: AgentPaths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def agent_alive(paths: AgentPaths) -> int | None:
    """The pid of the stack's agent if the one its pid file names still runs, else None.

    A pid reused by another process since would have started after the pid file was written."""
    import psutil

    pid = read_pid(paths)
    if pid is None:
        return None
    try:
        mtime = paths.pid.stat().st_mtime
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE or p.create_time() > mtime + 1.0:
            return None
    except (OSError, psutil.Error):
        return None
    return pid


def load_state(paths: AgentPaths) -> dict[str, Any]:
    """The stack's ``agents/<stack>.json`` (``{}`` when absent or unreadable)."""
    import json

    try:
        data = json.loads(paths.state.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(paths: AgentPaths, data: dict[str, Any]) -> None:
    """Replace ``agents/<stack>.json`` atomically."""
    import json

    paths.dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.state.with_name(f"{paths.state.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(paths.state)


def create_time(pid: int) -> float | None:
    """When ``pid`` started (``psutil``'s clock), or None if no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def same_process(pid: int | None, created: float | None) -> bool:
    """True while ``pid`` runs and is the process recorded with ``created`` (a zombie counts as gone)."""
    import psutil

    if not pid:
        return False
    try:
        p = psutil.Process(int(pid))
        if created is not None and abs(p.create_time() - float(created)) > CREATE_TIME_SLACK_S:
            return False
        return bool(p.status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, ValueError, TypeError):
        return False


def record(pid: int) -> dict[str, Any]:
    """``{"pid", "create_time"}`` for a process that runs now."""
    return {"pid": pid, "create_time": create_time(pid)}


def alive(rec: dict[str, Any] | None) -> bool:
    """Is the process of a ``record`` still running?"""
    return bool(rec) and same_process(rec.get("pid"), rec.get("create_time"))  # type: ignore[union-attr]


def signal_verified(pid: int, created: float | None, sig: int, *, group: bool = False) -> bool:
    """Send ``sig`` to ``pid`` (its process group when ``group`` and it leads one) only if it is still the
    recorded process; True if sent."""
    if pid in (os.getpid(), os.getppid(), 0, 1) or not same_process(pid, created):
        return False  # never ourselves, our parent or init
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and _leads_group(pid):
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    return False


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def wait_gone(recs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Wait until every recorded process has exited (not until reaped: they need not be our children);
    return the ones still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [r for r in recs if alive(r)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def terminate(recs: list[dict[str, Any]], grace_s: float = 3.0, *, group: bool = True) -> list[dict[str, Any]]:
    """SIGTERM each recorded process (group), SIGKILL what is left after ``grace_s``; return what still runs
    after that (which could not be stopped)."""
    for r in recs:
        signal_verified(int(r["pid"]), r.get("create_time"), signal.SIGTERM, group=group)
    left = wait_gone(recs, grace_s)
    for r in left:
        signal_verified(int(r["pid"]), r.get("create_time"), signal.SIGKILL, group=group)
    return wait_gone(left, 5.0)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(Exception):
        proc.wait()


def spawn_detached(argv: list[str], log_path: Path, *, cwd: Path, banner: str,
                   pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (it outlives us and our terminal), appending its output to
    ``log_path`` after a ``banner`` line; a thread reaps it if it exits while we still run."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        logf.write(f"--- sculpt: {banner} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        logf.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, pass_fds=pass_fds, cwd=str(cwd),
                                env=env)
    threading.Thread(target=_reap, args=(proc,), daemon=True, name=f"reap-{proc.pid}").start()
    return proc


def agent_command(state_dir: Path, stack: str) -> list[str]:
    """How an agent is started: by ``ensure_agent`` and by the LB process that restarts a dead one."""
    return [sys.executable, "-m", "sculpt.providers.local.agent", "--state-dir", str(state_dir), "--stack", stack]


def stack_processes(state_dir: Path, stack: str) -> list[dict[str, Any]]:
    """Processes of this user that belong to the stack by what they are, not by a record: an agent or LB
    process started for (state dir, stack), or an instance running in one of the stack's data dirs.

    ``sculpt down``'s last sweep, for what a dying agent started but had not recorded yet."""
    import psutil

    root = (state_dir / "instances" / stack).resolve()
    sd = str(state_dir.resolve())
    me = {os.getpid(), os.getppid()}
    out = []
    uid = os.getuid()
    for p in psutil.process_iter(["pid", "uids", "cmdline", "cwd", "create_time"]):
        try:
            info = p.info
            if info["pid"] in me or not info["uids"] or info["uids"].real != uid:
                continue
            cmd = info["cmdline"] or []
            role = None
            if any(m in cmd for m in ("sculpt.providers.local.agent", "sculpt.providers.local.lbproc")):
                if _flag(cmd, "--stack") == stack and _flag(cmd, "--state-dir") in (sd, str(state_dir)):
                    role = "lb" if "sculpt.providers.local.lbproc" in cmd else "agent"
            elif info["cwd"] and _under(Path(info["cwd"]), root):
                # an instance: started in its data dir with its uid in the environment (a shell that merely
                # sits in that directory is not one)
                if p.environ().get("SCULPT_INSTANCE_ID"):
                    role = "instance"
            if role is not None:
                out.append({"pid": info["pid"], "create_time": info["create_time"], "role": role})
        except (psutil.Error, TypeError, ValueError):
            continue
    return out


def _flag(cmd: list[str], name: str) -> str | None:
    with contextlib.suppress(ValueError, IndexError):
        return cmd[cmd.index(name) + 1]
    return None


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
