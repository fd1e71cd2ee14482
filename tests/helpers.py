"""Small helpers shared by the real-process tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request with urllib; an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def wait_until(pred: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something true (an exception counts as not yet: e.g. the agent being
    replaced right now); ``AssertionError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            v = pred()
        except Exception:  # noqa: BLE001 - ask again
            v = None
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def write_project(tmp_path: Path, spec: dict[str, Any]) -> Path:
    """``tmp_path/proj/sculpt.yaml`` holding ``spec``; returns its path."""
    import yaml

    p = tmp_path / "proj" / "sculpt.yaml"
    p.parent.mkdir()
    p.write_text(yaml.safe_dump(spec))
    return p


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server answering with ``handler`` on a free loopback port, in a thread; yields its base
    URL (``http://127.0.0.1:PORT``) and stops it after."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def answering_once(reply: bytes) -> Iterator[str]:
    """A loopback server that reads one request, answers ``reply`` byte for byte (not necessarily HTTP) and
    closes; yields its base URL."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        srv.close()
        t.join(timeout=5)
