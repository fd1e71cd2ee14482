"""The HTTP side of ``state_sync: http``, shared by the local and cloud platforms.

Checkpoint from blue, restore into green, and the read-only switch that keeps one writer during the
final delta all speak the same small protocol to an instance's address; only how an address is found and
what hint a failure carries differ per platform.
"""

from __future__ import annotations

import http.client
import json
import logging

from sculpt.domain.errors import ProviderError
from sculpt.domain.spec import StateSync
from sculpt.migrate.port import Checkpoint

log = logging.getLogger("sculpt.migrate")

HTTP_TIMEOUT_S = 15.0


def http_call(address: str, method: str, path: str, body: bytes | None = None, *,
              timeout_s: float = HTTP_TIMEOUT_S, fix: str = "see `sculpt status` and the instance log",
              ) -> tuple[int, bytes]:
    """One request to ``host:port``; a connection failure is a ``ProviderError`` carrying ``fix``."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ProviderError(f"{method} {path} on {address} failed: {e}", fix) from None
    finally:
        conn.close()


def fetch_checkpoint(address: str, slot_id: str, sync: StateSync, since: int | None, *, fix: str) -> Checkpoint:
    """The full checkpoint of an instance, or only what changed after seq ``since`` (the final delta)."""
    path = sync.checkpoint_path if since is None else sync.delta_path.replace("{seq}", str(since))
    status, body = http_call(address, "GET", path, fix=fix)
    if status != 200:
        raise ProviderError(f"checkpoint of {slot_id} answered {status}: {body[:120]!r}",
                            f"check app.state_sync.checkpoint_path ({path})")
    return Checkpoint.from_json(json.loads(body))


def push_restore(address: str, slot_id: str, sync: StateSync, checkpoint: Checkpoint, *, fix: str) -> None:
    data = json.dumps(checkpoint.to_json(), separators=(",", ":")).encode()
    status, body = http_call(address, "POST", sync.restore_path, data, fix=fix)
    if status != 200:
        raise ProviderError(f"restore into {slot_id} answered {status}: {body[:120]!r}",
                            f"check app.state_sync.restore_path ({sync.restore_path})")


def switch_readonly(address: str, slot_id: str, on: bool, *, fix: str) -> bool:
    """Turn the app's read-only mode on or off; ``False`` when the app has no such endpoint (404)."""
    status, body = http_call(address, "POST", f"/admin/readonly?on={int(on)}", fix=fix)
    if status == 404:
        return False
    if status != 200:
        raise ProviderError(f"read-only {'on' if on else 'off'} for {slot_id} answered {status}: {body[:80]!r}",
                            "see the instance's log")
    return True
