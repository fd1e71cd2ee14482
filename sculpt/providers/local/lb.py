"""The local load balancer: one stable HTTP address in front of a local fleet, with the knobs a morph needs.

Why it exists: a blue/green morph on the embedded local cloud must shift traffic between real processes
without dropping or double-applying a request. This reverse proxy (run by a stack in its own process:
``lbproc.py``) gives the supervisor (``sculpt agent``) and the migration orchestrator exactly the operations the morph protocol names: weighted or consistent-hash
routing, active health checks, draining of removed backends, and a short *pause* that holds new requests
(in order) while the final state delta is handed over.

It is an HTTP/1.1 proxy built on asyncio Protocols (no task or future per request on the hot path: a
request costs two socket reads and two writes and little Python), running its own event loop in a daemon
thread so a synchronous caller (the agent's threads) drives it through thread-safe methods. Keep-alive on
both sides: each backend has a small pool of idle connections, so a proxied request costs one extra
loopback hop, not a connect. Answers stream through (Content-Length, chunked, or until the backend closes);
a chunked request body is re-framed with Content-Length; pipelined requests are answered in order.

Framing
    h11 decides where every request and answer begins and ends (see ``FAST_PATH`` for the one shortcut,
    checked against h11). The backend always gets a head rebuilt from what was parsed, never the client's
    bytes: HTTP/1.1, hop-by-hop headers (``Connection`` and what it names by convention, ``Keep-Alive``,
    ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Expect``) dropped, values without surrounding
    whitespace, the body framed by one ``Content-Length``. Ambiguous framing is answered ``400`` and the
    connection closed, so nothing after it is read as a request: ``Content-Length`` twice (even with equal
    values) or as a list, ``Transfer-Encoding`` with ``Content-Length``, a folded header line (obs-fold), a
    bad chunk, a missing ``Host`` on HTTP/1.1, a space before a colon, control characters. A head over 64
    KiB gets ``431``, a transfer coding other than ``chunked`` ``501``, ``CONNECT`` ``405``, a body over 256
    MiB ``413``. The client's answer head is rebuilt the same way from the backend's, with the LB's own
    framing and keep-alive; a backend answer h11 cannot frame (say two different lengths) counts as that
    backend failing (502 before any byte was sent, else the client connection is cut).

Routing
    ``weighted``: smooth weighted round-robin (nginx's algorithm) over healthy backends with weight > 0.
    ``hash``: a consistent-hash ring with ``weight`` virtual nodes per backend (weight 100 = 100 points),
    ``sculpt.domain.ring``: the one the morph planner plans key moves with. The key is the ``hash_key``
    query parameter or the ``/kv/<key>`` path segment (no key: weighted). A key goes to the first *healthy*
    backend clockwise from its hash, so adding a backend moves only the keys that land on its points.

Failure handling
    A backend that fails a request with a connection error is marked down at once (the active health check
    brings it back). The request is retried once on another healthy backend only if it is idempotent
    (GET/HEAD/OPTIONS): a write is never sent twice. Nothing healthy → 502. No byte from the backend for
    ``backend_timeout_s`` → 504 (mid-answer: the client connection is cut); the clock stops while a slow
    client is what holds the answer up.

Pause
    ``pause()`` returns once the proxy's loop has switched to holding: every request that arrives after it
    waits in a FIFO queue and is released in arrival order by ``resume()``; a request held longer than
    ``pause_max_ms`` gets 503 (``Retry-After: 1``). Requests already sent to a backend are not held: use
    ``wait_idle`` to see them finish. ``pause(owner_pid=, lease_s=)`` records who paused and for how long
    (``paused_by`` in ``stats``); only ``auto_resume_s`` makes the LB resume by itself.

Health
    ``GET health_path`` per backend — a ``Backend`` may name its own ``health_path`` (blue and green with
    different paths serve side by side) — on a fresh connection every ``health_interval_s``.

``GET /__lb/stats`` on the LB's own port returns :meth:`LoadBalancer.stats` as JSON::

    {"address": "127.0.0.1:8000", "routing": "weighted", "paused": false, "paused_by": null,
     "requests": 10, "failed": 0, "held": 0, "held_now": 0, "pause_ms_max": 0.0, "in_flight": 0, "health_rounds": 12,
     "backends": {"a": {"host": "127.0.0.1", "port": 9001, "weight": 100, "active": true, "healthy": true,
                        "requests": 10, "failed": 0, "in_flight": 0}}}

``requests`` counts proxied client requests (not ``/__lb/*``); ``failed`` counts the error responses the LB
itself produced (502, 503 after a pause timeout, 504); ``held`` counts requests ever held by a pause and
``pause_ms_max`` is the longest hold in milliseconds; ``health_rounds`` counts completed rounds of active
checks; ``active`` is false for a removed backend (it stays listed with its counters).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

import h11

from sculpt.domain.errors import ConfigError
from sculpt.domain.ring import HashRing, build_ring, hash_point

__all__ = ["Backend", "LoadBalancer", "hash_point", "main"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
# Hop-by-hop headers, stripped before forwarding. ``expect`` too: the LB reads the whole body itself, so it
# answers ``Expect: 100-continue`` for the client instead of passing the expectation on.
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
                  b"upgrade", b"expect"})
_HOP_CL = _HOP | {b"content-length"}     # dropped too: the LB writes the framing itself
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_BODY = 256 * 1024 * 1024
_MAX_HEAD = 64 * 1024
# Sockets are read into one buffer per LB (``BufferedProtocol``): asyncio's default ``recv(256 KiB)`` allocates
# 256 KiB per read, which on this path cost more than all the LB's own Python did (~30 us a read).
_READ_SIZE = 64 * 1024
_EOM = h11.EndOfMessage()
_HEAD_END = re.compile(rb"\n\r?\n")                        # where h11 ends a head (it takes bare LF lines too)
_OBS_FOLD = re.compile(rb"\n[ \t]")                         # a continuation line (h11 would unfold it)
_CL_LINE = re.compile(rb"\ncontent-length:([^\r\n]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Backend:
    """One upstream instance: where it listens and its share of traffic (0 = receive nothing new)."""

    id: str
    host: str
    port: int
    weight: int = 100
    health_path: str | None = None  # this backend's own health check path; None: the LB's ``health_path``


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port), or ``ConfigError`` saying why not."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)   # proto set: asyncio then turns Nagle off per connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} is in use",
                              f"stop what listens on {host}:{port} (ss -ltnp) or choose another "
                              "port (0 picks a free one)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}", "choose another host or port") from None
    sock.listen(1024)
    return sock


def _key_from_target(target: str, param: str) -> str | None:
    path, _, query = target.partition("?")
    if query:
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if name == param:
                return unquote(value.replace("+", " "))
    if path.startswith("/kv/") and len(path) > 4:
        return unquote(path[4:])
    return None


@dataclass
class _BStats:
    requests: int = 0
    failed: int = 0


class _Req:
    """A parsed client request: the head to send upstream, the body, and what the client asked for."""

    __slots__ = ("method", "target", "head", "body", "close", "key", "v10")

    def __init__(self, method: str, target: str, head: bytes, body: bytes, close: bool) -> None:
        self.method, self.target, self.head, self.body, self.close = method, target, head, body, close
        self.key: str | None = None
        self.v10 = False     # an HTTP/1.0 client: no chunked answers


def _simple(status: int, body: bytes, *, close: bool = False, extra: str = "",
            ctype: str = "text/plain; charset=utf-8") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 413: "Payload Too Large",
              431: "Request Header Fields Too Large", 501: "Not Implemented", 502: "Bad Gateway",
              503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}X-Served-By: sculpt-lb\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
            ).encode("latin-1") + body


class LoadBalancer:
    """HTTP/1.1 reverse proxy with weighted/hash routing, health checks, draining and pause (see module doc).

    All public methods are thread-safe; the blocking ones (``pause``, ``resume``, ``set_backends``,
    ``stats``, ``wait_idle``, ``check``) must not be called from the LB's own loop thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, routing: str = "weighted",
                 hash_key: str = "key", pause_max_ms: int = 2000, health_path: str = "/healthz",
                 health_interval_s: float = 0.25, connect_timeout_s: float = 2.0,
                 backend_timeout_s: float = 60.0, pool_size: int = 64) -> None:
        if routing not in ("weighted", "hash"):
            raise ConfigError(f"unknown routing '{routing}'", "use routing='weighted' or routing='hash'")
        self.host, self.port = host, port
        self.routing, self.hash_key = routing, hash_key
        self.pause_max_ms = pause_max_ms
        self.health_path, self.health_interval_s = health_path, health_interval_s
        self.connect_timeout_s, self.backend_timeout_s = connect_timeout_s, backend_timeout_s
        self.pool_size = pool_size
        self.address: tuple[str, int] = (host, port)
        # Routing state: replaced wholesale (never mutated in place) so readers on other threads see a
        # consistent snapshot; mutated only on the loop thread (or before start).
        self._backends: dict[str, Backend] = {}
        self._healthy: dict[str, bool] = {}
        # loop time at which the check behind each verdict started: a verdict only replaces one from an
        # earlier check, so a slow health round never overwrites what a newer check (or failure) found
        self._verdict_t: dict[str, float] = {}
        self._ring: HashRing = build_ring(())
        self._swrr: dict[str, int] = {}
        self._bstats: dict[str, _BStats] = {}
        self._known: dict[str, Backend] = {}
        self._pools: dict[str, list[_UpConn]] = {}
        self._cond = threading.Condition()
        self._inflight: dict[str, int] = {}
        self._paused = False
        self._pause_token = 0
        self._paused_by: dict[str, Any] | None = None
        self._held: collections.deque[_Held] = collections.deque()
        self._n_requests = self._n_failed = self._n_held = 0
        self._health_rounds = 0
        self._pause_ms_max = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[_ClientConn] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rbuf = memoryview(bytearray(_READ_SIZE))   # every read lands here (one loop thread: one at a time)
        self._probe_now: asyncio.Event | None = None
        # Backend timeouts: one watchdog scans the deadlines of requests in flight (cheaper than a timer
        # per request); an overdue connection is aborted, which fails the waiting read.
        self._deadlines: dict[_UpConn, float] = {}
        self._timed_out: set[_UpConn] = set()
        self._now: Callable[[], float] = lambda: 0.0

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, sock: socket.socket | None = None) -> tuple[str, int]:
        """Bind, start the loop thread and the health checker; return the bound (host, port).

        ``sock``: an already bound and listening TCP socket to serve on instead (the LB process gets its
        listener from the agent, so a taken port is the agent's error to report)."""
        if self._thread is not None:
            return self.address
        if sock is None:
            sock = bind_listener(self.host, self.port)
        sock.setblocking(False)
        self.address = sock.getsockname()[:2]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(sock, ready, failure), daemon=True,
                                        name=f"sculpt-lb:{self.address[1]}")
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self.address

    def _run(self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(loop.create_server(self._accept, sock=sock))
            self._probe_now = asyncio.Event()
            self._now = loop.time
            self._spawn(self._health_loop())
            self._spawn(self._watchdog())
        except BaseException as e:  # noqa: BLE001 - handed to start()
            failure.append(e)
            sock.close()
            loop.close()
            self._loop = None
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._clients):
            c.abort()
        for pool in self._pools.values():
            for up in pool:
                up.close()
        self._pools = {}
        for entry in self._held:
            if entry.timer is not None:
                entry.timer.cancel()
        self._held.clear()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stop(self) -> None:
        """Stop listening, close every connection, end the loop thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> LoadBalancer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        assert self._loop is not None
        t = self._loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread (so it never races request handling) and return its result."""
        loop = self._loop
        if loop is None or self._thread is None or threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                fut.set_exception(e)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)

    # -- control (thread-safe) -----------------------------------------------------------------------
    def set_backends(self, backends: list[Backend]) -> None:
        """Atomically replace the backend set. Removed (or zero-weight) backends get no new requests;
        requests in flight to them finish normally. New backends count as healthy until a check fails
        (a check runs at once)."""
        ids = [b.id for b in backends]
        if len(set(ids)) != len(ids):
            raise ConfigError("backend ids must be unique", "give every backend its own id")
        for b in backends:
            if b.weight < 0:
                raise ConfigError(f"backend '{b.id}' has a negative weight", "use a weight of 0 or more")
        self._call(lambda: self._apply_backends(list(backends)))

    def _apply_backends(self, backends: list[Backend]) -> None:
        new = {b.id: b for b in backends}
        old = self._backends
        self._healthy = {i: self._healthy.get(i, True) for i in new}
        self._swrr = {i: self._swrr.get(i, 0) for i in new}
        self._ring = build_ring((b.id, b.weight) for b in backends)
        self._backends = new
        for b in backends:
            self._known[b.id] = b
            self._bstats.setdefault(b.id, _BStats())
        for i, b in old.items():
            if i not in new or (new[i].host, new[i].port) != (b.host, b.port):
                for up in self._pools.pop(i, []):
                    up.close()
        if self._probe_now is not None:
            self._probe_now.set()

    def configure(self, *, routing: str | None = None, hash_key: str | None = None,
                  pause_max_ms: int | None = None, health_path: str | None = None) -> None:
        """Change routing, the hash key, the longest hold or the default health path while serving."""
        if routing is not None and routing not in ("weighted", "hash"):
            raise ConfigError(f"unknown routing '{routing}'", "use routing='weighted' or routing='hash'")

        def go() -> None:
            if routing is not None:
                self.routing = routing
            if hash_key is not None:
                self.hash_key = hash_key
            if pause_max_ms is not None:
                self.pause_max_ms = pause_max_ms
            if health_path is not None:
                self.health_path = health_path
            if self._probe_now is not None:
                self._probe_now.set()

        self._call(go)

    def pause(self, auto_resume_s: float | None = None, *, owner_pid: int | None = None,
              lease_s: float | None = None) -> None:
        """Hold new requests from now on (returns once in effect). ``auto_resume_s``: resume by itself
        after that long, a safety net should the caller die while paused. ``owner_pid`` and ``lease_s``
        are recorded as ``paused_by`` in ``stats()`` (who paused, since when, for how long it may): the
        supervisor acts on them; the LB itself only keeps the ``auto_resume_s`` safety net."""

        def go() -> None:
            self._paused = True
            self._pause_token += 1
            self._paused_by = {"pid": owner_pid, "since": time.time(), "lease_s": lease_s}
            if auto_resume_s is not None and self._loop is not None:
                token = self._pause_token

                def safety_net() -> None:
                    if self._pause_token == token:  # no newer pause since
                        self._resume_now()

                self._loop.call_later(auto_resume_s, safety_net)

        self._call(go)

    def resume(self) -> None:
        """Release held requests in arrival order and stop holding."""
        self._call(self._resume_now)

    def _resume_now(self) -> None:
        self._paused = False
        self._paused_by = None
        while self._held and not self._paused:
            entry = self._held.popleft()
            self._release(entry)
            if entry.client.closed:
                continue
            self._route(entry.client, entry.req, frozenset())

    def in_flight(self, backend_id: str | None = None) -> int:
        """Requests sent to ``backend_id`` (or to any backend) whose response has not been relayed yet."""
        with self._cond:
            return sum(self._inflight.values()) if backend_id is None else self._inflight.get(backend_id, 0)

    def wait_idle(self, backend_id: str, timeout_s: float) -> bool:
        """Block until nothing is in flight to ``backend_id``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight.get(backend_id, 0) == 0, timeout=timeout_s)

    def health(self) -> dict[str, bool]:
        """The latest health verdict per current backend."""
        return dict(self._healthy)

    def check(self, backend_id: str) -> bool | None:
        """Run an active health check of ``backend_id`` now and make its verdict the one routing uses;
        return it (``None`` when no current backend has that id, or the LB is not running).

        For a supervisor that has just restarted a backend's process: once this returns True the LB routes
        to it, instead of refusing it (502) until its next health round."""
        loop = self._loop
        if loop is None or self._thread is None:
            return None
        return asyncio.run_coroutine_threadsafe(self._check(backend_id), loop).result(timeout=10)

    async def _check(self, backend_id: str) -> bool | None:
        task = asyncio.current_task()
        if task is not None:  # cancelled by stop() like the LB's own tasks (the caller then gets an error)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        b = self._backends.get(backend_id)
        if b is None:
            return None
        started = self._now()
        ok = await self._probe(b)
        self._record({b: ok}, started)
        return ok

    def _record(self, verdicts: dict[Backend, bool], started: float) -> None:
        """Keep the verdicts of checks that started at ``started`` for backends still current, unless a
        check that started later (or a request that failed later) already gave one."""
        current, seen = self._backends, self._verdict_t
        fresh = {b.id: ok for b, ok in verdicts.items()
                 if current.get(b.id) == b and seen.get(b.id, float("-inf")) <= started}
        if fresh:
            self._healthy = {**self._healthy, **fresh}
            self._verdict_t = {**seen, **dict.fromkeys(fresh, started)}

    def owner(self, key: str) -> str | None:
        """Where a request for ``key`` goes under hash routing: the first healthy backend clockwise."""
        return self._ring_owner(key, frozenset())

    def stats(self) -> dict[str, Any]:
        """Counters as documented in the module docstring (also served at ``GET /__lb/stats``)."""
        return self._call(self._stats_now)

    def _stats_now(self) -> dict[str, Any]:
        with self._cond:
            inflight = dict(self._inflight)
        return {
            "address": f"{self.address[0]}:{self.address[1]}", "routing": self.routing, "paused": self._paused,
            "paused_by": dict(self._paused_by) if self._paused_by is not None else None,
            "requests": self._n_requests, "failed": self._n_failed, "held": self._n_held,
            "held_now": len(self._held), "pause_ms_max": round(self._pause_ms_max, 3),
            "in_flight": sum(inflight.values()), "health_rounds": self._health_rounds,
            "backends": {
                i: {"host": b.host, "port": b.port, "weight": b.weight, "active": i in self._backends,
                    "healthy": self._healthy.get(i, False), "requests": self._bstats[i].requests,
                    "failed": self._bstats[i].failed, "in_flight": inflight.get(i, 0)}
                for i, b in ((i, self._backends.get(i, k)) for i, k in self._known.items())
            },
        }

    # -- routing -------------------------------------------------------------------------------------
    def _ring_owner(self, key: str, exclude: frozenset[str]) -> str | None:
        """The first healthy backend clockwise from ``key`` not in ``exclude`` (``sculpt.domain.ring``)."""
        return self._ring.owner(key, exclude, self._healthy)

    def _pick(self, req: _Req, exclude: frozenset[str]) -> Backend | None:
        if self.routing == "hash":
            if req.key is None:
                req.key = _key_from_target(req.target, self.hash_key) or ""
            if req.key:
                o = self._ring_owner(req.key, exclude)
                return None if o is None else self._backends[o]
        best, total, cur = None, 0, self._swrr
        for i, b in self._backends.items():
            if b.weight <= 0 or i in exclude or not self._healthy.get(i, False):
                continue
            cur[i] += b.weight
            total += b.weight
            if best is None or cur[i] > cur[best]:
                best = i
        if best is None:
            return None
        cur[best] -= total
        return self._backends[best]

    # -- health --------------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        assert self._probe_now is not None
        while True:
            self._probe_now.clear()
            backends = list(self._backends.values())
            started = self._now()
            results = await asyncio.gather(*(self._probe(b) for b in backends))
            self._record(dict(zip(backends, results, strict=True)), started)
            self._health_rounds += 1
            try:
                async with asyncio.timeout(self.health_interval_s):
                    await self._probe_now.wait()
            except TimeoutError:
                pass

    async def _watchdog(self) -> None:
        tick = min(0.5, self.backend_timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = self._now()
            for up, deadline in list(self._deadlines.items()):
                if now > deadline and up not in self._timed_out and up.transport is not None:
                    self._timed_out.add(up)
                    up.transport.abort()

    async def _probe(self, b: Backend) -> bool:
        w: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(max(0.5, min(2.0, 4 * self.health_interval_s))):
                r, w = await asyncio.open_connection(b.host, b.port)
                w.write(f"GET {b.health_path or self.health_path} HTTP/1.1\r\nHost: {b.host}:{b.port}\r\n"
                        "Connection: close\r\n\r\n".encode("latin-1"))
                line = await r.readline()
            parts = line.split(b" ", 2)
            return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 300
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            return False
        finally:
            if w is not None:
                w.close()

    # -- proxying (asyncio Protocols: no task or future per request on the hot path) ------------------
    def _accept(self) -> _ClientConn:
        return _ClientConn(self)

    def _dispatch(self, client: _ClientConn, req: _Req) -> None:
        self._n_requests += 1
        if self._paused:
            loop = self._loop
            assert loop is not None
            entry = _Held(client, req, loop.time())
            entry.timer = loop.call_later(self.pause_max_ms / 1000.0, self._hold_expired, entry)
            self._held.append(entry)
            self._n_held += 1
            return
        self._route(client, req, frozenset())

    def _release(self, entry: _Held) -> None:
        assert self._loop is not None
        if entry.timer is not None:
            entry.timer.cancel()
        self._pause_ms_max = max(self._pause_ms_max, (self._loop.time() - entry.t0) * 1000.0)

    def _hold_expired(self, entry: _Held) -> None:
        try:
            self._held.remove(entry)
        except ValueError:
            return
        self._release(entry)
        self._n_failed += 1
        entry.client.respond(503, b"paused too long\n", entry.req.close, "Retry-After: 1\r\n")

    def _route(self, client: _ClientConn, req: _Req, tried: frozenset[str]) -> None:
        b = self._pick(req, tried)
        if b is None:
            self._n_failed += 1
            client.respond(502, b"no healthy backend\n" if not tried else b"backend failed\n", req.close)
            return
        self._bstats[b.id].requests += 1
        with self._cond:
            self._inflight[b.id] = self._inflight.get(b.id, 0) + 1
        up = self._take(b.id)
        if up is not None:
            up.send(client, req, b, tried | {b.id}, reused=True)
        else:
            self._spawn(self._connect(client, req, b, tried | {b.id}))

    async def _connect(self, client: _ClientConn, req: _Req, b: Backend, tried: frozenset[str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, up = await loop.create_connection(lambda: _UpConn(self), b.host, b.port)
        except (OSError, TimeoutError):
            self._upstream_failed(client, req, b, tried, "connect")
            return
        up.send(client, req, b, tried, reused=False)

    def _done(self, b: Backend) -> None:
        with self._cond:
            n = self._inflight[b.id] - 1
            if n:
                self._inflight[b.id] = n
            else:
                del self._inflight[b.id]
                self._cond.notify_all()

    def _upstream_failed(self, client: _ClientConn, req: _Req, b: Backend, tried: frozenset[str],
                         kind: str) -> None:
        """The backend failed before answering: timeout → 504; a pooled connection it had closed → resend
        an idempotent request on a fresh one; else mark it down and retry an idempotent request once on
        another backend. A write is never sent twice."""
        if kind == "stale" and req.method in _IDEMPOTENT and not client.closed:
            self._spawn(self._connect(client, req, b, tried))   # still in flight to b
            return
        self._bstats[b.id].failed += 1
        self._done(b)
        if kind == "timeout":
            self._n_failed += 1
            client.respond(504, b"backend timed out\n", True)
            return
        self._healthy = {**self._healthy, b.id: False}   # down until an active check passes
        self._verdict_t = {**self._verdict_t, b.id: self._now()}  # a check begun before this failure is stale
        if self._probe_now is not None:
            self._probe_now.set()
        if req.method in _IDEMPOTENT and len(tried) < 2 and not client.closed:
            self._route(client, req, tried)
            return
        self._n_failed += 1
        client.respond(502, b"backend failed\n", req.close)

    def _take(self, bid: str) -> _UpConn | None:
        pool = self._pools.get(bid)
        while pool:
            up = pool.pop()
            if not up.lost:
                return up
        return None

    def _give(self, b: Backend, up: _UpConn) -> None:
        pool = self._pools.setdefault(b.id, [])
        if self._backends.get(b.id) == b and len(pool) < self.pool_size and not up.lost:
            pool.append(up)
        else:
            up.close()

    def _stats_response(self, client: _ClientConn, req: _Req) -> None:
        if req.target.split("?")[0] == "/__lb/stats":
            client.respond(200, json.dumps(self._stats_now()).encode(), req.close, ctype="application/json")
        else:
            client.respond(400, b"unknown /__lb/ endpoint\n", req.close)


class _Held:
    """A request waiting for ``resume()``."""

    __slots__ = ("client", "req", "t0", "timer")

    def __init__(self, client: _ClientConn, req: _Req, t0: float) -> None:
        self.client, self.req, self.t0 = client, req, t0
        self.timer: asyncio.TimerHandle | None = None


class _Reject(Exception):
    """A request the LB refuses to forward: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- framing ------------------------------------------------------------------------------------------
# h11 frames every request and answer. A head already in the one form h11 would rebuild it to (HTTP/1.1,
# ``Name: value`` lines of visible ASCII, no hop-by-hop header, at most one plain Content-Length, and for a
# request exactly one Host) is recognised by one regular expression instead, for speed: it is taken only
# when h11 would read it the same way and the LB would forward the same bytes (tests/local/test_lb_framing.py
# checks that against h11 on generated heads); anything else goes through h11. ``FAST_PATH = False`` sends
# everything through h11.
FAST_PATH = True
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_LINE = rb"(?:" + _TOKEN + rb": [!-~]++(?: ++[!-~]++)*+\r\n)*+\r\n"   # possessive: no backtracking
_SIMPLE_REQ = re.compile(rb"(?!CONNECT )([A-Z]{1,16}) (/[!-~]*) HTTP/1\.1\r\n" + _LINE)
_SIMPLE_RESP = re.compile(rb"HTTP/1\.1 (?!204|304)[2-5]\d\d [\t -~]*\r\n" + _LINE)
# on the lower-cased head: a header the fast path leaves to h11
_REQ_HOP = re.compile(rb"\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|expect):")
_RESP_HOP = re.compile(rb"\n(?:keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade):")
_CL_DIGITS = re.compile(rb" (0|[1-9]\d{0,14})\r\n")
_CONN_VALUE = re.compile(rb" (keep-alive|close)\r\n")
_SLOW = object()     # the fast path does not apply: h11 decides


def _fast_request(buf: bytearray) -> _Req | object | None:
    """The request at the front of ``buf`` if its head is in h11's normal form (its bytes are then taken off
    ``buf``); None: more bytes are needed (of the head, or of a fast-path body); ``_SLOW``: let h11 frame it."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:   # wait for the rest of the head, unless h11 would see one already (bare LF) or it is too long
        return None if len(buf) <= _MAX_HEAD and _HEAD_END.search(buf) is None else _SLOW
    if end > _MAX_HEAD:
        return _SLOW
    head = bytes(buf[:end + 4])
    m = _SIMPLE_REQ.fullmatch(head)
    if m is None:
        return _SLOW
    low = head.lower()
    if low.count(b"\nhost:") != 1 or _REQ_HOP.search(low) is not None:
        return _SLOW
    length = 0
    i = low.find(b"\ncontent-length:")
    if i >= 0:
        c = _CL_DIGITS.match(low, i + 16)
        if c is None or low.find(b"\ncontent-length:", i + 16) >= 0:
            return _SLOW
        length = int(c.group(1))
        if length > _MAX_BODY:
            return _SLOW
    stop = end + 4 + length
    if len(buf) < stop:
        return None
    body = bytes(buf[end + 4:stop]) if length else b""
    del buf[:stop]
    return _Req(m.group(1).decode("ascii"), m.group(2).decode("ascii"), head, body, False)


def _new_server() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """The lower-cased options of every ``Connection`` header (``close``, ``keep-alive``, or names of more
    hop-by-hop headers, which a proxy drops too; never ``Host``)."""
    return {t.strip() for name, value in headers if name == b"connection"
            for t in value.lower().split(b",")} - {b"host"}


def _forward_head(ev: h11.Request, raw_head: bytes, body_len: int) -> tuple[bytes, bool, bool]:
    """The head sent upstream, rebuilt from what h11 parsed (never the client's bytes): hop-by-hop headers
    dropped, HTTP/1.1, the body framed by one Content-Length (where the client put its framing header).
    Returns (head, client wants close, HTTP/1.0).

    Framing h11 accepts but a backend might read differently is refused here (``_Reject``): a repeated
    Content-Length (h11 keeps one when the values agree), Transfer-Encoding with Content-Length, obs-fold,
    and a repeated Host (which one would the app take?).
    """
    if _OBS_FOLD.search(raw_head):
        raise _Reject(400, "a header line is folded (obs-fold); send each header on one line")
    tokens = _connection_tokens(ev.headers)
    drop = _HOP_CL | tokens if tokens else _HOP_CL
    lines = [ev.method, b" ", ev.target, b" HTTP/1.1\r\n"]
    n_cl, te, hosts = 0, False, 0
    for raw_name, value in ev.headers.raw_items():
        name = raw_name.lower()
        if name == b"host":
            hosts += 1
        if name in drop:
            if name == b"content-length":
                n_cl += 1
                lines += (raw_name, b": %d\r\n" % body_len)
            elif name == b"transfer-encoding":
                te = True
                lines.append(b"Content-Length: %d\r\n" % body_len)
            continue
        lines += (raw_name, b": ", value, b"\r\n")
    if hosts > 1:
        raise _Reject(400, "Host is given more than once; send it once")
    if n_cl:
        if te:
            raise _Reject(400, "both Transfer-Encoding and Content-Length are set; send one of them")
        cls = _CL_LINE.findall(raw_head)
        if len(cls) != 1 or b"," in cls[0]:
            raise _Reject(400, "Content-Length is given more than once; send it once")
    lines.append(b"\r\n")
    v10 = ev.http_version == b"1.0"
    close = b"close" in tokens or (v10 and b"keep-alive" not in tokens)
    return b"".join(lines), close, v10


class _RequestReader:
    """Frames the requests on one client connection: the fast path, else a fresh h11 parser per request."""

    __slots__ = ("h", "fed", "ev", "body")

    def __init__(self) -> None:
        self.h: h11.Connection | None = None   # the parser of the request being read
        self.fed = bytearray()      # what that parser got until its request head was parsed (for raw checks)
        self.ev: h11.Request | None = None
        self.body = bytearray()

    def read(self, buf: bytearray) -> _Req | None:
        """Take one complete request off the front of ``buf``; None if more bytes are needed. Raises
        ``h11.RemoteProtocolError`` or ``_Reject`` for a request that must not be forwarded."""
        h = self.h
        if h is None:
            if FAST_PATH:
                got = _fast_request(buf)
                if got is not _SLOW:
                    assert got is None or isinstance(got, _Req)
                    return got
            h = self.h = _new_server()
            self.ev = None
            self.fed.clear()
            self.body.clear()
        data = bytes(buf)
        buf.clear()
        if self.ev is None:
            self.fed += data
        h.receive_data(data)
        while True:
            ev = h.next_event()
            if isinstance(ev, h11.Data):
                self.body += ev.data
                if len(self.body) > _MAX_BODY:
                    raise _Reject(413, "body too large")
            elif isinstance(ev, h11.Request):
                if ev.method == b"CONNECT":
                    raise _Reject(405, "CONNECT is not supported")
                self.ev = ev
                m = _HEAD_END.search(self.fed)
                if m is not None:
                    del self.fed[m.start():]
                if len(self.fed) > _MAX_HEAD:   # h11's own bound holds only while a head is incomplete
                    raise _Reject(431, f"request head over {_MAX_HEAD // 1024} KiB")
            elif isinstance(ev, h11.EndOfMessage):
                req_ev = self.ev
                assert req_ev is not None
                body = bytes(self.body)
                head, close, v10 = _forward_head(req_ev, bytes(self.fed), len(body))
                rest = h.trailing_data[0]
                self.h = None
                if rest:
                    buf[:0] = rest
                req = _Req(req_ev.method.decode("ascii"), req_ev.target.decode("ascii"), head, body, close)
                req.v10 = v10
                return req
            elif ev is h11.NEED_DATA:
                return None
            else:   # PAUSED / ConnectionClosed: nothing more can be read as a plain request
                raise _Reject(400, "unexpected request")

    def wants_continue(self) -> bool:
        """The request head is in and its client waits for ``100 Continue`` before sending the body."""
        return self.h is not None and self.ev is not None and self.h.they_are_waiting_for_100_continue


class _ClientConn(asyncio.BufferedProtocol):
    """One client connection: reads its requests (one at a time, pipelined ones wait) and writes answers."""

    def __init__(self, lb: LoadBalancer) -> None:
        self.lb = lb
        self.buf = bytearray()      # bytes not framed yet (those that came while a request was answered too)
        self.reader = _RequestReader()
        self.transport: asyncio.Transport | None = None
        self.busy = False           # a request is being answered
        self.closed = False
        self.close_after = False    # the client half-closed: answer, then close
        self.reading_paused = False
        self.sent_continue = False
        self.up: _UpConn | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lb._clients.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.lb._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.lb._rbuf[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        self.buf += data
        if not self.busy:
            self.next_request()
        elif len(self.buf) > _MAX_HEAD and self.transport is not None and not self.reading_paused:
            self.reading_paused = True          # pipelining ahead of us: stop reading until we catch up
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.busy:
            self.close_after = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lb._clients.discard(self)

    def pause_writing(self) -> None:       # the client reads slowly: stop reading from its backend
        if self.up is not None:
            self.up.pause_reading(True)

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading(False)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def next_request(self) -> None:
        while not self.busy and not self.closed and self.buf:
            try:
                req = self.reader.read(self.buf)
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint if e.error_status_hint in (400, 413, 431, 501) else 400
                self._refuse(status, f"bad request: {e}")
                return
            except _Reject as e:
                self._refuse(e.status, f"bad request: {e}")
                return
            if req is None:
                if not self.sent_continue and self.reader.wants_continue():
                    self.sent_continue = True   # the client waits for a go-ahead before sending its body
                    self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            self.sent_continue = False
            self.busy = True
            if req.target.startswith("/__lb/"):
                self.lb._stats_response(self, req)
            else:
                self.lb._dispatch(self, req)

    def _refuse(self, status: int, message: str) -> None:
        """Ambiguous or malformed framing: answer once and close, so nothing after it is read as a request."""
        self.busy = True
        self.buf.clear()
        self.respond(status, message.replace("\n", " ").encode("utf-8", "replace") + b"\n", True)

    def respond(self, status: int, body: bytes, close: bool, extra: str = "",
                ctype: str = "text/plain; charset=utf-8") -> None:
        """An answer made by the LB itself (an error, or /__lb/stats)."""
        self.write(_simple(status, body, close=close, extra=extra, ctype=ctype))
        self.finished(close)

    def finished(self, close: bool) -> None:
        """The current answer is complete: close, or go on with the next buffered request."""
        self.up = None
        if close or self.close_after:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        self.busy = False
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.buf:
            self.next_request()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


_UP_REQ: dict[str, h11.Request] = {}   # per method: the request event that tells an upstream parser what it asked


def _up_request(method: str) -> h11.Request:
    ev = _UP_REQ.get(method)
    if ev is None:
        ev = h11.Request(method=method, target="/", headers=[("Host", "backend")])
        if len(_UP_REQ) < 64:
            _UP_REQ[method] = ev
    return ev


class _UpConn(asyncio.BufferedProtocol):
    """One keep-alive connection to a backend: sends a request, frames the answer (the fast path, else
    h11) and streams it to the client under a head with the LB's own keep-alive."""

    IDLE, HEAD, LENGTH, H11, EOF = range(5)

    def __init__(self, lb: LoadBalancer) -> None:
        self.lb = lb
        self.transport: asyncio.Transport | None = None
        self.h: h11.Connection | None = None   # the answer's parser when h11 frames it
        self.state = self.IDLE
        self.lost = False
        self.buf = bytearray()
        self.client: _ClientConn | None = None
        self.req: _Req | None = None
        self.backend: Backend | None = None
        self.tried: frozenset[str] = frozenset()
        self.reused = False
        self.started = False
        self.remaining = 0
        self.chunked = False         # h11 de-chunked the answer: it goes to the client chunk-framed again
        self.pending = b""           # the answer's head, sent with its first body bytes (one segment)
        self.up_close = False
        self.client_close = False
        self.reading_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self, on: bool) -> None:
        """Flow control from a slow client; no backend timeout runs while we are the ones not reading."""
        if self.transport is not None and on != self.reading_paused and not self.lost:
            self.reading_paused = on
            if on:
                self.transport.pause_reading()
                self.lb._deadlines.pop(self, None)
            else:
                self.transport.resume_reading()
                if self.state != self.IDLE:
                    self.lb._deadlines[self] = self.lb._now() + self.lb.backend_timeout_s

    def send(self, client: _ClientConn, req: _Req, b: Backend, tried: frozenset[str], reused: bool) -> None:
        assert self.transport is not None
        self.client, self.req, self.backend, self.tried, self.reused = client, req, b, tried, reused
        self.state, self.started, self.h, self.pending = self.HEAD, False, None, b""
        self.buf.clear()
        client.up = self
        self.lb._deadlines[self] = self.lb._now() + self.lb.backend_timeout_s
        self.transport.write(req.head + req.body if req.body else req.head)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.lb._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.lb._rbuf[:nbytes]))   # a copy: the client's transport may keep it

    def data_received(self, data: bytes) -> None:
        if self.state == self.IDLE:      # unsolicited bytes: this connection cannot be trusted
            self.close()
            return
        client = self.client
        assert client is not None
        if client.closed:
            assert self.transport is not None
            self.transport.abort()
            return
        if not self.reading_paused:       # backend_timeout_s bounds the wait for each next byte
            self.lb._deadlines[self] = self.lb._now() + self.lb.backend_timeout_s
        state = self.state
        if state == self.LENGTH:
            take = data[:self.remaining]
            client.write(take)
            self.remaining -= len(take)
            if self.remaining == 0:
                if len(data) > len(take):
                    self.up_close = True   # bytes past the answer: do not reuse this connection
                self._finish()
        elif state == self.H11 or state == self.EOF:
            assert self.h is not None
            self.h.receive_data(data)
            self._events()
        else:                             # the head: what came so far
            if self.buf:
                self.buf += data
                data = bytes(self.buf)
                self.buf.clear()
            got = self._fast_head(data) if FAST_PATH else False
            if got is None:
                self.buf += data
            elif not got:
                self._to_h11(data)

    def _fast_head(self, data: bytes) -> bool | None:
        """Frame the answer here if its head is in h11's normal form (see ``FAST_PATH``): True once done,
        None to wait for the rest of the head, False to let h11 frame it."""
        req, client = self.req, self.client
        assert req is not None and client is not None
        if req.method == "HEAD":
            return False
        end = data.find(b"\r\n\r\n")
        if end < 0:   # wait for the rest of the head, unless h11 would see one already (bare LF) or it is too long
            return None if len(data) <= _MAX_HEAD and _HEAD_END.search(data) is None else False
        head = data[:end + 4]
        if _SIMPLE_RESP.fullmatch(head) is None:
            return False
        low = head.lower()
        i = low.find(b"\ncontent-length:")
        if i < 0 or _RESP_HOP.search(low) is not None:
            return False
        c = _CL_DIGITS.match(low, i + 16)
        if c is None or low.find(b"\ncontent-length:", i + 16) >= 0:
            return False
        length = int(c.group(1))
        up_close = False
        j = low.find(b"\nconnection:")
        if j >= 0:
            k = _CONN_VALUE.match(low, j + 12)
            if k is None or low.find(b"\nconnection:", j + 12) >= 0:
                return False
            up_close = k.group(1) == b"close"
            head = head[:j + 1] + head[k.end():]
        self.client_close = req.close
        self.up_close = up_close
        head = head[:-2] + (b"Connection: close\r\n\r\n" if req.close else b"Connection: keep-alive\r\n\r\n")
        self.started = True
        start = end + 4
        take = data[start:start + length]
        client.write(head + take)
        self.remaining = length - len(take)
        if self.remaining:
            self.state = self.LENGTH
        else:
            if len(data) > start + length:
                self.up_close = True      # bytes past the answer: do not reuse this connection
            self._finish()
        return True

    def _to_h11(self, data: bytes) -> None:
        """Hand the answer so far to a fresh h11 parser told which request it answers."""
        req = self.req
        assert req is not None
        h = self.h = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        h.send(_up_request(req.method))
        h.send(_EOM)
        h.receive_data(data)
        self.state = self.H11
        self._events()

    def eof_received(self) -> bool:
        if self.state == self.EOF and self.h is not None:   # an answer delimited by the close: h11 ends it
            self.h.receive_data(b"")
            self._events()
        return False

    def _events(self) -> None:
        h, client = self.h, self.client
        assert client is not None and h is not None
        while True:
            try:
                ev = h.next_event()
            except h11.RemoteProtocolError as e:   # a malformed answer: connection_lost says what it costs
                _log.debug("bad answer from backend %s: %s", self.backend.id if self.backend else "?", e)
                self.close()
                return
            if isinstance(ev, h11.Data):
                data = ev.data
                if self.chunked:
                    if not data:
                        continue
                    data = b"%x\r\n%s\r\n" % (len(data), data)
                if self.pending:
                    data, self.pending = self.pending + data, b""
                client.write(data)
            elif isinstance(ev, h11.Response):
                self._start(ev)
            elif isinstance(ev, h11.EndOfMessage):
                end = self.pending
                if self.chunked:
                    trailers = ev.headers.raw_items()
                    end += b"0\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in trailers) + b"\r\n"
                if end:
                    client.write(end)
                self.pending = b""
                if not (h.our_state is h11.DONE and h.their_state is h11.DONE) or h.trailing_data[0]:
                    self.up_close = True    # h11 says close, or bytes past the answer: do not reuse it
                self._finish()
                return
            elif isinstance(ev, h11.InformationalResponse):   # an interim 1xx answer: wait for the real one
                continue
            elif ev is h11.NEED_DATA or isinstance(ev, h11.ConnectionClosed):
                if self.pending:    # the head goes on now, with whatever of the body is in
                    client.write(self.pending)
                    self.pending = b""
                return
            else:   # PAUSED: a protocol switch nobody asked for
                self.close()
                return

    def _start(self, ev: h11.Response) -> None:
        """The answer's head for the client, rebuilt from what h11 parsed: the backend's headers minus
        hop-by-hop ones, our own framing (Content-Length kept, chunked re-framed, until-close) and keep-alive."""
        client, req = self.client, self.req
        assert client is not None and req is not None
        status = ev.status_code
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, ev.reason)]
        length = te = False
        cl_line: tuple[bytes, ...] = ()
        tokens = _connection_tokens(ev.headers)
        drop = _HOP_CL | tokens if tokens else _HOP_CL
        for raw_name, value in ev.headers.raw_items():
            name = raw_name.lower()
            if name in drop:
                if name == b"content-length":
                    length = True
                    cl_line = (raw_name, b": ", value, b"\r\n")
                    lines += cl_line
                elif name == b"transfer-encoding":
                    te = True
                continue
            lines += (raw_name, b": ", value, b"\r\n")
        no_body = req.method == "HEAD" or status in (204, 304)
        self.chunked = False
        if te and not no_body:
            if length:     # chunked wins (h11 reads it so): the length line must not go on
                lines = [x for x in lines if x not in cl_line] if cl_line else lines
            self.chunked = not req.v10
            if self.chunked:
                lines.append(b"Transfer-Encoding: chunked\r\n")
        until_eof = not no_body and ((te and not self.chunked) or (not te and not length))
        if until_eof:
            self.state = self.EOF
        self.client_close = req.close or until_eof
        self.up_close = until_eof
        lines.append(b"Connection: close\r\n\r\n" if self.client_close else b"Connection: keep-alive\r\n\r\n")
        self.started = True
        self.pending = b"".join(lines)

    def _finish(self) -> None:
        client, b = self.client, self.backend
        assert client is not None and b is not None
        self.lb._deadlines.pop(self, None)
        self.state, self.client, self.req, self.h = self.IDLE, None, None, None
        self.lb._done(b)
        self.pause_reading(False)           # never pool a connection that is not reading
        if self.up_close:
            self.close()
        else:
            self.lb._give(b, self)
        client.finished(self.client_close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        lb = self.lb
        lb._deadlines.pop(self, None)
        timed_out = self in lb._timed_out
        lb._timed_out.discard(self)
        if self.state == self.IDLE:
            return
        client, req, b = self.client, self.req, self.backend
        assert client is not None and req is not None and b is not None
        state, self.state = self.state, self.IDLE
        if client.closed and state != self.EOF:   # dropped because its client left: not the backend's fault
            lb._done(b)
            return
        if state == self.EOF:                     # the close ends the answer (as before: a reset too)
            self.up_close = True
            if self.pending:
                client.write(self.pending)
                self.pending = b""
            self.client, self.state = client, state
            self._finish()
        elif not self.started:
            kind = "timeout" if timed_out else ("stale" if self.reused and not self.buf and self.h is None
                                                else "reset")
            lb._upstream_failed(client, req, b, self.tried, kind)
        else:   # died mid-answer: the client got part of it, so its connection must go too
            lb._bstats[b.id].failed += 1
            lb._done(b)
            client.abort()


def _parse_backend(text: str) -> Backend:
    """``id=host:port[:weight]`` → Backend."""
    bid, _, rest = text.partition("=")
    bits = rest.rsplit(":", 2) if rest.count(":") >= 2 else rest.rsplit(":", 1)
    if not bid or len(bits) < 2:
        raise ConfigError(f"bad backend '{text}'", "write it as id=host:port or id=host:port:weight")
    return Backend(bid, bits[0], int(bits[1]), int(bits[2]) if len(bits) > 2 else 100)


def main(argv: list[str] | None = None) -> int:
    """``python -m sculpt.providers.local.lb --listen HOST:PORT --backend id=host:port[:weight] ...``."""
    import argparse
    import signal
    import sys

    p = argparse.ArgumentParser(prog="python -m sculpt.providers.local.lb", description="sculpt's local LB")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--backend", action="append", default=[], help="id=host:port[:weight] (repeatable)")
    p.add_argument("--routing", choices=("weighted", "hash"), default="weighted")
    p.add_argument("--port-file", default=None, help="write the bound port here once listening")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    try:
        lb = LoadBalancer(host or "127.0.0.1", int(port or 0), routing=a.routing)
        lb.set_backends([_parse_backend(x) for x in a.backend])
        addr = lb.start()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(addr[1]))
        import os

        os.replace(a.port_file + ".tmp", a.port_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    lb.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
