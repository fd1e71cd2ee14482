"""Talk to a stack's local agent: the API the engine, the migration orchestrator and the sculptor use.

``AgentClient(state_dir, stack)`` sends one JSON-lines request per call over the agent's unix socket and
turns an error reply back into the same ``SculptError`` subclass the agent raised (so a caller sees
``ProviderError("... To fix: ...")`` exactly as if the call had been local). This API is stable:

=====================================  ==================================================================
``ping() -> dict``                     ``{"pid", "stack", "protocol", "live_resize", "enforcement"}``
``apply(fleet, timeout_s) -> dict``    reconcile to ``fleet`` (see ``Agent.apply``) and wait until every
                                       slot is healthy; returns ``status()``; ``ProviderError`` on failure
``status() -> dict``                   ``{"stack", "agent_pid", "live_resize", "enforcement",
                                       "lb": {"address"}, "lb_pid", "paused_by", "fleet": {"name", "slots"},
                                       "instances": [{"id", "uid", "shape", "region", "colour", "weight",
                                       "healthy", "pid", "address", "cpu_limit", "mem_limit_mb",
                                       "enforcement", "restarts", "data_dir", "log", "health_path",
                                       "adopted", "app_current"}]}``
``pause(auto_resume_s, owner_pid)``    hold new requests at the LB; ``auto_resume_s`` is the lease and
                                       ``owner_pid`` the controller: past the lease, or once the owner is
                                       dead, the agent runs the recovery (``paused_by`` in ``stats()``)
``resume()``                           release held requests
``resize(slot_id, shape) -> dict``     live resize (cgroups) or ``ProviderError`` "in-place resize needs
                                       writable cgroups. To fix: use --strategy blue-green"
``set_weights({slot_id: w}) -> dict``  change LB weights of existing slots; returns ``status()``
``stats() -> dict``                    the LB's ``stats()``
``shutdown(timeout_s)``                stop every process of the stack (agent, LB process, instances),
                                       even with the agent dead or hung (``teardown.stop_stack``)
=====================================  ==================================================================

``ensure_agent(state_dir, stack)`` starts the agent (detached, its own session, logging to
``agents/<stack>.log``) unless one already answers — or waits for the one being started (by the LB
process that restarts a dead agent, say) — and returns a client for it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from sculpt.domain import errors as _errors
from sculpt.domain.catalog import Shape
from sculpt.domain.errors import ProviderError, SculptError
from sculpt.domain.fleet import Fleet
from sculpt.providers.local import procs
from sculpt.providers.local.procs import AgentPaths, agent_command

__all__ = ["AgentClient", "agent_command", "ensure_agent"]

DEFAULT_TIMEOUT_S = 30.0
AGENT_START_TIMEOUT_S = 20.0
AGENT_RESPAWN_WAIT_S = 5.0  # how long a call waits for the agent the LB process is restarting


def _raise_remote(err: dict[str, Any]) -> None:
    cls = getattr(_errors, str(err.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, SculptError)):
        cls = ProviderError
    msg, fix = str(err.get("message", "agent error")), err.get("fix")
    if issubclass(cls, ProviderError):
        raise cls(msg, fix, retryable=bool(err.get("retryable", True)))
    raise cls(msg, fix)


class AgentClient:
    """A connection-per-call client of the agent of ``stack`` in ``state_dir``."""

    def __init__(self, state_dir: str | Path, stack: str) -> None:
        self.paths = AgentPaths(Path(state_dir).resolve(), stack)
        self.stack = stack

    # -- transport ----------------------------------------------------------------------------------------
    def call(self, op: str, wait_s: float = DEFAULT_TIMEOUT_S, **args: Any) -> Any:
        """Send one request and return its ``result`` (or raise the agent's error); ``wait_s`` bounds the wait."""
        s = self._connect(wait_s)
        try:
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

    def _connect(self, wait_s: float) -> socket.socket:
        """A connection to the agent. While the stack's LB process runs and no ``down`` is in progress, an
        agent that is not there is being restarted by it: wait for that one (a few tenths of a second)."""
        deadline = time.monotonic() + min(wait_s, AGENT_RESPAWN_WAIT_S)
        respawning: bool | None = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(wait_s)
            try:
                s.connect(str(self.paths.sock))
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
            if respawning is None:
                respawning = self._respawn_expected()
            if not respawning or time.monotonic() >= deadline:
                raise ProviderError(f"no agent is running for stack '{self.stack}'",
                                    "run `sculpt up` (it starts the agent)")
            time.sleep(0.02)

    def _respawn_expected(self) -> bool:
        from sculpt.providers.local.teardown import down_in_progress

        lb = procs.load_state(self.paths).get("lb")
        return procs.alive(lb) and not down_in_progress(self.paths)

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

    def pause(self, auto_resume_s: float | None = None, owner_pid: int | None = None) -> None:
        """Hold new requests at the LB (returns once in effect).

        ``auto_resume_s`` is the lease: how long the caller may keep it paused. ``owner_pid`` is the
        caller's pid (``os.getpid()``): once it is dead, or the lease is over (then the agent SIGKILLs the
        owner), the agent runs ``python -m sculpt.migrate.recovery``, which finishes or undoes the handover
        and resumes. The LB resumes by itself only as a last resort, well past the lease."""
        self.call("pause", wait_s=10.0, auto_resume_s=auto_resume_s, owner_pid=owner_pid)

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
        """Stop every process of the stack — agent, LB process, instances — even when the agent is dead or
        hung; returns once they have gone. False if nothing was running; ``ProviderError`` (one line) if a
        process could not be stopped."""
        from sculpt.providers.local.teardown import stop_stack

        return stop_stack(self.paths, timeout_s)

    def owned_processes(self) -> list[dict[str, Any]]:
        """The stack's recorded LB and instance processes that still run (whether or not an agent does)."""
        from sculpt.providers.local.teardown import recorded

        return recorded(self.paths)


def ensure_agent(state_dir: str | Path, stack: str, timeout_s: float = AGENT_START_TIMEOUT_S) -> AgentClient:
    """Return a client of the stack's agent, starting the agent (detached) if none answers.

    An agent that is starting already (the LB process restarts a dead one; another command started one)
    is waited for: ours then exits at once ("already runs") and the other one answers."""
    from sculpt.providers.local.instances import tail

    client = AgentClient(state_dir, stack)
    if client.running():
        return client
    paths = client.paths
    deadline = time.monotonic() + timeout_s
    proc = None
    exited = 0.0
    if procs.agent_alive(paths) is None:
        proc = procs.spawn_detached(agent_command(paths.state_dir, stack), paths.log, cwd=paths.state_dir,
                                    banner=f"starting agent for '{stack}'")
    while True:
        if client.running():
            return client
        if proc is not None and proc.poll() is not None and procs.agent_alive(paths) is None:
            exited = exited or time.monotonic()
            if time.monotonic() - exited < 2.0:  # ours lost the flock to one that is writing its pid file
                time.sleep(0.02)
                continue
            raise ProviderError(f"the agent for stack '{stack}' exited at once (code {proc.returncode}): "
                                f"{tail(paths.log, 2)}", f"see {paths.log}")
        if proc is None and procs.agent_alive(paths) is None:  # the one we waited for died: start one
            proc = procs.spawn_detached(agent_command(paths.state_dir, stack), paths.log, cwd=paths.state_dir,
                                        banner=f"starting agent for '{stack}'")
        if time.monotonic() > deadline:
            raise ProviderError(f"the agent for stack '{stack}' did not start within {timeout_s:g}s",
                                f"see {paths.log}")
        time.sleep(0.02)
