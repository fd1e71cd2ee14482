"""The load balancer of a stack as its own process, so that an agent's death is not an outage.

Why it exists: the agent may die (``kill -9``, a bug, the OOM killer) or hang; requests must keep flowing.
So the ``LoadBalancer`` runs in a small detached process of its own (its own session), started by the agent
with the listening socket already bound (the agent reports a taken port), and it outlives the agent. It

* serves the stack's stable address exactly as before (same class, same routing, health checks, pause);
* answers a JSON-lines control socket ``agents/<stack>.lb.sock`` (ops below) that the agent drives through
  :class:`LBClient` (the methods it used on the in-process LB);
* restarts a dead agent — at once when the agent's ``attach`` connection closes, else when its pid file's
  process is gone — with the same command ``ensure_agent`` uses (the agent's ``flock`` makes a second one
  refuse), unless a ``down`` is in progress (the ``agents/<stack>.down`` marker, or a ``down`` request).
  The new agent adopts this process and the instances.

Pause lease: ``pause`` takes the lease (``auto_resume_s``) and the owner's pid; both show as ``paused_by``
in ``stats``. The agent's supervisor acts on them (runs recovery when the owner is dead or the lease is
over); this process only keeps a last-resort auto-resume ``LAST_RESORT_S`` past the lease, so held requests
are never released by the clock onto an instance a handover left read-only while recovery can still run.

Control protocol (one JSON object per line each way, as the agent's)::

    -> {"op": "ping"}                      <- {"ok": true, "result": {"pid", "create_time", "address", "port"}}
    -> {"op": "set_backends", "backends": [{"id", "host", "port", "weight", "health_path"}]}
    -> {"op": "pause", "auto_resume_s": 10, "owner_pid": 123}     -> {"op": "resume"}
    -> {"op": "stats"} | {"op": "wait_idle", "backend_id", "timeout_s"} | {"op": "check", "backend_id"}
    -> {"op": "in_flight", "backend_id"} | {"op": "owner", "key"} | {"op": "health"}
    -> {"op": "configure", "routing", "hash_key", "pause_max_ms", "health_path"}
    -> {"op": "attach", "pid"}             the agent's connection, held open while it lives
    -> {"op": "down"}                      stop restarting the agent (a shutdown is in progress)
    -> {"op": "stop"}                      stop serving and exit
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sculpt.domain.errors import ProviderError, SculptError
from sculpt.providers.local import procs
from sculpt.providers.local.lb import Backend, LoadBalancer
from sculpt.providers.local.procs import AgentPaths

log = logging.getLogger("sculpt.lbproc")

LAST_RESORT_S = 30.0  # the LB resumes by itself only this long after a pause's lease is over
WATCH_EVERY_S = 0.1
RESPAWN_BACKOFF_S = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
STABLE_AGENT_S = 10.0  # an agent that stayed this long resets the respawn backoff


def backend_json(b: Backend) -> dict[str, Any]:
    return {"id": b.id, "host": b.host, "port": b.port, "weight": b.weight, "health_path": b.health_path}


def backend_of(d: dict[str, Any]) -> Backend:
    return Backend(str(d["id"]), str(d["host"]), int(d["port"]), int(d.get("weight", 100)),
                   str(d["health_path"]) if d.get("health_path") else None)


class LBServer:
    """One stack's LB process: the proxy, its control socket, and the agent watcher."""

    def __init__(self, paths: AgentPaths, lb: LoadBalancer, *, respawn: bool = True, listen_fd: int = -1) -> None:
        self.paths = paths
        self.lb = lb
        self.listen_fd = listen_fd
        self.respawn = respawn
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._down = False
        self._attached: dict[int, int] = {}  # connection id -> agent pid
        self._lock = threading.Lock()
        self._child: Any = None  # the agent this process last started
        self._spawns = 0
        self._next_spawn = 0.0
        self._agent_since = 0.0
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._sock_ino = 0

    # -- control socket -----------------------------------------------------------------------------------
    def serve(self) -> None:
        sock = self.paths.lb_sock
        sock.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()  # a dead LB's socket (the agent starts one LB process at a time)
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                conn = id(self)
                try:
                    for raw in self.rfile:
                        line = raw.strip()
                        if not line:
                            continue
                        try:
                            req = json.loads(line)
                            if req.get("op") == "listener" and server.listen_fd >= 0:
                                # a copy of the listening socket for the agent: while it holds one, the
                                # port keeps queueing connections should this process die
                                ok = json.dumps({"ok": True, "result": {"fd": True}}) + "\n"
                                socket.send_fds(self.request, [ok.encode()], [server.listen_fd])
                                continue
                            if req.get("op") == "attach":
                                with server._lock:
                                    server._attached[conn] = int(req.get("pid") or 0)
                                    server._agent_since = time.monotonic()
                            result = server.dispatch(req)
                            resp: dict[str, Any] = {"ok": True, "result": result}
                        except Exception as e:  # noqa: BLE001 - every failure goes back to the caller
                            resp = {"ok": False, "error": _error_json(e)}
                        self.wfile.write((json.dumps(resp, default=str) + "\n").encode())
                        self.wfile.flush()
                except OSError:
                    pass
                finally:
                    with server._lock:
                        gone = server._attached.pop(conn, None)
                    if gone is not None:
                        log.info("the agent (pid %s) closed its connection", gone)
                        server._wake.set()

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        self._server = Server(str(sock), Handler)
        os.chmod(sock, 0o600)
        self._sock_ino = sock.stat().st_ino
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="control",
                         daemon=True).start()

    def dispatch(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        lb = self.lb
        if req.get("pid") is not None and op in ("down", "stop") and int(req["pid"]) != os.getpid():
            raise ProviderError(f"this LB process is pid {os.getpid()}, not {req['pid']}", None, retryable=False)
        if op == "ping" or op == "attach":
            return {"pid": os.getpid(), "create_time": procs.create_time(os.getpid()),
                    "address": f"{lb.address[0]}:{lb.address[1]}", "port": lb.address[1], "stack": self.paths.stack}
        if op == "set_backends":
            lb.set_backends([backend_of(b) for b in req.get("backends") or []])
            return True
        if op == "pause":
            lease = req.get("auto_resume_s")
            owner = req.get("owner_pid")
            lease_s = float(lease) if lease is not None else None
            lb.pause(auto_resume_s=lease_s + LAST_RESORT_S if lease_s is not None else None,
                     owner_pid=int(owner) if owner else None, lease_s=lease_s)
            return {"paused": True, "paused_by": lb.stats()["paused_by"]}
        if op == "resume":
            lb.resume()
            return {"paused": False}
        if op == "stats":
            return lb.stats()
        if op == "wait_idle":
            return lb.wait_idle(str(req["backend_id"]), float(req.get("timeout_s", 5.0)))
        if op == "check":
            return lb.check(str(req["backend_id"]))
        if op == "in_flight":
            bid = req.get("backend_id")
            return lb.in_flight(str(bid) if bid is not None else None)
        if op == "owner":
            return lb.owner(str(req["key"]))
        if op == "health":
            return lb.health()
        if op == "configure":
            lb.configure(routing=req.get("routing"), hash_key=req.get("hash_key"),
                         pause_max_ms=req.get("pause_max_ms"), health_path=req.get("health_path"))
            return True
        if op == "down":
            self._down = True
            return {"down": True}
        if op == "stop":
            self._down = True
            self._stop.set()
            return {"stopping": True, "pid": os.getpid()}
        raise ProviderError(f"unknown LB request '{op}'", "upgrade sculpt so the agent and its LB match",
                            retryable=False)

    # -- the agent watcher --------------------------------------------------------------------------------
    def _agent_running(self) -> bool:
        with self._lock:
            if self._attached:
                return True
        child = self._child
        if child is not None and child.poll() is None:
            return True  # the one we started is still starting up
        return procs.agent_alive(self.paths) is not None

    def watch_once(self) -> None:
        """Restart the agent if it is gone (and no ``down`` is in progress)."""
        from sculpt.providers.local.teardown import down_in_progress

        if not self.respawn or self._down or self._stop.is_set() or down_in_progress(self.paths):
            return
        if not self.paths.state_dir.is_dir():  # the stack's state is gone (deleted): nothing to serve for
            log.warning("the state dir %s is gone: stopping", self.paths.state_dir)
            self._stop.set()
            return
        now = time.monotonic()
        if self._agent_running():
            with self._lock:
                attached = bool(self._attached)
            if attached and self._spawns and now - self._agent_since > STABLE_AGENT_S:
                self._spawns = 0
            return
        if now < self._next_spawn:
            return
        log.warning("the agent of stack '%s' is not running: starting one", self.paths.stack)
        try:
            self._child = procs.spawn_detached(procs.agent_command(self.paths.state_dir, self.paths.stack),
                                               self.paths.log, cwd=self.paths.state_dir,
                                               banner=f"the LB process (pid {os.getpid()}) restarts the agent")
        except OSError as e:
            log.error("cannot start the agent: %s", e)
        self._spawns += 1
        self._next_spawn = now + RESPAWN_BACKOFF_S[min(self._spawns, len(RESPAWN_BACKOFF_S) - 1)]

    def run(self) -> None:
        self.serve()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        log.info("LB process for stack '%s' (pid %d) serving %s:%d", self.paths.stack, os.getpid(),
                 *self.lb.address)
        try:
            while not self._stop.is_set():
                try:
                    self.watch_once()
                except Exception:  # noqa: BLE001 - the watcher must survive anything
                    log.exception("watching the agent failed")
                self._wake.wait(WATCH_EVERY_S)
                self._wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if self.paths.lb_sock.stat().st_ino == self._sock_ino:  # not a newer LB process's socket
                self.paths.lb_sock.unlink()
        self.lb.stop()
        log.info("LB process for stack '%s' stopped", self.paths.stack)


def _error_json(e: BaseException) -> dict[str, Any]:
    if isinstance(e, SculptError):
        return {"type": type(e).__name__, "message": e.message, "fix": e.fix,
                "retryable": bool(getattr(e, "retryable", False))}
    return {"type": "ProviderError", "message": f"LB error: {type(e).__name__}: {e}",
            "fix": "see the LB log (agents/<stack>.lb.log in the state dir)", "retryable": True}


class LBClient:
    """The agent's handle on its LB process: the ``LoadBalancer`` methods it uses, over the control socket."""

    def __init__(self, paths: AgentPaths, address: tuple[str, int], pid: int, create_time: float | None) -> None:
        self.paths = paths
        self.address = address
        self.pid = pid
        self.create_time = create_time

    def alive(self) -> bool:
        return procs.same_process(self.pid, self.create_time)

    def record(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "port": self.address[1],
                "host": self.address[0]}

    def call(self, op: str, wait_s: float = 10.0, **args: Any) -> Any:
        return lb_call(self.paths, op, wait_s, **args)

    def set_backends(self, backends: list[Backend]) -> None:
        self.call("set_backends", backends=[backend_json(b) for b in backends])

    def pause(self, auto_resume_s: float | None = None, *, owner_pid: int | None = None) -> dict[str, Any]:
        """Pause with a lease (``auto_resume_s``) held by ``owner_pid``; returns ``paused_by``."""
        got = self.call("pause", auto_resume_s=auto_resume_s, owner_pid=owner_pid)
        return dict(got.get("paused_by") or {})

    def resume(self) -> None:
        self.call("resume")

    def stats(self) -> dict[str, Any]:
        return dict(self.call("stats"))

    def wait_idle(self, backend_id: str, timeout_s: float) -> bool:
        return bool(self.call("wait_idle", wait_s=timeout_s + 10.0, backend_id=backend_id, timeout_s=timeout_s))

    def check(self, backend_id: str) -> bool | None:
        got = self.call("check", wait_s=15.0, backend_id=backend_id)
        return None if got is None else bool(got)

    def in_flight(self, backend_id: str | None = None) -> int:
        return int(self.call("in_flight", backend_id=backend_id))

    def owner(self, key: str) -> str | None:
        got = self.call("owner", key=key)
        return None if got is None else str(got)

    def health(self) -> dict[str, bool]:
        return {str(k): bool(v) for k, v in dict(self.call("health")).items()}

    def configure(self, **kw: Any) -> None:
        self.call("configure", **kw)

    def down(self) -> None:
        self.call("down", wait_s=5.0, pid=self.pid)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Ask the process to exit and wait until it has (SIGTERM, then SIGKILL, when it does not answer, or a
        newer LB process owns the control socket). False if it survives."""
        try:
            self.call("stop", wait_s=5.0, pid=self.pid)
        except ProviderError:
            return procs.terminate([self.record()], timeout_s, group=False) == []
        if procs.wait_gone([self.record()], timeout_s) == []:
            return True
        return procs.terminate([self.record()], 0.5, group=False) == []

    def listener(self) -> socket.socket:
        """A copy of the LB process's listening socket (SCM_RIGHTS)."""
        s = _connect(self.paths, 5.0)
        try:
            s.sendall(b'{"op": "listener"}\n')
            msg, fds, _, _ = socket.recv_fds(s, 65536, 1)
        except OSError as e:
            raise ProviderError(f"cannot get the LB's listening socket ({e})", None) from None
        finally:
            s.close()
        if not fds or not msg.startswith(b'{"ok": true'):
            for fd in fds:
                os.close(fd)
            raise ProviderError("the LB process did not hand over its listening socket", None)
        return socket.socket(fileno=fds[0])

    def attach(self, pid: int) -> socket.socket:
        """Open the connection the LB process watches: it restarts the agent when it closes unasked."""
        s = _connect(self.paths, 5.0)
        try:
            s.sendall((json.dumps({"op": "attach", "pid": pid}) + "\n").encode())
            _read_reply(s, self.paths, "attach")
        except BaseException:
            s.close()
            raise
        s.settimeout(None)
        return s


def _connect(paths: AgentPaths, wait_s: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(wait_s)
    try:
        s.connect(str(paths.lb_sock))
    except OSError:
        s.close()
        raise ProviderError(f"the load balancer process of stack '{paths.stack}' is not answering",
                            f"see its log {paths.lb_log}") from None
    return s


def _read_reply(s: socket.socket, paths: AgentPaths, op: str) -> Any:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise ProviderError(f"the load balancer process of stack '{paths.stack}' closed the connection "
                                f"during '{op}'", f"see its log {paths.lb_log}")
        buf += chunk
    resp = json.loads(buf)
    if not resp.get("ok"):
        from sculpt.providers.local.client import _raise_remote

        _raise_remote(resp.get("error") or {})
    return resp.get("result")


def lb_call(paths: AgentPaths, op: str, wait_s: float = 10.0, **args: Any) -> Any:
    """One request to the stack's LB process (``ProviderError`` when it does not answer)."""
    s = _connect(paths, wait_s)
    try:
        s.sendall((json.dumps({"op": op, **args}, default=str) + "\n").encode())
        return _read_reply(s, paths, op)
    except TimeoutError:
        raise ProviderError(f"the load balancer process of stack '{paths.stack}' did not answer '{op}' within "
                            f"{wait_s:g}s", f"see its log {paths.lb_log}") from None
    except OSError as e:
        raise ProviderError(f"the load balancer process of stack '{paths.stack}' dropped the connection during "
                            f"'{op}' ({e.strerror or e})", f"see its log {paths.lb_log}") from None
    finally:
        s.close()


def command(paths: AgentPaths, fd: int, *, routing: str, hash_key: str, pause_max_ms: int,
            health_path: str, backends: list[Backend] | None = None,
            pause: dict[str, Any] | None = None) -> list[str]:
    """The argv the agent starts an LB process with (``fd``: the listening socket it passes down;
    ``backends`` and ``pause`` are in force before the first request is routed)."""
    init = {"backends": [backend_json(b) for b in backends or []], "pause": pause}
    return [sys.executable, "-m", "sculpt.providers.local.lbproc", "--state-dir", str(paths.state_dir),
            "--stack", paths.stack, "--fd", str(fd), "--routing", routing, "--hash-key", hash_key,
            "--pause-max-ms", str(pause_max_ms), "--health-path", health_path, "--init", json.dumps(init)]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sculpt.providers.local.lbproc",
                                description="a sculpt stack's load balancer process (started by its agent)")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--stack", required=True)
    p.add_argument("--fd", type=int, required=True, help="an inherited listening TCP socket")
    p.add_argument("--routing", choices=("weighted", "hash"), default="weighted")
    p.add_argument("--hash-key", default="key")
    p.add_argument("--pause-max-ms", type=int, default=2000)
    p.add_argument("--health-path", default="/healthz")
    p.add_argument("--no-respawn", action="store_true", help="do not restart a dead agent")
    p.add_argument("--init", default="{}", help='JSON {"backends": [...], "pause": {"lease_s", "pid"}}')
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    paths = AgentPaths(Path(a.state_dir).resolve(), a.stack)
    sock = socket.socket(fileno=a.fd)
    init = json.loads(a.init)
    lb = LoadBalancer("127.0.0.1", 0, routing=a.routing, hash_key=a.hash_key, pause_max_ms=a.pause_max_ms,
                      health_path=a.health_path)
    pause = init.get("pause")
    try:
        lb.set_backends([backend_of(b) for b in init.get("backends") or []])
        if pause:  # a handover was holding requests when the previous LB process died: hold on
            lb.pause(owner_pid=pause.get("pid"), lease_s=pause.get("lease_s"))
        lb.start(sock)
    except (OSError, SculptError) as e:
        print(f"error: the load balancer cannot serve: {e}", file=sys.stderr)
        return 1
    if pause and pause.get("lease_s") is not None:  # the last-resort auto-resume, as for any pause
        lb.pause(auto_resume_s=float(pause["lease_s"]) + LAST_RESORT_S, owner_pid=pause.get("pid"),
                 lease_s=pause.get("lease_s"))
    LBServer(paths, lb, respawn=not a.no_respawn, listen_fd=a.fd).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
