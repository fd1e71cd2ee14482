"""A local instance: one OS process running the app's command on a free loopback port, shape enforced.

The agent owns ``InstanceProcess`` objects; this module knows how to start one (command substitution, data dir,
log file, enforcement), probe its health, notice that it died, and stop it (its whole process group).

Layout under the state directory::

    instances/<stack>/<uid>/        the instance's data dir ({data_dir})
    instances/<stack>/<uid>.log     its stdout and stderr (appended across restarts)

``uid`` is the slot id for the first instance of a slot and ``<slot>#<n>`` when a removed slot id comes
back within one agent's records, so a new instance never shares a data dir or a load-balancer backend id
with an earlier one.

An instance started by an earlier agent (killed, then replaced) is *adopted*: ``InstanceProcess.proc`` is then an
:class:`Adopted` handle (pid + create time) instead of a ``Popen``; ``to_record``/``from_record`` are what
the agent keeps in ``agents/<stack>.json`` to rebuild it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sculpt.domain.catalog import Shape
from sculpt.domain.errors import ProviderError
from sculpt.domain.fleet import Slot
from sculpt.domain.spec import App
from sculpt.providers.local import procs
from sculpt.providers.local.cgroups import Enforcer, Limits

STOP_GRACE_S = 3.0
MARK = "--- sculpt:"  # our own lines in an instance log; each start writes one


def default_command() -> list[str]:
    """The bundled demo app."""
    return [sys.executable, "-m", "sculpt.demoapp", "--host", "127.0.0.1", "--port", "{port}",
            "--data-dir", "{data_dir}", "--instance-id", "{instance_id}"]


def render_command(template: list[str] | None, *, port: int, data_dir: Path, instance_id: str) -> list[str]:
    """Substitute ``{port}``, ``{data_dir}`` and ``{instance_id}`` in each argument (nothing else is touched).

    >>> render_command(["app", "--port={port}", "{data_dir}"], port=9, data_dir=Path("/d"), instance_id="w-0")
    ['app', '--port=9', '/d']
    """
    argv = template or default_command()
    return [a.replace("{port}", str(port)).replace("{data_dir}", str(data_dir)).replace("{instance_id}", instance_id)
            for a in argv]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def probe_health(port: int, path: str = "/healthz", timeout_s: float = 1.0, host: str = "127.0.0.1") -> bool:
    """True when ``GET path`` answers 2xx."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        return 200 <= conn.getresponse().status < 300
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def tail(path: Path, lines: int = 3, max_bytes: int = 8192) -> str:
    """The last non-empty lines of a log, joined with `` | `` (for one-line errors)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    all_lines = text.splitlines()
    marks = [n for n, ln in enumerate(all_lines) if ln.startswith(MARK)]
    since = all_lines[marks[-1] + 1:] if marks else all_lines  # only the latest start's output
    kept = [ln.strip() for ln in since if ln.strip()]
    return " | ".join(kept[-lines:])


class Adopted:
    """A process this agent did not start (an earlier agent did): the part of ``Popen`` the agent uses.

    Its exit code is unknowable (it is not our child): ``poll()`` says -1 once it has gone."""

    def __init__(self, pid: int, created: float | None) -> None:
        self.pid = pid
        self.created = created
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not procs.same_process(self.pid, self.created):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


@dataclass
class InstanceProcess:
    """A running (or crashed, awaiting restart) instance of one slot."""

    uid: str
    slot: Slot
    shape: Shape
    port: int
    data_dir: Path
    log_path: Path
    argv: list[str]
    template: list[str] | None
    env: dict[str, str]
    health_path: str
    proc: subprocess.Popen[bytes] | Adopted | None = None
    healthy: bool = False
    ever_healthy: bool = False
    started: float = 0.0
    restarts: int = 0
    next_restart: float = 0.0
    limits: Limits = field(default_factory=lambda: Limits(1.0, 1024))
    stopping: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def adopted(self) -> bool:
        return isinstance(self.proc, Adopted)

    def same_app(self, app: App) -> bool:
        """Does ``app`` start processes the way this instance's was started (command, env, health path)?"""
        return self.template == app.command and self.env == dict(app.env) and self.health_path == app.health_path

    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def failure(self) -> str:
        """One line saying why this instance is not running, from its exit code and log."""
        code = self.exit_code()
        last = tail(self.log_path)
        what = f"exited at once with code {code}" if code is not None else "did not become healthy"
        return f"the app of instance {self.uid} ({Path(self.argv[0]).name}) {what}" + (f": {last}" if last else "")


def to_record(inst: InstanceProcess) -> dict[str, Any]:
    """What a new agent needs to rebuild (adopt, or restart) this instance: see ``from_record``."""
    pid = inst.pid if inst.alive() else None
    created = (inst.proc.created if isinstance(inst.proc, Adopted) else procs.create_time(pid)) if pid else None
    return {"uid": inst.uid, "slot": inst.slot.model_dump(mode="json"), "shape": inst.shape.model_dump(mode="json"),
            "port": inst.port, "data_dir": str(inst.data_dir), "log": str(inst.log_path), "argv": list(inst.argv),
            "template": list(inst.template) if inst.template is not None else None, "env": dict(inst.env),
            "health_path": inst.health_path, "restarts": inst.restarts,
            "limits": {"cpu": inst.limits.cpu, "mem_mb": inst.limits.mem_mb},
            "pid": pid, "create_time": created}


def from_record(rec: dict[str, Any]) -> InstanceProcess:
    """The instance a record describes; ``proc`` is an ``Adopted`` handle when its process still runs, else
    None (the caller restarts it from its data dir)."""
    shape = Shape.model_validate(rec["shape"])
    lim = rec.get("limits") or {}
    limits = Limits(float(lim["cpu"]), int(lim["mem_mb"])) if lim else Limits.of(shape.vcpu, shape.memory_gib)
    inst = InstanceProcess(uid=str(rec["uid"]), slot=Slot.model_validate(rec["slot"]), shape=shape, port=int(rec["port"]),
                    data_dir=Path(rec["data_dir"]), log_path=Path(rec["log"]), argv=[str(a) for a in rec["argv"]],
                    template=[str(a) for a in rec["template"]] if rec.get("template") is not None else None,
                    env={str(k): str(v) for k, v in (rec.get("env") or {}).items()},
                    health_path=str(rec.get("health_path") or "/healthz"), restarts=int(rec.get("restarts", 0)),
                    limits=limits)
    pid, created = rec.get("pid"), rec.get("create_time")
    if pid and procs.same_process(int(pid), created):
        inst.proc = Adopted(int(pid), float(created) if created is not None else None)
    return inst


def new_instance(uid: str, slot: Slot, shape: Shape, app: App, root: Path) -> InstanceProcess:
    """Prepare (not start) an instance of ``slot`` under ``root`` (``<state>/instances/<stack>``)."""
    data_dir = root / uid
    port = free_port()
    inst = InstanceProcess(uid=uid, slot=slot, shape=shape, port=port, data_dir=data_dir,
                    log_path=root / f"{uid}.log", argv=[], template=app.command, env=dict(app.env), health_path=app.health_path,
                    limits=Limits.of(shape.vcpu, shape.memory_gib))
    inst.argv = render_command(app.command, port=port, data_dir=data_dir, instance_id=uid)
    return inst


def start(inst: InstanceProcess, enforcer: Enforcer) -> None:
    """Start (or restart) the process, put it under its limits. Keeps the port when it is still free."""
    inst.data_dir.mkdir(parents=True, exist_ok=True)
    if not port_free(inst.port):
        inst.port = free_port()
        inst.argv = render_command(inst.template, port=inst.port, data_dir=inst.data_dir, instance_id=inst.uid)
    env = {**os.environ, **inst.env, "SCULPT_INSTANCE_ID": inst.uid, "PORT": str(inst.port),
           "SCULPT_SHAPE": inst.shape.name, "PYTHONUNBUFFERED": "1"}
    log = open(inst.log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        log.write(f"{MARK} starting {inst.uid} on port {inst.port} ({inst.shape.name})\n".encode())
        log.flush()
        try:
            inst.proc = subprocess.Popen(inst.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=str(inst.data_dir), start_new_session=True)
        except OSError as e:
            raise ProviderError(f"cannot start the app command '{inst.argv[0]}': {e.strerror}",
                                "check app.command in sculpt.yaml", retryable=False) from None
    finally:
        log.close()
    inst.started = time.monotonic()
    inst.healthy = False
    inst.stopping = False
    try:
        enforcer.attach(inst.proc.pid, inst.uid, inst.limits)
    except ProviderError:
        stop(inst, enforcer)
        raise


def stop(inst: InstanceProcess, enforcer: Enforcer | None = None, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the instance's process group, SIGKILL it after ``grace_s``, release its group."""
    inst.stopping = True
    inst.healthy = False
    p = inst.proc
    if p is not None and p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    if p is not None and not (isinstance(p, Adopted) and _pid_taken_by_another(p)):
        # reap stragglers the app may have forked into its group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
    if enforcer is not None:
        enforcer.release(inst.uid)


def _pid_taken_by_another(p: Adopted) -> bool:
    """The adopted pid now names a different process (reused): never signal its group."""
    created = procs.create_time(p.pid)
    return created is not None and p.created is not None and abs(created - p.created) > procs.CREATE_TIME_SLACK_S
