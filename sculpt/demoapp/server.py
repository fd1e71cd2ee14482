"""The demo application: a small stateful HTTP/1.1 key–value service that sculpt runs and morphs.

Why it exists: the local cloud needs a real application with real state so that a blue/green morph has
something to hand over (checkpoint, final delta, restore), something to lose (acknowledged writes) and
something to burn (CPU work per request, so a smaller shape is measurably slower). A user's own app replaces
it in ``sculpt.yaml``; nothing else in sculpt depends on its internals, only on its HTTP endpoints.

Endpoints (all HTTP/1.1 with keep-alive; every response carries ``X-Served-By: <instance id>``):

- ``GET /healthz`` → 200 ``ok`` (503 ``draining`` after SIGTERM).
- ``PUT /kv/<key>`` (body = value) → 200 ``{"seq": n}`` once the write is in memory and appended to
  ``<data-dir>/wal.log``; 503 in read-only mode. ``GET /kv/<key>`` → 200 value | 404.
  ``DELETE /kv/<key>`` → 200 ``{"seq": n}`` | 404.
- ``GET /work?ms=N`` → burns ~N ms of CPU on a worker thread (hashing releases the GIL, so a shape with
  more cores serves more concurrent work), 200 ``{"ms": N}``.
- ``GET /metrics`` → Prometheus text exposition 0.0.4, or OpenMetrics when ``Accept`` asks for it (see
  :meth:`AppState.metrics_families`).
- ``GET /checkpoint[?since=S]`` → ``{"seq": n, "items": {key: value}, "deleted": [key, ...]}``; with
  ``since`` only keys written (or deleted) after seq S: the final delta of a handover.
- ``POST /restore`` (a checkpoint body) → merges items, removes ``deleted``, sets seq to at least the given
  seq, logs it to the WAL → 200 ``{"seq": n, "keys": k}``.
- ``POST /admin/readonly?on=1|0`` → 200 ``{"readonly": bool}``; while on, writes get 503 (one writer
  during a handover). ``GET /admin/readonly`` reads the flag.

Durability (``--fsync``): a write is acknowledged only after its WAL record has been handed to the kernel
with ``os.write`` on an ``O_APPEND`` descriptor, so it survives the process being killed (``kill -9``).
``--fsync always`` also fsyncs before acknowledging (survives power loss; slower); ``interval`` (default)
fsyncs at most every 100 ms and at shutdown; ``never`` leaves it to the kernel. On start the WAL is replayed
(a torn last line from a crash is ignored).

Values are stored as text: request bodies are decoded as UTF-8 with ``surrogateescape`` so arbitrary bytes
round-trip through the WAL and checkpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from sculpt.metrics.exposition import registry_of, render

__all__ = ["AppState", "Response", "WriteAheadLog", "serve", "spawn", "main"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Payload Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            503: "Service Unavailable"}
# Latency histogram buckets (seconds): sub-millisecond resolution for kv, up to seconds for /work.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_MAX_BODY = 64 * 1024 * 1024
_MAX_WORK_MS = 10_000
FSYNC_POLICIES = ("always", "interval", "never")


@dataclass(frozen=True)
class Response:
    """One HTTP response; ``body`` is bytes, ``ctype`` its Content-Type."""

    status: int
    body: bytes = b""
    ctype: str = "text/plain; charset=utf-8"

    @staticmethod
    def json(status: int, data: object) -> Response:
        return Response(status, json.dumps(data, separators=(",", ":")).encode(), "application/json")


def _enc(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _dec(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class WriteAheadLog:
    """Append-only JSON-lines log: one record per write, delete or restore.

    Records: ``{"s": seq, "k": key, "v": value}`` (put), ``{"s": seq, "k": key, "d": 1}`` (delete),
    ``{"s": seq, "r": {key: value}, "x": [deleted keys]}`` (restore).
    """

    def __init__(self, path: Path, fsync: str = "interval") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.path = path
        self.fsync = fsync
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._dirty = False

    @staticmethod
    def replay(path: Path) -> Iterable[dict[str, object]]:
        """Yield the records of an existing log; stops at a torn (unparseable) line, as a crash leaves."""
        if not path.exists():
            return
        with path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    return
                try:
                    rec = json.loads(line)
                except ValueError:
                    return
                if isinstance(rec, dict):
                    yield rec

    def append(self, record: dict[str, object]) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8", "surrogateescape")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync == "always":
            os.fsync(self._fd)
        else:
            self._dirty = True

    def sync(self) -> None:
        if self._dirty and self.fsync != "never":
            os.fsync(self._fd)
        self._dirty = False

    def close(self) -> None:
        if self.fsync != "never":
            os.fsync(self._fd)
        os.close(self._fd)


@dataclass
class _Metrics:
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS) + 1))
    latency_sum: float = 0.0
    latency_count: int = 0

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        k = (endpoint, code)
        self.requests[k] = self.requests.get(k, 0) + 1
        i = 0
        while i < len(_BUCKETS) and seconds > _BUCKETS[i]:
            i += 1
        self.buckets[i] += 1
        self.latency_sum += seconds
        self.latency_count += 1


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def burn_cpu(ms: float) -> float:
    """Burn about ``ms`` milliseconds of this thread's CPU time; returns the CPU seconds used.

    Hashing a 64 KiB buffer releases the GIL, so several calls on different threads use several cores.
    """
    buf = b"\x5a" * 65536
    start = time.thread_time()
    target = start + ms / 1000.0
    h = hashlib.sha256()
    while time.thread_time() < target:
        h.update(buf)
    return time.thread_time() - start


class AppState:
    """The key–value state, its sequence number and its WAL. Pure request handling (no sockets)."""

    def __init__(self, data_dir: Path, instance_id: str = "demo", fsync: str = "interval") -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.instance_id = instance_id
        self.items: dict[str, tuple[int, str]] = {}   # key -> (seq of last write, value)
        self.deleted: dict[str, int] = {}             # key -> seq of its delete (for deltas)
        self.seq = 0
        self.readonly = False
        self.draining = False
        self.in_flight = 0
        self.metrics = _Metrics()
        self._registry = registry_of(self.metrics_families)
        self.replayed = self._replay(data_dir / "wal.log")
        if self.replayed > 2 * (len(self.items) + len(self.deleted)) + 1000:
            self._compact(data_dir / "wal.log")
        self.wal = WriteAheadLog(data_dir / "wal.log", fsync)

    # -- state ---------------------------------------------------------------------------------------
    def _replay(self, path: Path) -> int:
        n = 0
        for rec in WriteAheadLog.replay(path):
            self._apply(rec)
            n += 1
        return n

    def _compact(self, path: Path) -> None:
        """Rewrite the WAL as one record per live key and tombstone, keeping each one's seq (so deltas
        stay exact); written aside, fsynced, then renamed over the old log."""
        recs: list[tuple[int, dict[str, object]]] = [(s, {"s": s, "k": k, "v": v}) for k, (s, v) in self.items.items()]
        recs += [(s, {"s": s, "k": k, "d": 1}) for k, s in self.deleted.items()]
        recs.sort(key=lambda r: r[0])
        if not recs or recs[-1][0] < self.seq:   # keep the high-water mark even if its key is gone
            recs.append((self.seq, {"s": self.seq, "r": {}, "x": []}))
        tmp = path.with_suffix(".compact")
        with tmp.open("wb") as f:
            for _, r in recs:
                f.write((json.dumps(r, separators=(",", ":")) + "\n").encode("utf-8", "surrogateescape"))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def _apply(self, rec: dict[str, object]) -> None:
        seq = int(rec.get("s", 0))  # type: ignore[call-overload]
        restored = rec.get("r")
        if isinstance(restored, dict):
            for k, v in restored.items():
                self.items[str(k)] = (seq, str(v))
                self.deleted.pop(str(k), None)
            for k in rec.get("x") or []:  # type: ignore[attr-defined]
                if self.items.pop(str(k), None) is not None:
                    self.deleted[str(k)] = seq
        else:
            key = str(rec.get("k"))
            if rec.get("d"):
                self.items.pop(key, None)
                self.deleted[key] = seq
            else:
                self.items[key] = (seq, str(rec.get("v", "")))
                self.deleted.pop(key, None)
        self.seq = max(self.seq, seq)

    def put(self, key: str, value: str) -> int:
        rec: dict[str, object] = {"s": self.seq + 1, "k": key, "v": value}
        self.wal.append(rec)       # durable first, then visible, then acknowledged
        self._apply(rec)
        return self.seq

    def delete(self, key: str) -> int | None:
        if key not in self.items:
            return None
        rec: dict[str, object] = {"s": self.seq + 1, "k": key, "d": 1}
        self.wal.append(rec)
        self._apply(rec)
        return self.seq

    def checkpoint(self, since: int | None = None) -> dict[str, object]:
        lo = -1 if since is None else since
        return {
            "seq": self.seq,
            "items": {k: v for k, (s, v) in self.items.items() if s > lo},
            "deleted": [] if since is None else [k for k, s in self.deleted.items() if s > lo],
        }

    def restore(self, data: dict[str, object]) -> dict[str, int]:
        items = data.get("items") or {}
        deleted = data.get("deleted") or []
        if not isinstance(items, dict) or not isinstance(deleted, list):
            raise ValueError("items must be an object and deleted a list")
        given = int(data.get("seq", 0))  # type: ignore[call-overload]
        seq = max(self.seq, given)
        rec: dict[str, object] = {"s": seq, "r": {str(k): str(v) for k, v in items.items()},
                                  "x": [str(k) for k in deleted]}
        self.wal.append(rec)
        self._apply(rec)
        return {"seq": self.seq, "keys": len(self.items)}

    # -- requests ------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: str, body: bytes) -> Response:
        """Answer every request that does not need a worker thread (all but ``/work``)."""
        if path.startswith("/kv/"):
            key = unquote(path[4:])
            if not key:
                return Response(400, b"empty key\n")
            if method == "GET":
                got = self.items.get(key)
                return Response(404, b"not found\n") if got is None else Response(200, _enc(got[1]),
                                                                                  "application/octet-stream")
            if method in ("PUT", "POST", "DELETE"):
                if self.readonly:
                    return Response(503, b"read-only\n")
                if method == "DELETE":
                    s = self.delete(key)
                    return Response(404, b"not found\n") if s is None else Response.json(200, {"seq": s})
                return Response.json(200, {"seq": self.put(key, _dec(body))})
            return Response(405, b"method not allowed\n")
        if path == "/healthz":
            return Response(503, b"draining\n") if self.draining else Response(200, b"ok\n")
        if path == "/metrics":
            return self.metrics_response()
        if path == "/checkpoint":
            q = parse_qs(query)
            since = q.get("since", [None])[0]
            try:
                return Response.json(200, self.checkpoint(None if since is None else int(since)))
            except ValueError:
                return Response(400, b"since must be an integer\n")
        if path == "/restore":
            if method != "POST":
                return Response(405, b"use POST\n")
            try:
                data = json.loads(body.decode("utf-8", "surrogateescape"))
                if not isinstance(data, dict):
                    raise ValueError("body must be a JSON object")
                return Response.json(200, self.restore(data))
            except (ValueError, TypeError) as e:
                return Response(400, f"bad checkpoint: {e}\n".encode())
        if path == "/admin/readonly":
            if method == "POST":
                on = parse_qs(query).get("on", ["1"])[0]
                if on not in ("0", "1", "true", "false"):
                    return Response(400, b"on must be 1 or 0\n")
                self.readonly = on in ("1", "true")
                if self.readonly:
                    self.wal.sync()
            return Response.json(200, {"readonly": self.readonly, "seq": self.seq})
        return Response(404, b"no such endpoint\n")

    def metrics_families(self) -> list[Metric]:
        """The app's metrics as ``prometheus_client`` families (rendered by ``sculpt.metrics.exposition``)."""
        m = self.metrics
        info = InfoMetricFamily("demoapp", "Instance identity.", labels=["instance_id"])
        info.add_metric([self.instance_id], {})
        requests = CounterMetricFamily("demoapp_requests", "Requests answered, by endpoint and status code.",
                                       labels=["endpoint", "code"])
        for (ep, code), n in sorted(m.requests.items()):
            requests.add_metric([ep, str(code)], n)
        cum, buckets = 0, []
        for le, n in zip(_BUCKETS, m.buckets, strict=False):
            cum += n
            buckets.append((repr(le), float(cum)))
        buckets.append(("+Inf", float(m.latency_count)))
        duration = HistogramMetricFamily("demoapp_request_duration_seconds", "Time to answer a request.")
        duration.add_metric([], buckets, sum_value=m.latency_sum)
        t = os.times()
        return [
            info, requests,
            GaugeMetricFamily("demoapp_in_flight", "Requests being served now.", value=self.in_flight),
            GaugeMetricFamily("demoapp_keys", "Keys held.", value=len(self.items)),
            GaugeMetricFamily("demoapp_seq", "Sequence number of the last write.", value=self.seq),
            GaugeMetricFamily("demoapp_readonly", "1 while writes are refused.", value=int(self.readonly)),
            duration,
            CounterMetricFamily("process_cpu_seconds", "User and system CPU time spent, seconds.",
                                value=t.user + t.system),
            GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size, bytes.", value=_rss_bytes()),
        ]

    def metrics_response(self, accept: str | None = None) -> Response:
        """``GET /metrics``: the text format 0.0.4, or OpenMetrics when ``accept`` asks for it."""
        body, ctype = render(self._registry, accept)
        return Response(200, body, ctype)

    def metrics_text(self) -> str:
        """The text format 0.0.4 (what a scraper that sends no ``Accept`` gets)."""
        return render(self._registry)[0].decode()


def _endpoint(path: str) -> str:
    if path.startswith("/kv/"):
        return "kv"
    name = path.strip("/").split("/", 1)[0]
    return name if name in ("healthz", "work", "metrics", "checkpoint", "restore", "admin") else "other"


def _head(status: int, ctype: str, length: int, instance_id: str, close: bool) -> bytes:
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\nX-Served-By: {instance_id}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode("latin-1")


class _Server:
    """The asyncio HTTP/1.1 front: parses requests, calls :class:`AppState`, tracks connections."""

    def __init__(self, state: AppState, work_threads: int) -> None:
        self.state = state
        self.pool = ThreadPoolExecutor(max_workers=work_threads, thread_name_prefix="work")
        self.idle: set[asyncio.Task[None]] = set()     # connections waiting for their next request
        self.conns: set[asyncio.Task[None]] = set()
        self.closing = False

    async def on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.conns.add(task)
        try:
            await self._serve(reader, writer, task)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            self.idle.discard(task)
            self.conns.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     task: asyncio.Task[None]) -> None:
        st = self.state
        while not self.closing:
            self.idle.add(task)
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            finally:
                self.idle.discard(task)
            t0 = time.perf_counter()
            st.in_flight += 1
            try:
                lines = raw.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    writer.write(_head(400, "text/plain", 12, st.instance_id, True) + b"bad request\n")
                    return
                method, target, version = parts
                path, _, query = target.partition("?")
                length, close, chunked, expect, accept = 0, version == "HTTP/1.0", False, False, ""
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    n = name.strip().lower()
                    if n == "content-length":
                        if not value.strip().isdigit():
                            writer.write(_head(400, "text/plain", 12, st.instance_id, True) + b"bad request\n")
                            return
                        length = int(value.strip())
                    elif n == "connection":
                        v = value.strip().lower()
                        close = v == "close" or (version == "HTTP/1.0" and v != "keep-alive")
                    elif n == "transfer-encoding" and "chunked" in value.lower():
                        chunked = True
                    elif n == "expect" and value.strip().lower() == "100-continue":
                        expect = True
                    elif n == "accept":
                        accept = value.strip()
                if chunked or length > _MAX_BODY:
                    resp = Response(501 if chunked else 413, b"send a Content-Length body\n")
                    close = True
                else:
                    if expect and length:
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = await reader.readexactly(length) if length else b""
                    try:
                        if path == "/work":
                            resp = await self._work(query)
                        elif path == "/metrics":
                            resp = st.metrics_response(accept)
                        else:
                            resp = st.handle(method, path, query, body)
                    except Exception as e:  # noqa: BLE001 - e.g. the WAL's disk is full: not acknowledged
                        print(f"demoapp: {method} {path} failed: {e!r}", file=sys.stderr)
                        resp = Response(500, b"internal error: the request was not applied\n")
                close = close or self.closing
                writer.write(_head(resp.status, resp.ctype, len(resp.body), st.instance_id, close) + resp.body)
                await writer.drain()
                st.metrics.observe(_endpoint(path), resp.status, time.perf_counter() - t0)
                if close:
                    return
            finally:
                st.in_flight -= 1

    async def _work(self, query: str) -> Response:
        try:
            ms = float(parse_qs(query).get("ms", ["10"])[0])
        except ValueError:
            return Response(400, b"ms must be a number\n")
        if not 0 <= ms <= _MAX_WORK_MS:
            return Response(400, f"ms must be within 0..{_MAX_WORK_MS}\n".encode())
        used = await asyncio.get_running_loop().run_in_executor(self.pool, burn_cpu, ms)
        return Response.json(200, {"ms": ms, "cpu_ms": round(used * 1000, 3)})


async def serve(host: str, port: int, data_dir: Path, instance_id: str = "demo", fsync: str = "interval",
                work_threads: int | None = None, port_file: Path | None = None,
                drain_timeout_s: float = 10.0) -> int:
    """Serve until SIGTERM/SIGINT, then stop accepting, finish in-flight requests, flush and return 0."""
    state = AppState(data_dir, instance_id, fsync)
    front = _Server(state, work_threads or max(2, os.cpu_count() or 2))
    try:
        server = await asyncio.start_server(front.on_connection, host, port, backlog=1024)
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror}. To fix: pick a free port.", file=sys.stderr)
        state.wal.close()
        return 1
    bound = server.sockets[0].getsockname()[1]
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(bound))
        tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def _syncer() -> None:
        while True:
            await asyncio.sleep(0.1)
            state.wal.sync()

    syncer = asyncio.create_task(_syncer()) if fsync == "interval" else None
    await stop.wait()
    # Graceful: stop accepting, refuse keep-alive reuse, let in-flight requests finish, then flush.
    server.close()
    state.draining = True
    front.closing = True
    for t in list(front.idle):
        t.cancel()
    deadline = loop.time() + drain_timeout_s
    while front.conns and loop.time() < deadline:
        await asyncio.sleep(0.01)
        for t in list(front.idle):
            t.cancel()
    if syncer is not None:
        syncer.cancel()
    front.pool.shutdown(wait=False, cancel_futures=True)
    state.wal.close()
    return 0


def spawn(data_dir: Path, instance_id: str = "demo", host: str = "127.0.0.1", port: int = 0,
          extra_args: list[str] | None = None, timeout_s: float = 30.0) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``python -m sculpt.demoapp`` as a child process and wait until it listens.

    Returns the process and its bound port (for tests, benchmarks and tools; the agent runs its own).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / f".port-{instance_id}"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "sculpt.demoapp", "--host", host, "--port", str(port),
                             "--data-dir", str(data_dir), "--instance-id", instance_id,
                             "--port-file", str(port_file), *(extra_args or [])])
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise RuntimeError(f"demo app {instance_id} did not start (exit code {proc.returncode})")
        time.sleep(0.01)
    return proc, int(port_file.read_text())


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sculpt.demoapp", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port (see --port-file)")
    p.add_argument("--data-dir", type=Path, required=True, help="holds wal.log; reused across restarts")
    p.add_argument("--instance-id", default=None, help="reported in X-Served-By and /metrics")
    p.add_argument("--fsync", choices=FSYNC_POLICIES, default="interval",
                   help="always: fsync before each ack; interval: every 100 ms; never: leave it to the kernel")
    p.add_argument("--work-threads", type=int, default=None, help="threads for /work (default: cores, min 2)")
    p.add_argument("--port-file", type=Path, default=None, help="write the bound port here once listening")
    a = p.parse_args(argv)
    iid = a.instance_id or os.environ.get("SCULPT_INSTANCE_ID") or f"demo-{os.getpid()}"
    return asyncio.run(serve(a.host, a.port, a.data_dir, iid, a.fsync, a.work_threads, a.port_file))
