"""The local supervisor agent: owns one stack's instances and load balancer, and outlives ``sculpt up``.

Why a separate process: instances must keep running (and be restarted when they crash) after the command
that started them exits. ``sculpt up`` starts the agent detached (``ensure_agent`` in ``client.py``);
``sculpt agent --stack NAME`` runs it in the foreground; ``sculpt down`` asks it to shut down.

What it does:

* hosts the ``LoadBalancer`` on one stable 127.0.0.1 port (spec ``lb.port``; 0 picks a port once and keeps
  it in ``agents/<stack>.json`` across agent restarts and stack versions);
* reconciles to the fleet it is given (``apply``; see ``Agent.apply`` for the exact semantics);
* restarts crashed instances with exponential backoff and counts restarts;
* answers JSON-lines requests on a unix socket (``agents/<stack>.sock``; a short path under the temp dir
  when the state dir is too deep for a unix socket path);
* on SIGTERM/SIGINT or a ``shutdown`` request stops every instance (process groups) and the LB, removes
  its cgroups, socket and pid file, and exits — leaving no process behind.

Only one agent per (state dir, stack): an exclusive ``flock`` on ``agents/<stack>.lock`` (released by the
kernel when the agent dies, so a crashed agent never blocks the next one).

Wire protocol (one JSON object per line each way)::

    -> {"op": "apply", "fleet": {...Fleet...}, "timeout_s": 30}
    <- {"ok": true, "result": {...status...}}
    <- {"ok": false, "error": {"type": "ProviderError", "message": "...", "fix": "...", "retryable": false}}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socketserver
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sculpt.domain.catalog import Shape
from sculpt.domain.errors import NotFoundError, ProviderError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec
from sculpt.providers.local import instances as inst_mod
from sculpt.providers.local.cgroups import Enforcer, Limits, Mode, make_enforcer
from sculpt.providers.local.instances import Instance

log = logging.getLogger("sculpt.agent")

PROTOCOL = 1
SUPERVISE_EVERY_S = 0.25
HEALTH_EVERY_S = 0.5
RESTART_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
CRASH_LOOP_WINDOW_S = 10.0  # a crash sooner than this after a start counts towards the backoff
MAX_UNIX_PATH = 100


@dataclass(frozen=True)
class AgentPaths:
    """Where an agent keeps its files (all derived from the state dir and the stack name)."""

    state_dir: Path
    stack: str

    @property
    def dir(self) -> Path:
        return self.state_dir / "agents"

    @property
    def sock(self) -> Path:
        p = self.dir / f"{self.stack}.sock"
        if len(str(p).encode()) <= MAX_UNIX_PATH:
            return p
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"sculpt-{os.getuid()}" / f"{digest}-{self.stack}.sock"

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
    def state(self) -> Path:
        return self.dir / f"{self.stack}.json"

    @property
    def instances(self) -> Path:
        return self.state_dir / "instances" / self.stack


def read_pid(paths: AgentPaths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


_LOCAL_SHAPE = re.compile(r"^(?P<kind>[a-z]+)-(?P<cpu>\d+(?:\.\d+)?)c-(?P<mem>\d+)m$")


def parse_local_shape(name: str) -> Shape | None:
    """A local shape from its name (``std-0.5c-512m``: 0.5 cores, 512 MiB), for callers that send only names.

    Callers that know the catalog send full shapes (``shapes`` in ``apply``); this keeps the agent free of the
    catalog layer. ``None`` when the name is not of that form.

    >>> s = parse_local_shape("mem-2c-8192m"); (s.family, s.vcpu, s.memory_gib)
    ('local-mem', 2.0, 8.0)
    """
    m = _LOCAL_SHAPE.match(name)
    if m is None:
        return None
    return Shape(name=name, family=f"local-{m['kind']}", vcpu=float(m["cpu"]), memory_gib=int(m["mem"]) / 1024,
                 storage="ssd")


def _error_json(e: BaseException) -> dict[str, Any]:
    if isinstance(e, SculptError):
        return {"type": type(e).__name__, "message": e.message, "fix": e.fix, "retryable": e.retryable}
    return {"type": "ProviderError", "message": f"agent error: {type(e).__name__}: {e}", "fix":
            "see the agent log (agents/<stack>.log in the state dir)", "retryable": True}


class Agent:
    """The supervisor of one stack. Construct, then ``run()`` (blocks until shut down)."""

    def __init__(self, state_dir: str | Path, stack: str, *, mode: Mode | None = None) -> None:
        self.paths = AgentPaths(Path(state_dir).resolve(), stack)
        self.stack = stack
        self.enforcer: Enforcer = make_enforcer(stack, self.paths.state_dir, mode)
        self.instances: dict[str, Instance] = {}  # slot id -> the instance serving it
        self.fleet: Fleet | None = None
        self.lb: Any = None
        self.lb_address: tuple[str, int] | None = None
        self._lb_conf: tuple[Any, ...] | None = None
        self._gen: dict[str, int] = {}
        self._crashes: dict[str, int] = {}
        self._apply_lock = threading.Lock()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._lock_fd: int | None = None
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._last_probe: dict[str, float] = {}

    # -- life cycle ---------------------------------------------------------------------------------------
    def claim(self) -> None:
        """Become the only agent of this stack, or raise ``ProviderError`` naming the one that is."""
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = read_pid(self.paths)
            raise ProviderError(
                f"an agent for stack '{self.stack}' already runs" + (f" (pid {other})" if other else ""),
                "use it (`sculpt status`), or stop it with `sculpt down`", retryable=False) from None
        self._lock_fd = fd
        self.paths.pid.write_text(f"{os.getpid()}\n")

    def run(self, *, install_signals: bool = True) -> None:
        """Claim the stack, serve requests and supervise until shut down; always clean up."""
        self.claim()
        try:
            self._kill_leftovers()
            self.enforcer.cleanup()
            self._serve()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, lambda *_: self._stop.set())
            log.info("agent for stack '%s' (pid %d, %s) listening on %s", self.stack, os.getpid(),
                     self.enforcer.mode, self.paths.sock)
            sup = threading.Thread(target=self._supervise, name="supervise", daemon=True)
            sup.start()
            while not self._stop.wait(0.5):
                pass
        finally:
            self._shutdown()

    def _serve(self) -> None:
        sock = self.paths.sock
        sock.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()  # stale: we hold the stack's flock, so no live agent owns it
        agent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for raw in self.rfile:
                    line = raw.strip()
                    if not line:
                        continue
                    try:
                        req = json.loads(line)
                        result = agent.dispatch(req)
                        resp: dict[str, Any] = {"ok": True, "result": result}
                    except Exception as e:  # noqa: BLE001 - every failure goes back to the caller
                        if not isinstance(e, SculptError):
                            log.exception("request failed")
                        resp = {"ok": False, "error": _error_json(e)}
                    self.wfile.write((json.dumps(resp, default=str) + "\n").encode())
                    self.wfile.flush()

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        self._server = Server(str(sock), Handler)
        os.chmod(sock, 0o600)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve",
                         daemon=True).start()

    def _shutdown(self) -> None:
        # let an apply in progress notice the stop and undo what it started (bounded wait)
        got = self._apply_lock.acquire(timeout=60)
        log.info("shutting down: stopping %d instance(s)", len(self.instances))
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.paths.sock.unlink()
        with self._lock:
            insts = list(self.instances.values())
            self.instances.clear()
        _stop_all(insts, self.enforcer)
        if self.lb is not None:
            with contextlib.suppress(Exception):
                self.lb.stop()
            self.lb = None
        self.enforcer.cleanup()
        self._save_state()
        with contextlib.suppress(FileNotFoundError):
            self.paths.pid.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if got:
            self._apply_lock.release()
        log.info("agent for stack '%s' stopped", self.stack)

    def request_stop(self) -> None:
        self._stop.set()

    # -- persistent bits ----------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.paths.state.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        with self._lock:
            self._save_state_locked()

    def _save_state_locked(self) -> None:
        import psutil

        recs = []
        for i in list(self.instances.values()):
            if i.alive() and i.pid:
                with contextlib.suppress(psutil.Error):
                    recs.append({"uid": i.uid, "pid": i.pid, "create_time": psutil.Process(i.pid).create_time()})
        data = {"lb_port": self.lb_address[1] if self.lb_address else self._load_state().get("lb_port"),
                "instances": recs}
        tmp = self.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.paths.state)

    def _kill_leftovers(self) -> None:
        """Stop instances a previous agent of this stack left behind when it was killed outright."""
        import psutil

        killed = []
        for rec in self._load_state().get("instances", []):
            try:
                p = psutil.Process(int(rec["pid"]))
                if abs(p.create_time() - float(rec["create_time"])) > 0.01:
                    continue
                log.warning("stopping leftover instance %s (pid %d) of a previous agent", rec.get("uid"), p.pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                killed.append(p)
            except (psutil.Error, KeyError, ValueError, TypeError):
                continue
        # Wait until they are dead (their ports and data dirs free), not until reaped: they are not our
        # children, and reaping is up to whatever adopted them (init in a container may take seconds, or
        # never do it), so ``Process.wait`` would cost its whole timeout per instance.
        deadline = time.monotonic() + 5.0
        while (alive := [p for p in killed if not _dead(p)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        for p in alive:
            log.warning("leftover instance pid %d is still running after SIGKILL", p.pid)

    # -- requests -----------------------------------------------------------------------------------------
    def dispatch(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op == "ping":
            return {"pid": os.getpid(), "stack": self.stack, "protocol": PROTOCOL, **self.capabilities()}
        if op == "status":
            return self.status()
        if op == "apply":
            fleet = Fleet.model_validate(req["fleet"])
            shapes = {k: Shape.model_validate(v) for k, v in (req.get("shapes") or {}).items()}
            return self.apply(fleet, float(req.get("timeout_s", 30.0)), shapes)
        if op == "pause":
            auto = req.get("auto_resume_s")
            self._need_lb().pause(auto_resume_s=float(auto) if auto is not None else None)
            return {"paused": True}
        if op == "resume":
            self._need_lb().resume()
            return {"paused": False}
        if op == "resize":
            shape = Shape.model_validate(req["shape"]) if isinstance(req.get("shape"), dict) else \
                self._shape(str(req["shape"]), {})
            return self.resize(str(req["slot_id"]), shape)
        if op == "set_weights":
            return self.set_weights({str(k): int(v) for k, v in req["weights"].items()})
        if op == "stats":
            return self._need_lb().stats()
        if op == "shutdown":
            self._stop.set()
            return {"stopping": True, "pid": os.getpid()}
        raise ProviderError(f"unknown agent request '{op}'", "upgrade sculpt so client and agent match",
                            retryable=False)

    def capabilities(self) -> dict[str, Any]:
        return {"live_resize": self.enforcer.live_resize, "enforcement": self.enforcer.mode}

    def _need_lb(self) -> Any:
        if self.lb is None:
            raise ProviderError(f"stack '{self.stack}' has no load balancer yet", "run `sculpt up` first")
        return self.lb

    @staticmethod
    def _shape(name: str, extra: dict[str, Shape]) -> Shape:
        if name in extra:
            return extra[name]
        shape = parse_local_shape(name)
        if shape is None:
            raise NotFoundError(f"shape '{name}' is not a local shape",
                                "pick one listed by `sculpt catalog --provider local`")
        return shape

    def status(self) -> dict[str, Any]:
        """The ``instances`` block of ``sculpt status --json`` plus the LB and the agent."""
        with self._lock:
            insts = sorted(self.instances.values(), key=lambda i: i.slot.id)
            rows = []
            for i in insts:
                real = self.enforcer.read(i.uid)
                rows.append({
                    "id": i.slot.id, "uid": i.uid, "shape": i.shape.name, "region": i.slot.region,
                    "colour": i.slot.colour, "weight": i.slot.weight, "healthy": bool(i.healthy and i.alive()),
                    "pid": i.pid if i.alive() else None, "address": i.address(),
                    "cpu_limit": real["cpu"] if real["cpu"] is not None else i.limits.cpu,
                    "mem_limit_mb": real["mem_mb"] if real["mem_mb"] is not None else i.limits.mem_mb,
                    "enforcement": self.enforcer.mode, "restarts": i.restarts,
                    "data_dir": str(i.data_dir), "log": str(i.log_path),
                })
        lb = {"address": f"{self.lb_address[0]}:{self.lb_address[1]}" if self.lb_address else None}
        return {"stack": self.stack, "agent_pid": os.getpid(), **self.capabilities(), "lb": lb,
                "instances": rows}

    # -- reconcile ----------------------------------------------------------------------------------------
    def _uid(self, slot_id: str) -> str:
        n = self._gen.get(slot_id, -1) + 1
        self._gen[slot_id] = n
        return slot_id if n == 0 else f"{slot_id}#{n}"

    def apply(self, fleet: Fleet, timeout_s: float = 30.0, shapes: dict[str, Shape] | None = None) -> dict[str, Any]:
        """Reconcile the instances to ``fleet``; return ``status()`` once every slot is healthy.

        * new slot ids: start instances;
        * removed ids: take them out of the LB, let in-flight requests drain (``lb.drain_s``), stop them;
        * weight/colour/region changes: relabel and update the LB (region is only a label locally);
        * a shape change on an existing id: live resize where cgroups are writable; otherwise start a
          replacement (with a copy of the old data dir), wait until healthy, swap it in the LB, stop the old.

        Waits for every slot (weight 0 included, so a green slot is ready for traffic when this returns).
        On failure (app exits, not healthy within ``timeout_s``, LB port taken) the instances started by
        this call are stopped, the previous ones keep serving, and ``ProviderError`` says why.
        """
        extra = shapes or {}
        with self._apply_lock:
            desired = {s.id: s for s in fleet.slots}
            resolved = {sid: self._shape(s.shape, extra) for sid, s in desired.items()}
            self._ensure_lb(fleet.spec)
            started: list[Instance] = []
            replacing: dict[str, tuple[Instance, Instance]] = {}
            try:
                for sid, slot in desired.items():
                    self._check_running()
                    shape = resolved[sid]
                    cur = self.instances.get(sid)
                    if cur is None:
                        new = inst_mod.new_instance(self._uid(sid), slot, shape, fleet.spec.app, self.paths.instances)
                        started.append(new)
                        inst_mod.start(new, self.enforcer)
                        with self._lock:
                            self.instances[sid] = new
                    elif _app_changed(cur, fleet.spec):
                        new = self._replacement(cur, slot, shape, fleet.spec)
                        started.append(new)
                        replacing[sid] = (cur, new)
                        inst_mod.start(new, self.enforcer)
                    elif cur.shape.name != shape.name and self.enforcer.live_resize:
                        self.enforcer.resize(cur.uid, Limits.of(shape.vcpu, shape.memory_gib))
                        cur.shape, cur.limits, cur.slot = shape, Limits.of(shape.vcpu, shape.memory_gib), slot
                        log.info("resized %s live to %s", cur.uid, shape.name)
                    elif cur.shape.name != shape.name:
                        new = self._replacement(cur, slot, shape, fleet.spec)
                        started.append(new)
                        replacing[sid] = (cur, new)
                        inst_mod.start(new, self.enforcer)
                    else:
                        cur.slot = slot
                self._wait_healthy(started, timeout_s)
            except BaseException:
                with self._lock:
                    for new in started:
                        if self.instances.get(new.slot.id) is new:
                            del self.instances[new.slot.id]
                _stop_all(started, self.enforcer)
                self._sync_lb()
                self._save_state()
                raise
            with self._lock:
                for sid, (_old, new) in replacing.items():
                    self.instances[sid] = new
                removed = [self.instances.pop(sid) for sid in list(self.instances) if sid not in desired]
                self.fleet = fleet
            self._sync_lb()
            retired = removed + [old for old, _new in replacing.values()]
            self._drain(retired, fleet.spec.lb.drain_s)
            _stop_all(retired, self.enforcer)
            # A retired instance's data has been handed over (replacement, morph) or its slot is gone: remove
            # it, so a later instance that reuses the slot id never starts from stale state.
            for old in retired:
                shutil.rmtree(old.data_dir, ignore_errors=True)
            self._save_state()
            return self.status()

    def _check_running(self) -> None:
        if self._stop.is_set():
            raise ProviderError(f"the agent of stack '{self.stack}' is shutting down",
                                "run `sculpt up` again once it has stopped")

    def _replacement(self, cur: Instance, slot: Slot, shape: Shape, spec: FleetSpec) -> Instance:
        """A new instance for ``cur``'s slot, starting from a copy of ``cur``'s data dir."""
        new = inst_mod.new_instance(self._uid(slot.id), slot, shape, spec.app, self.paths.instances)
        if cur.data_dir.is_dir():
            shutil.copytree(cur.data_dir, new.data_dir, dirs_exist_ok=True)
        return new

    def _wait_healthy(self, insts: list[Instance], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(insts)
        while waiting:
            self._check_running()
            for i in list(waiting):
                if not i.alive():
                    raise ProviderError(i.failure(), f"check app.command in sculpt.yaml; full log: {i.log_path}",
                                        retryable=False)
                if inst_mod.probe_health(i.port, i.health_path, timeout_s=1.0):
                    i.healthy = i.ever_healthy = True
                    waiting.remove(i)
            if not waiting:
                return
            if time.monotonic() > deadline:
                i = waiting[0]
                raise ProviderError(f"instance {i.uid} is not healthy after {timeout_s:g}s ({i.health_path} on "
                                    f"{i.address()})" + (f": {inst_mod.tail(i.log_path)}" if inst_mod.tail(i.log_path) else ""),
                                    f"check app.health_path and the log {i.log_path}, or raise the timeout")
            time.sleep(0.05)

    def _drain(self, insts: list[Instance], drain_s: float) -> None:
        if self.lb is None:
            return
        for i in insts:
            with contextlib.suppress(Exception):
                self.lb.wait_idle(i.uid, drain_s)

    def _ensure_lb(self, spec: FleetSpec) -> None:
        """Start the LB (or restart it when its settings changed) on the stable port."""
        lbs = spec.lb
        conf = (lbs.port, lbs.routing, lbs.hash_key, lbs.pause_max_ms, spec.app.health_path)
        if self.lb is not None and self._lb_conf == conf:
            return
        from sculpt.providers.local.lb import LoadBalancer

        kept = self._load_state().get("lb_port")
        want = lbs.port or (self.lb_address[1] if self.lb_address else int(kept or 0))
        if self.lb is not None:
            self.lb.stop()
            self.lb = None
        for attempt in (want, 0):
            lb = LoadBalancer("127.0.0.1", attempt, routing=lbs.routing, hash_key=lbs.hash_key,
                              pause_max_ms=lbs.pause_max_ms, health_path=spec.app.health_path)
            try:
                self.lb_address = tuple(lb.start())  # type: ignore[assignment]
                break
            except (OSError, SculptError) as e:
                if lbs.port or attempt == 0:
                    why = e.message if isinstance(e, SculptError) else (e.strerror or str(e))
                    raise ProviderError(f"the load balancer cannot listen on 127.0.0.1:{attempt} ({why})",
                                        "set lb.port in sculpt.yaml to a free port, or 0 to pick one",
                                        retryable=False) from None
                log.warning("the kept LB port %d is taken; picking a new one", attempt)
        self.lb = lb
        self._lb_conf = conf
        self._sync_lb()
        self._save_state()

    def _sync_lb(self) -> None:
        if self.lb is None:
            return
        from sculpt.providers.local.lb import Backend

        # under the lock: the supervisor (a restart on a new port) and an apply may sync at the same time,
        # and the LB must end up with the later snapshot, not whichever set_backends ran last
        with self._lock:
            backends = [Backend(id=i.uid, host="127.0.0.1", port=i.port, weight=i.slot.weight)
                        for i in sorted(self.instances.values(), key=lambda i: i.slot.id)]
            self.lb.set_backends(backends)

    # -- live changes -------------------------------------------------------------------------------------
    def resize(self, slot_id: str, shape: Shape) -> dict[str, Any]:
        with self._apply_lock:
            inst = self._instance(slot_id)
            if not self.enforcer.live_resize:
                raise ProviderError("in-place resize needs writable cgroups", "use --strategy blue-green",
                                    retryable=False)
            limits = Limits.of(shape.vcpu, shape.memory_gib)
            self.enforcer.resize(inst.uid, limits)
            inst.shape, inst.limits = shape, limits
            inst.slot = inst.slot.model_copy(update={"shape": shape.name})
            return self.status()

    def set_weights(self, weights: dict[str, int]) -> dict[str, Any]:
        with self._apply_lock:
            for sid in weights:
                self._instance(sid)
            for sid, w in weights.items():
                inst = self.instances[sid]
                inst.slot = Slot.model_validate({**inst.slot.model_dump(), "weight": w})
            self._sync_lb()
            return self.status()

    def _instance(self, slot_id: str) -> Instance:
        inst = self.instances.get(slot_id)
        if inst is None:
            raise NotFoundError(f"stack '{self.stack}' has no slot '{slot_id}'",
                                "see `sculpt status` for the slot ids")
        return inst

    # -- supervision --------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_EVERY_S):
            try:
                self.supervise_once()
            except Exception:  # noqa: BLE001 - the supervisor must survive anything
                log.exception("supervision pass failed")

    def supervise_once(self) -> None:
        """Probe health; restart instances that died after having been healthy once (with backoff)."""
        now = time.monotonic()
        with self._lock:
            insts = list(self.instances.values())
        for i in insts:
            if i.stopping or not i.ever_healthy:
                continue  # being stopped, or still owned by the apply that started it
            if i.alive():
                if now - self._last_probe.get(i.uid, 0.0) >= HEALTH_EVERY_S:
                    self._last_probe[i.uid] = now
                    ok = inst_mod.probe_health(i.port, i.health_path, timeout_s=1.0)
                    i.healthy = ok and (i.healthy or self._lb_readmits(i))
                continue
            i.healthy = False
            if i.next_restart == 0.0:
                quick = now - i.started < CRASH_LOOP_WINDOW_S
                n = self._crashes[i.uid] = self._crashes.get(i.uid, 0) + 1 if quick else 0
                delay = RESTART_BACKOFF_S[min(n, len(RESTART_BACKOFF_S) - 1)]
                i.next_restart = now + delay
                log.warning("instance %s (pid %s) exited with code %s; restarting in %.2fs", i.uid, i.pid,
                            i.exit_code(), delay)
                continue
            if now < i.next_restart:
                continue
            with self._lock:
                if i.stopping or self.instances.get(i.slot.id) is not i:
                    continue
                port = i.port
                try:
                    inst_mod.start(i, self.enforcer)
                except SculptError as e:
                    log.warning("restart of %s failed: %s", i.uid, e)
                    i.next_restart = 0.0
                    continue
                i.restarts += 1
                i.next_restart = 0.0
            log.info("restarted %s as pid %s (restart %d)", i.uid, i.pid, i.restarts)
            if i.port != port:
                self._sync_lb()
            self._save_state()

    def _lb_readmits(self, i: Instance) -> bool:
        """An instance answers again (after a restart, or a hang): have the LB check it now, so ``status``
        never calls healthy an instance the LB still refuses to route to until its next health round."""
        lb = self.lb
        if lb is None:
            return True
        try:
            return lb.check(i.uid) is not False  # None: not an LB backend (nothing to agree with)
        except Exception:  # noqa: BLE001 - the LB being restarted or stopped: ask again on the next probe
            log.warning("the load balancer could not check %s", i.uid, exc_info=True)
            return False


def _app_changed(inst: Instance, spec: FleetSpec) -> bool:
    """Did the spec change how the instance's process is started (command, env, health path)?"""
    return (inst.template != spec.app.command or inst.env != dict(spec.app.env)
            or inst.health_path != spec.app.health_path)


def _dead(p: Any) -> bool:
    """True once ``p`` (a ``psutil.Process``) has exited: gone, reused, or a zombie nobody reaped yet."""
    import psutil

    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _stop_all(insts: list[Instance], enforcer: Enforcer) -> None:
    """Stop instances in parallel (each gets its grace period at the same time)."""
    threads = [threading.Thread(target=inst_mod.stop, args=(i, enforcer), daemon=True) for i in insts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run_agent(state_dir: str | Path, stack: str) -> int:
    """Run an agent in the foreground until SIGTERM/SIGINT or ``shutdown``; the exit code for the CLI."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    agent = Agent(state_dir, stack)
    try:
        agent.run()
    except SculptError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sculpt.providers.local.agent", description="sculpt local agent")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--stack", required=True)
    a = p.parse_args(argv)
    return run_agent(a.state_dir, a.stack)


if __name__ == "__main__":
    raise SystemExit(main())
