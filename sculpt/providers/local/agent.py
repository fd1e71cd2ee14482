"""The local supervisor agent: owns one stack's instances and drives its load-balancer process.

Why a separate process: instances must keep running (and be restarted when they crash) after the command
that started them exits. ``sculpt up`` starts the agent detached (``ensure_agent`` in ``client.py``);
``sculpt agent --stack NAME`` runs it in the foreground; ``sculpt down`` asks it to shut down.

What runs where (see docs/local-cloud.md):

* the **LB process** (``lbproc.py``, its own session) serves the stack's stable 127.0.0.1 port (spec
  ``lb.port``; 0 picks a port once and keeps it in ``agents/<stack>.json``). The agent binds the port, hands
  the socket down, and drives it over ``agents/<stack>.lb.sock``. It keeps serving when the agent dies and
  restarts a dead agent; the agent restarts a dead LB process on the same port with the current backends;
* the **agent** reconciles to the fleet it is given (``apply``; see ``Agent.apply``), restarts crashed
  instances with exponential backoff, and answers JSON-lines requests on ``agents/<stack>.sock`` (a short
  path under the temp dir when the state dir is too deep for a unix socket path);
* a new agent **adopts** what runs: the LB process and every instance recorded in ``agents/<stack>.json``
  (with the last applied fleet), restarts from its data dir a recorded instance that died meanwhile, and
  stops instances of no slot of that fleet;
* **pause lease**: when the LB is paused by a process that has died, or past the pause's lease (then the
  owner is SIGKILLed first), the agent runs ``python -m sculpt.migrate.recovery`` (it finishes or undoes the
  handover and resumes the LB), retried with backoff while the LB stays paused by a dead owner;
* on SIGTERM/SIGINT or a ``shutdown`` request it stops every instance (process groups) and the LB process,
  removes its cgroups, socket and pid file, and exits — leaving no process behind.

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
import json
import logging
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sculpt.domain.catalog import Shape
from sculpt.domain.errors import NotFoundError, ProviderError, SculptError
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import FleetSpec
from sculpt.providers.local import instances as inst_mod
from sculpt.providers.local import procs
from sculpt.providers.local.cgroups import Enforcer, Limits, Mode, make_enforcer
from sculpt.providers.local.instances import InstanceProcess
from sculpt.providers.local.lbproc import LBClient, lb_call
from sculpt.providers.local.procs import MAX_UNIX_PATH, AgentPaths, read_pid

__all__ = ["MAX_UNIX_PATH", "Agent", "AgentPaths", "main", "parse_local_shape", "read_pid", "run_agent"]

log = logging.getLogger("sculpt.agent")

PROTOCOL = 2
STATE_VERSION = 2
SUPERVISE_EVERY_S = 0.25
HEALTH_EVERY_S = 0.5
RESTART_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
CRASH_LOOP_WINDOW_S = 10.0  # a crash sooner than this after a start counts towards the backoff
LB_START_TIMEOUT_S = 15.0
RECOVERY_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
KEEP_RETIRED = 8  # data dirs of removed slots kept under instances/<stack>/.retired/


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


def recovery_command(state_dir: Path, stack: str) -> list[str]:
    """What the agent runs when a pause's owner is dead or its lease is over (the migration recovery)."""
    return [sys.executable, "-m", "sculpt.migrate.recovery", "--state-dir", str(state_dir), "--stack", stack]


class Agent:
    """The supervisor of one stack. Construct, then ``run()`` (blocks until shut down).

    ``recovery_argv`` replaces the recovery command (tests only: a stand-in that records it ran)."""

    def __init__(self, state_dir: str | Path, stack: str, *, mode: Mode | None = None,
                 recovery_argv: list[str] | None = None) -> None:
        self.paths = AgentPaths(Path(state_dir).resolve(), stack)
        self.stack = stack
        self.enforcer: Enforcer = make_enforcer(stack, self.paths.state_dir, mode)
        self.instances: dict[str, InstanceProcess] = {}  # slot id -> the instance serving it
        self.fleet: Fleet | None = None  # the last applied fleet (weights and shapes as changed since)
        self.lb: LBClient | None = None
        self.lb_address: tuple[str, int] | None = None
        self._lb_conf: tuple[Any, ...] | None = None
        self._lb_sock: socket.socket | None = None  # our 'attach' connection to the LB process
        self._lb_lost = threading.Event()
        self._lb_lock = threading.RLock()
        self._lb_next_try = 0.0
        self._listener: socket.socket | None = None  # our copy of the LB's listening socket
        self._pause: dict[str, Any] | None = None  # the LB's paused_by as last seen (re-applied after an LB restart)
        self._lb_note: str | None = None  # status() says it: the kept LB port was taken and the LB moved
        self._gen: dict[str, int] = {}
        self._crashes: dict[str, int] = {}
        self._apply_lock = threading.Lock()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._lock_fd: int | None = None
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._last_probe: dict[str, float] = {}
        self._recovery_argv = recovery_argv or recovery_command(self.paths.state_dir, stack)
        self._recovery: subprocess.Popen[bytes] | None = None
        self._recovery_tries = 0
        self._recovery_next = 0.0
        self._killed_owner: int | None = None
        self.adopted: list[str] = []  # uids of the instances this agent adopted at start

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
        tmp = self.paths.pid.with_suffix(f".pid.{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(self.paths.pid)

    def run(self, *, install_signals: bool = True) -> None:
        """Claim the stack, adopt what runs, serve requests and supervise until shut down; always clean up."""
        self.claim()
        try:
            self._adopt()
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
        with self._lb_lock:
            lb = self.lb
            if lb is not None:
                with contextlib.suppress(ProviderError):
                    lb.down()  # it must not restart us while we stop
        with self._lock:
            insts = list(self.instances.values())
            self.instances.clear()
            self.fleet = None
        _stop_all(insts, self.enforcer)
        with self._lb_lock:
            if lb is not None:
                if not lb.stop():
                    log.warning("the LB process (pid %d) did not stop", lb.pid)
                self.lb = None
            self._close_attach()
            self._close_listener()
        rec = self._recovery
        if rec is not None and rec.poll() is None:
            rec.kill()
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
        return procs.load_state(self.paths)

    def _save_state(self) -> None:
        with self._lock:
            self._save_state_locked()

    def _save_state_locked(self) -> None:
        kept = self._load_state().get("lb_port")
        data = {
            "version": STATE_VERSION,
            "lb_port": self.lb_address[1] if self.lb_address else kept,
            "lb": self.lb.record() if self.lb is not None else None,
            "agent": procs.record(os.getpid()),
            "enforcement": self.enforcer.mode,
            "cgroups": [str(d) for d in self.enforcer.dirs()],
            "fleet": self.fleet.model_dump(mode="json") if self.fleet is not None else None,
            "gen": dict(self._gen),
            "instances": [inst_mod.to_record(i) for i in self.instances.values()],
        }
        procs.save_state(self.paths, data)

    def _adopt(self) -> None:
        """Take over what a previous agent of this stack left running (it was killed, or it crashed).

        The LB process (recorded pid + create time, answering its control socket) is kept as it is: same
        port, no restart. Every recorded instance of a slot of the last applied fleet is adopted if it
        runs, restarted from its data dir if it died; any other instance is stopped."""
        state = self._load_state()
        self._gen = {str(k): int(v) for k, v in (state.get("gen") or {}).items()}
        fleet = None
        if state.get("fleet"):
            try:
                fleet = Fleet.model_validate(state["fleet"])
            except ValueError:
                log.warning("the recorded fleet cannot be read; adopting nothing")
        slots = {s.id: s for s in fleet.slots} if fleet is not None else {}
        lbrec = state.get("lb") or None
        if lbrec and procs.alive(lbrec):
            try:
                ping = lb_call(self.paths, "ping", 3.0)
                if int(ping["pid"]) != int(lbrec["pid"]):
                    raise ProviderError("another LB process answers", None)
                self.lb = LBClient(self.paths, (str(lbrec.get("host") or "127.0.0.1"), int(ping["port"])),
                                   int(lbrec["pid"]), lbrec.get("create_time"))
                self.lb_address = self.lb.address
                try:
                    self._listener = self.lb.listener()
                except ProviderError as e:
                    log.warning("no copy of the LB's listening socket (%s): an LB restart would refuse "
                                "connections for a moment", e)
                log.info("adopted the LB process (pid %d) on port %d", self.lb.pid, self.lb.address[1])
            except (ProviderError, KeyError, ValueError, TypeError) as e:
                log.warning("the recorded LB process (pid %s) does not answer (%s): stopping it", lbrec.get("pid"), e)
                procs.terminate([lbrec], 1.0, group=False)
        stale: list[dict[str, Any]] = []
        restart: list[InstanceProcess] = []
        for rec in state.get("instances") or []:
            try:
                inst = inst_mod.from_record(rec)
            except (KeyError, ValueError, TypeError) as e:
                log.warning("a recorded instance cannot be read (%s): %s", e, rec)
                if rec.get("pid"):
                    stale.append(rec)
                continue
            sid = inst.slot.id
            if sid not in slots or sid in self.instances:
                if inst.alive():
                    log.warning("stopping instance %s (pid %s): no slot of the last applied fleet", inst.uid, inst.pid)
                    stale.append(rec)
                continue
            # labels (weight, colour, region) as the last applied fleet has them; the shape it really runs
            inst.slot = slots[sid].model_copy(update={"shape": inst.shape.name})
            inst.ever_healthy = True  # it served once: the supervisor restarts it should it die
            inst.started = time.monotonic()
            if inst.alive():
                assert inst.pid is not None
                try:
                    self.enforcer.adopt(inst.pid, inst.uid, inst.limits)
                except ProviderError as e:
                    log.warning("cannot put adopted instance %s under its limits again: %s", inst.uid, e)
                inst.healthy = inst_mod.probe_health(inst.port, inst.health_path, timeout_s=1.0)
                self.adopted.append(inst.uid)
                log.info("adopted instance %s (pid %d) on port %d", inst.uid, inst.pid, inst.port)
            else:
                restart.append(inst)
            self.instances[sid] = inst
        if stale:
            procs.terminate([r for r in stale if r.get("pid")], inst_mod.STOP_GRACE_S)
        self._stop_unrecorded()
        self.enforcer.cleanup()  # empty groups only: the adopted instances' groups are busy
        self.fleet = fleet
        for inst in restart:
            try:
                inst_mod.start(inst, self.enforcer)
                inst.restarts += 1
                log.info("restarted instance %s (it died while no agent ran) as pid %s", inst.uid, inst.pid)
            except SculptError as e:
                log.warning("restart of %s failed: %s (the supervisor retries)", inst.uid, e)
        if fleet is not None:
            for sid, slot in slots.items():  # a slot of the fleet with no record at all: start it afresh
                if sid not in self.instances:
                    try:
                        new = inst_mod.new_instance(self._uid(sid), slot, self._shape(slot.shape, {}), fleet.spec.app,
                                                    self.paths.instances)
                        inst_mod.start(new, self.enforcer)
                        new.ever_healthy = True
                        self.instances[sid] = new
                    except SculptError as e:
                        log.warning("cannot start slot %s of the recorded fleet: %s", sid, e)
        if fleet is not None and fleet.slots:
            try:
                self._ensure_lb(fleet.spec)
            except SculptError as e:
                log.error("cannot start the load balancer for the recorded fleet: %s", e)
        elif self.lb is not None:
            log.info("no fleet is recorded: stopping the LB process (pid %d)", self.lb.pid)
            with contextlib.suppress(ProviderError):
                self.lb.down()
            self.lb.stop()
            self.lb = None
            self._close_listener()
        if self.lb is not None:
            self._attach()
            self._sync_lb()
            with contextlib.suppress(ProviderError):
                st = self.lb.stats()
                self._pause = st.get("paused_by") if st.get("paused") else None
        self._save_state()

    def _stop_unrecorded(self) -> None:
        """Stop instance and LB processes of this stack that no record names (started by an agent that died
        before it could record them)."""
        known = {i.pid for i in self.instances.values() if i.pid}
        if self.lb is not None:
            known.add(self.lb.pid)
        strays = [r for r in procs.stack_processes(self.paths.state_dir, self.stack)
                  if r["role"] in ("instance", "lb") and r["pid"] not in known]
        for r in strays:
            log.warning("stopping unrecorded %s process pid %d of stack '%s'", r["role"], r["pid"], self.stack)
        if strays:
            procs.terminate(strays, inst_mod.STOP_GRACE_S)

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
            auto, owner = req.get("auto_resume_s"), req.get("owner_pid")
            return self.pause(float(auto) if auto is not None else None, int(owner) if owner else None)
        if op == "resume":
            self._need_lb().resume()
            self._pause = None
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

    def _need_lb(self) -> LBClient:
        if self.lb is None:
            raise ProviderError(f"stack '{self.stack}' has no load balancer yet", "run `sculpt up` first")
        return self.lb

    def pause(self, lease_s: float | None, owner_pid: int | None) -> dict[str, Any]:
        """Hold new requests at the LB. ``lease_s``: how long ``owner_pid`` may keep it paused; past it, or
        once the owner is dead, the supervisor runs the recovery (the LB itself resumes only as a last
        resort, well past the lease)."""
        self._pause = self._need_lb().pause(lease_s, owner_pid=owner_pid) or {
            "pid": owner_pid, "since": time.time(), "lease_s": lease_s}
        self._recovery_tries = 0
        self._recovery_next = 0.0
        return {"paused": True}

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
        """The ``instances`` block of ``sculpt status --json`` plus the LB, the agent and the fleet."""
        with self._lock:
            insts = sorted(self.instances.values(), key=lambda i: i.slot.id)
            app = self.fleet.spec.app if self.fleet is not None else None
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
                    "data_dir": str(i.data_dir), "log": str(i.log_path), "health_path": i.health_path,
                    "adopted": i.adopted(),
                    # the instance runs the app config it was started with; a later spec's differs
                    "app_current": app is None or i.same_app(app),
                })
            fleet = ({"name": self.fleet.name, "slots": [s.model_dump(mode="json") for s in self.fleet.slots]}
                     if self.fleet is not None else None)
            lb = self.lb
        address = f"{self.lb_address[0]}:{self.lb_address[1]}" if self.lb_address and lb is not None else None
        return {"stack": self.stack, "agent_pid": os.getpid(), **self.capabilities(),
                "lb": {"address": address}, "lb_pid": lb.pid if lb is not None else None,
                "paused_by": self._pause, "fleet": fleet, "instances": rows,
                "notes": [self._lb_note] if self._lb_note else []}

    # -- reconcile ----------------------------------------------------------------------------------------
    def _uid(self, slot_id: str) -> str:
        n = self._gen.get(slot_id, -1) + 1
        self._gen[slot_id] = n
        return slot_id if n == 0 else f"{slot_id}#{n}"

    def apply(self, fleet: Fleet, timeout_s: float = 30.0, shapes: dict[str, Shape] | None = None) -> dict[str, Any]:
        """Reconcile the instances to ``fleet``; return ``status()`` once every slot is healthy.

        The agent never replaces a running instance (that would copy a data dir the instance still writes):

        * new slot ids: start instances with the fleet spec's app;
        * removed ids: take them out of the LB, let in-flight requests drain (``lb.drain_s``), stop them
          (their data dir is moved aside to ``instances/<stack>/.retired/``, never reused);
        * an existing id keeps its instance and the app config (command, env, health path) it was started
          with; weight/colour/region changes relabel it and update the LB (region is only a label locally);
        * a shape change on an existing id is a live resize where cgroups are writable; without them it is
          refused (``ProviderError``) before anything is touched: the orchestrator replaces it blue/green
          with a state handover.

        Waits for every slot (weight 0 included, so a green slot is ready for traffic when this returns).
        On failure (app exits, not healthy within ``timeout_s``, LB port taken) the instances started by
        this call are stopped, the previous ones keep serving, and ``ProviderError`` says why.
        """
        extra = shapes or {}
        with self._apply_lock:
            desired = {s.id: s for s in fleet.slots}
            resolved = {sid: self._shape(s.shape, extra) for sid, s in desired.items()}
            for sid, shape in resolved.items():
                cur = self.instances.get(sid)
                if cur is not None and cur.shape.name != shape.name and not self.enforcer.live_resize:
                    raise ProviderError(
                        f"slot {sid}: changing its shape to {shape.name} needs a blue/green morph on this machine "
                        "(cgroups are not writable)",
                        "run `sculpt up` or `sculpt morph --strategy blue-green`: they hand its state over",
                        retryable=False)
            self._ensure_lb(fleet.spec)
            started: list[InstanceProcess] = []
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
                        self._save_state()  # recorded at once: a new agent adopts (or stops) it
                        continue
                    if cur.shape.name != shape.name:
                        limits = Limits.of(shape.vcpu, shape.memory_gib)
                        self.enforcer.resize(cur.uid, limits)
                        cur.shape, cur.limits = shape, limits
                        log.info("resized %s live to %s", cur.uid, shape.name)
                    if not cur.same_app(fleet.spec.app):
                        log.info("slot %s keeps the app config it was started with (the spec's differs: replacing "
                                 "it is a blue/green morph)", sid)
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
                removed = [self.instances.pop(sid) for sid in list(self.instances) if sid not in desired]
                self.fleet = fleet
            self._sync_lb()
            self._save_state()
            self._drain(removed, fleet.spec.lb.drain_s)
            _stop_all(removed, self.enforcer)
            for old in removed:
                self._retire_data(old)
            self._save_state()
            return self.status()

    def _retire_data(self, inst: InstanceProcess) -> None:
        """Move a removed slot's data dir aside (kept, never reused by a later instance of that id)."""
        if not inst.data_dir.is_dir():
            return
        retired = self.paths.instances / ".retired"
        retired.mkdir(parents=True, exist_ok=True)
        dest = retired / f"{inst.uid}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        try:
            inst.data_dir.rename(dest)
        except OSError as e:
            log.warning("cannot move the data dir of %s aside (%s): removing it", inst.uid, e)
            shutil.rmtree(inst.data_dir, ignore_errors=True)
            return
        kept = sorted(retired.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEEP_RETIRED]:
            shutil.rmtree(old, ignore_errors=True)

    def _check_running(self) -> None:
        if self._stop.is_set():
            raise ProviderError(f"the agent of stack '{self.stack}' is shutting down",
                                "run `sculpt up` again once it has stopped")

    def _wait_healthy(self, insts: list[InstanceProcess], timeout_s: float) -> None:
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

    def _drain(self, insts: list[InstanceProcess], drain_s: float) -> None:
        if self.lb is None:
            return
        for i in insts:
            with contextlib.suppress(Exception):
                self.lb.wait_idle(i.uid, drain_s)

    # -- the LB process -----------------------------------------------------------------------------------
    def _ensure_lb(self, spec: FleetSpec) -> None:
        """Start the LB process on the stable port unless one runs; move it when ``lb.port`` names another
        port; change routing, hash key, hold limit and default health path live."""
        lbs = spec.lb
        conf = (lbs.routing, lbs.hash_key, lbs.pause_max_ms, spec.app.health_path)
        with self._lb_lock:
            cur = self.lb
            if cur is not None and cur.alive():
                if lbs.port and lbs.port != cur.address[1]:
                    self._start_lb(spec, lbs.port, fallback=False)  # the new one first, then the old one goes
                    self._sync_lb()
                    log.info("moved the LB from port %d to %d", cur.address[1], lbs.port)
                    if not cur.stop():
                        log.warning("the old LB process (pid %d) did not stop", cur.pid)
                elif conf != self._lb_conf:
                    cur.configure(routing=lbs.routing, hash_key=lbs.hash_key, pause_max_ms=lbs.pause_max_ms,
                                  health_path=spec.app.health_path)
                    self._lb_conf = conf
                return
            kept = self._load_state().get("lb_port")
            want = lbs.port or (self.lb_address[1] if self.lb_address else int(kept or 0))
            self._start_lb(spec, want, fallback=not lbs.port)
            self._sync_lb()
            self._save_state()

    def _start_lb(self, spec: FleetSpec, port: int, *, fallback: bool, pause: dict[str, Any] | None = None) -> None:
        """Bind ``127.0.0.1:port`` here (so a taken port is our error to report), start an LB process
        serving that socket with the current backends (and ``pause``), wait until it answers, attach to it.

        The agent keeps its own copy of the listening socket: should the LB process die, the port keeps
        queueing new connections (nothing is refused) until the next LB process, given the same socket,
        accepts them."""
        from sculpt.providers.local.lb import bind_listener
        from sculpt.providers.local.lbproc import command

        lbs = spec.lb
        sock = None
        moved_from = 0
        held = self._listener
        if held is not None and _port_of(held) == port and port:
            sock = held
        for attempt in () if sock is not None else (port, 0) if fallback and port else (port,):
            try:
                sock = bind_listener("127.0.0.1", attempt)
                break
            except SculptError as e:
                if not fallback or attempt == 0:
                    why = e.message.removeprefix(f"cannot listen on 127.0.0.1:{attempt}: ")
                    raise ProviderError(f"the load balancer cannot listen on 127.0.0.1:{attempt} ({why})",
                                        "set lb.port in sculpt.yaml to a free port, or 0 to pick one",
                                        retryable=False) from None
                log.warning("the kept LB port %d is taken; picking a new one", attempt)
                moved_from = attempt
        assert sock is not None
        if moved_from:   # the spec left the port to sculpt: moving is allowed, silently it is not
            self._lb_note = (f"the load balancer's port {moved_from} was taken, so it now listens on "
                             f"127.0.0.1:{_port_of(sock)}; to keep one port, free {moved_from} and set "
                             f"lb.port: {moved_from} in sculpt.yaml (a taken lb.port is an error)")
        elif lbs.port:
            self._lb_note = None   # the spec pins the port now
        if held is not None and held is not sock:
            held.close()  # the old port's copy (a move): the old LB process holds its own until it stops
        self._listener = sock
        try:
            bound = _port_of(sock)
            argv = command(self.paths, sock.fileno(), routing=lbs.routing, hash_key=lbs.hash_key,
                           pause_max_ms=lbs.pause_max_ms, health_path=spec.app.health_path,
                           backends=self._backends(), pause=pause)
            proc = procs.spawn_detached(argv, self.paths.lb_log, cwd=self.paths.state_dir,
                                        banner=f"agent (pid {os.getpid()}) starts the LB on port {bound}",
                                        pass_fds=(sock.fileno(),))
            deadline = time.monotonic() + LB_START_TIMEOUT_S
            while True:
                with contextlib.suppress(ProviderError, KeyError, ValueError):
                    ping = lb_call(self.paths, "ping", 2.0)
                    if int(ping["pid"]) == proc.pid:
                        break
                if proc.poll() is not None:
                    raise ProviderError(f"the load balancer process exited at once (code {proc.returncode}): "
                                        f"{inst_mod.tail(self.paths.lb_log, 2)}", f"see {self.paths.lb_log}")
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    raise ProviderError(f"the load balancer process did not start within {LB_START_TIMEOUT_S:g}s",
                                        f"see {self.paths.lb_log}")
                time.sleep(0.02)
        except BaseException:
            self._close_listener()  # nobody serves it: do not leave the port queueing into the void
            raise
        self._close_attach()
        self.lb = LBClient(self.paths, ("127.0.0.1", bound), proc.pid, ping.get("create_time"))
        self.lb_address = self.lb.address
        self._lb_conf = (lbs.routing, lbs.hash_key, lbs.pause_max_ms, spec.app.health_path)
        self._attach()
        log.info("LB process pid %d serves 127.0.0.1:%d", proc.pid, bound)

    def _attach(self) -> None:
        """Hold the connection the LB process watches (it restarts us when it closes); its closing tells us
        the LB process died."""
        lb = self.lb
        if lb is None:
            return
        self._close_attach()
        try:
            s = lb.attach(os.getpid())
        except ProviderError as e:
            log.warning("cannot attach to the LB process: %s", e)
            self._lb_lost.set()
            return
        self._lb_sock = s
        self._lb_lost.clear()

        def watch() -> None:
            with contextlib.suppress(OSError):
                while s.recv(4096):
                    pass
            if self._lb_sock is s:
                self._lb_lost.set()

        threading.Thread(target=watch, name="lb-watch", daemon=True).start()

    def _close_listener(self) -> None:
        s, self._listener = self._listener, None
        if s is not None:
            s.close()

    def _close_attach(self) -> None:
        s, self._lb_sock = self._lb_sock, None
        if s is not None:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _sync_lb(self) -> None:
        if self.lb is None:
            return
        # under the lock: the supervisor (a restart on a new port) and an apply may sync at the same time,
        # and the LB must end up with the later snapshot, not whichever set_backends ran last
        with self._lock:
            lb = self.lb
            if lb is not None:
                lb.set_backends(self._backends())

    def _backends(self) -> list[Any]:
        from sculpt.providers.local.lb import Backend

        with self._lock:
            return [Backend(id=i.uid, host="127.0.0.1", port=i.port, weight=i.slot.weight, health_path=i.health_path)
                    for i in sorted(self.instances.values(), key=lambda i: i.slot.id)]

    def check_lb(self) -> None:
        """Restart a dead LB process on the same port with the current backends (and the pause it held)."""
        with self._lb_lock:
            lb = self.lb
            if lb is None or self.fleet is None or self._stop.is_set():
                return
            if lb.alive() and not self._lb_lost.is_set():
                return
            if time.monotonic() < self._lb_next_try:
                return
            self._lb_next_try = time.monotonic() + 0.5  # a failing restart is retried twice a second
            if lb.alive():  # the connection closed but the process runs: a hang, or a restart of its socket
                try:
                    lb.call("ping", 2.0)
                    self._attach()
                    return
                except ProviderError:
                    log.warning("the LB process (pid %d) runs but does not answer: replacing it", lb.pid)
                    procs.terminate([lb.record()], 0.5, group=False)
            else:
                log.warning("the LB process (pid %d) died: restarting it on port %d", lb.pid, lb.address[1])
            paused = self._pause
            pause = None
            if paused is not None:  # the handover it held is still going on: hold on, same owner and lease
                lease = paused.get("lease_s")
                left = None if lease is None else max(0.0, float(lease) - (time.time() - float(paused["since"])))
                pause = {"pid": paused.get("pid"), "lease_s": left}
            self.lb = None
            self._close_attach()
            try:
                self._start_lb(self.fleet.spec, lb.address[1], fallback=False, pause=pause)
            except SculptError as e:
                self.lb = lb  # try again on the next pass
                self._lb_lost.set()
                log.error("cannot restart the LB process: %s", e)
                return
            self._sync_lb()
            self._save_state()

    # -- live changes -------------------------------------------------------------------------------------
    def resize(self, slot_id: str, shape: Shape) -> dict[str, Any]:
        with self._apply_lock:
            inst = self._instance(slot_id)
            if not self.enforcer.live_resize:
                raise ProviderError("in-place resize needs writable cgroups", "use --strategy blue-green",
                                    retryable=False)
            limits = Limits.of(shape.vcpu, shape.memory_gib)
            self.enforcer.resize(inst.uid, limits)
            with self._lock:
                inst.shape, inst.limits = shape, limits
                inst.slot = inst.slot.model_copy(update={"shape": shape.name})
                self._refleet()
            self._save_state()
            return self.status()

    def set_weights(self, weights: dict[str, int]) -> dict[str, Any]:
        with self._apply_lock:
            for sid in weights:
                self._instance(sid)
            with self._lock:
                for sid, w in weights.items():
                    inst = self.instances[sid]
                    inst.slot = Slot.model_validate({**inst.slot.model_dump(), "weight": w})
                self._refleet()
            self._sync_lb()
            self._save_state()
            return self.status()

    def _refleet(self) -> None:
        """Keep the recorded fleet in step with live changes (weights, live resizes)."""
        if self.fleet is not None:
            self.fleet = self.fleet.with_slots([self.instances[s.id].slot if s.id in self.instances else s
                                                for s in self.fleet.slots])

    def _instance(self, slot_id: str) -> InstanceProcess:
        inst = self.instances.get(slot_id)
        if inst is None:
            raise NotFoundError(f"stack '{self.stack}' has no slot '{slot_id}'",
                                "see `sculpt status` for the slot ids")
        return inst

    # -- supervision --------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._stop.is_set():
            for step in (self.check_lb, self.supervise_once, self.check_pause):
                try:
                    step()
                except Exception:  # noqa: BLE001 - the supervisor must survive anything
                    log.exception("supervision pass failed")
            if self._lb_lost.wait(SUPERVISE_EVERY_S):  # the LB process died: act on it at once
                self._stop.wait(max(0.01, min(SUPERVISE_EVERY_S, self._lb_next_try - time.monotonic())))

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
                code = i.exit_code()
                log.warning("instance %s (pid %s) exited with %s; restarting in %.2fs", i.uid, i.pid,
                            "an unknown code (adopted)" if i.adopted() else f"code {code}", delay)
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

    def _lb_readmits(self, i: InstanceProcess) -> bool:
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

    # -- the pause lease ----------------------------------------------------------------------------------
    def check_pause(self) -> None:
        """The LB is paused by a dead process, or past its lease: run the recovery (one at a time, with
        backoff while the LB stays paused by a dead owner). A live owner past its lease is SIGKILLed first
        (never this agent or the LB process)."""
        rec = self._recovery
        if rec is not None and rec.poll() is not None:
            log.info("recovery (pid %d) exited with code %s", rec.pid, rec.returncode)
            self._recovery = None
        lb = self.lb
        if lb is None:
            return
        try:
            st = lb.stats()
        except ProviderError:
            return  # restarting: the next pass looks again
        pb = st.get("paused_by") if st.get("paused") else None
        self._pause = pb
        if pb is None:
            self._recovery_tries = 0
            self._recovery_next = 0.0
            self._killed_owner = None
            return
        owner, lease, since = pb.get("pid"), pb.get("lease_s"), float(pb.get("since") or time.time())
        expired = lease is not None and time.time() - since > float(lease)
        owner_alive = owner is not None and _owner_alive(int(owner), since)
        if owner is not None and owner_alive and not expired:
            return
        if owner is None and not expired:
            return  # nobody to outlive and no lease: held requests time out at pause_max_ms as ever
        if owner_alive and expired:
            assert owner is not None
            if int(owner) in (os.getpid(), lb.pid):
                log.warning("the pause lease of %ss is over, held by this stack's own process %s: recovering",
                            lease, owner)
            elif self._killed_owner != int(owner):
                log.warning("the pause owner pid %s holds the LB past its lease of %ss: killing it (SIGKILL) and "
                            "recovering", owner, lease)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(owner), signal.SIGKILL)
                self._killed_owner = int(owner)
                return  # the next pass sees it dead, then recovers
            else:
                return
        if self._recovery is not None or time.monotonic() < self._recovery_next:
            return
        self._run_recovery(pb)

    def _run_recovery(self, paused_by: dict[str, Any]) -> None:
        argv = self._recovery_argv
        log.warning("the LB is paused by %s (owner pid %s, lease %ss): running %s", "a dead process"
                    if paused_by.get("pid") else "nobody alive", paused_by.get("pid"), paused_by.get("lease_s"),
                    " ".join(argv))
        try:
            with open(self.paths.log, "ab") as logf:
                logf.write(f"--- sculpt: agent runs recovery: {' '.join(argv)}\n".encode())
                logf.flush()
                self._recovery = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                                  stderr=subprocess.STDOUT, cwd=str(self.paths.state_dir),
                                                  close_fds=True)
        except OSError as e:
            log.error("cannot run the recovery: %s", e)
        delay = RECOVERY_BACKOFF_S[min(self._recovery_tries, len(RECOVERY_BACKOFF_S) - 1)]
        self._recovery_tries += 1
        self._recovery_next = time.monotonic() + delay


def _port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _owner_alive(pid: int, since: float) -> bool:
    """Is the process that paused at ``since`` still alive (a pid reused by a later process is not it)?"""
    import psutil

    try:
        p = psutil.Process(pid)
        return bool(p.status() != psutil.STATUS_ZOMBIE and p.create_time() <= since + 1.0)
    except psutil.Error:
        return False


def _stop_all(insts: list[InstanceProcess], enforcer: Enforcer) -> None:
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
