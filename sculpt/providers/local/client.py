"""Talk to a stack's local agent: the API the engine, the migration orchestrator and the sculptor use.

``AgentClient(state_dir, stack)`` sends one JSON-lines request per call over the agent's unix socket and
turns an error reply back into the same ``SculptError`` subclass the agent raised (so a caller sees
``ProviderError("... To fix: ...")`` exactly as if the call had been local). This API is stable:

=====================================  ==================================================================
``ping() -> dict``                     ``{"pid", "stack", "protocol", "live_resize", "enforcement"}``
``apply(fleet, timeout_s) -> dict``    reconcile to ``fleet`` (see ``Agent.apply``) and wait until every
                                       slot is healthy; returns ``status()``; ``ProviderError`` on failure
``status() -> dict``                   ``{"stack", "agent_pid", "live_resize", "enforcement",
                                       "lb": {"address"}, "instances": [{"id", "uid", "shape", "region",
                                       "colour", "weight", "healthy", "pid", "address", "cpu_limit",
                                       "mem_limit_mb", "enforcement", "restarts", "data_dir", "log"}]}``
``pause()`` / ``resume()``             hold new requests at the LB / release them
``resize(slot_id, shape) -> dict``     live resize (cgroups) or ``ProviderError`` "in-place resize needs
                                       writable cgroups. To fix: use --strategy blue-green"
``set_weights({slot_id: w}) -> dict``  change LB weights of existing slots; returns ``status()``
``stats() -> dict``                    the LB's ``stats()``
``shutdown(timeout_s)``                stop every instance and the LB; returns when the agent has exited
=====================================  ==================================================================

``ensure_agent(state_dir, stack)`` starts the agent (detached, its own session, logging to
``agents/<stack>.log``) unless one already answers, and returns a client for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sculpt.domain import errors as _errors
from sculpt.domain.catalog import Shape
from sculpt.domain.errors import ProviderError, SculptError
from sculpt.domain.fleet import Fleet
from sculpt.providers.local.agent import AgentPaths, read_pid
from sculpt.providers.local.instances import tail

DEFAULT_TIMEOUT_S = 30.0
AGENT_START_TIMEOUT_S = 20.0


def _raise_remote(err: dict[str, Any]) -> None:
    cls = getattr(_errors, str(err.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, SculptError)):
        cls = ProviderError
    msg, fix = str(err.get("message", "agent error")), err.get("fix")
    if issubclass(cls, ProviderError):
        raise cls(msg, fix, retryable=bool(err.get("retryable", True)))
    raise cls(msg, fix)


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class AgentClient:
    """A connection-per-call client of the agent of ``stack`` in ``state_dir``."""

    def __init__(self, state_dir: str | Path, stack: str) -> None:
        self.paths = AgentPaths(Path(state_dir).resolve(), stack)
        self.stack = stack

    # -- transport ----------------------------------------------------------------------------------------
    def call(self, op: str, wait_s: float = DEFAULT_TIMEOUT_S, **args: Any) -> Any:
        """Send one request and return its ``result`` (or raise the agent's error); ``wait_s`` bounds the wait."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(wait_s)
        try:
            try:
                s.connect(str(self.paths.sock))
            except (FileNotFoundError, ConnectionRefusedError):
                raise ProviderError(f"no agent is running for stack '{self.stack}'",
                                    "run `sculpt up` (it starts the agent)") from None
            s.sendall((json.dumps({"op": op, **args}, default=str) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise ProviderError(f"the agent of stack '{self.stack}' closed the connection during '{op}'",
                                        f"see its log {self.paths.log}")
                buf += chunk
        except TimeoutError:
            raise ProviderError(f"the agent of stack '{self.stack}' did not answer '{op}' within {wait_s:g}s",
                                f"see its log {self.paths.log}") from None
        except OSError as e:  # reset, broken pipe: the agent died mid-call
            raise ProviderError(f"the agent of stack '{self.stack}' dropped the connection during '{op}' "
                                f"({e.strerror or e})", f"see its log {self.paths.log}") from None
        finally:
            s.close()
        resp = json.loads(buf)
        if not resp.get("ok"):
            _raise_remote(resp.get("error") or {})
        return resp.get("result")

    def running(self) -> bool:
        """True when an agent answers on the socket."""
        try:
            self.ping(timeout_s=2.0)
        except ProviderError:
            return False
        return True

    # -- the API ------------------------------------------------------------------------------------------
    def ping(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return dict(self.call("ping", wait_s=timeout_s))

    def apply(self, fleet: Fleet, timeout_s: float = DEFAULT_TIMEOUT_S,
              shapes: dict[str, Shape] | None = None) -> dict[str, Any]:
        """Reconcile to ``fleet`` and wait (up to ``timeout_s``) until every slot is healthy.

        ``shapes`` resolves shape names the agent's local catalog does not know (optional).
        """
        payload = {k: v.model_dump(mode="json") for k, v in (shapes or {}).items()}
        return dict(self.call("apply", wait_s=timeout_s + 30.0, fleet=fleet.model_dump(mode="json"),
                              timeout_s=timeout_s, shapes=payload))

    def status(self) -> dict[str, Any]:
        return dict(self.call("status", wait_s=10.0))

    def pause(self, auto_resume_s: float | None = None) -> None:
        """Hold new requests at the LB (returns once in effect); ``auto_resume_s`` is a safety net that
        resumes by itself should the caller die while paused."""
        self.call("pause", wait_s=10.0, auto_resume_s=auto_resume_s)

    def resume(self) -> None:
        self.call("resume", wait_s=10.0)

    def resize(self, slot_id: str, shape: Shape | str) -> dict[str, Any]:
        """Change a running slot's CPU quota and memory limit live (no restart)."""
        payload: Any = shape.model_dump(mode="json") if isinstance(shape, Shape) else shape
        return dict(self.call("resize", wait_s=15.0, slot_id=slot_id, shape=payload))

    def set_weights(self, weights: dict[str, int]) -> dict[str, Any]:
        return dict(self.call("set_weights", wait_s=15.0, weights=weights))

    def stats(self) -> dict[str, Any]:
        return dict(self.call("stats", wait_s=10.0))

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Ask the agent to stop everything; wait until its process has gone. False if none was running."""
        pid = read_pid(self.paths)
        try:
            res = self.call("shutdown", wait_s=10.0)
            pid = int(res.get("pid", pid or 0)) or pid
        except ProviderError:
            if pid is None or not _pid_alive(pid):
                return False
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid and _pid_alive(pid):
            if time.monotonic() > deadline:
                raise ProviderError(f"the agent of stack '{self.stack}' (pid {pid}) did not stop within "
                                    f"{timeout_s:g}s", f"kill {pid}; its log is {self.paths.log}")
            time.sleep(0.05)
        return True


def _reap(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(Exception):
        proc.wait()


def agent_command(state_dir: Path, stack: str) -> list[str]:
    return [sys.executable, "-m", "sculpt.providers.local.agent", "--state-dir", str(state_dir), "--stack", stack]


def ensure_agent(state_dir: str | Path, stack: str, timeout_s: float = AGENT_START_TIMEOUT_S) -> AgentClient:
    """Return a client of the stack's agent, starting the agent (detached) if none answers."""
    client = AgentClient(state_dir, stack)
    if client.running():
        return client
    paths = client.paths
    paths.dir.mkdir(parents=True, exist_ok=True)
    with open(paths.log, "ab") as logf:
        logf.write(f"--- sculpt: starting agent for '{stack}' at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                   .encode())
        logf.flush()
        proc = subprocess.Popen(agent_command(paths.state_dir, stack), stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                cwd=str(paths.state_dir))
    # the agent outlives us; reap it if it exits while we still run (no zombie, no ResourceWarning)
    threading.Thread(target=_reap, args=(proc,), daemon=True, name=f"reap-agent-{proc.pid}").start()
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            if client.running():  # another caller started it first
                return client
            raise ProviderError(f"the agent for stack '{stack}' exited at once (code {proc.returncode}): "
                                f"{tail(paths.log, 2)}", f"see {paths.log}")
        if paths.sock.exists() and client.running():
            return client
        if time.monotonic() > deadline:
            raise ProviderError(f"the agent for stack '{stack}' did not start within {timeout_s:g}s",
                                f"see {paths.log}")
        time.sleep(0.02)
