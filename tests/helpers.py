"""Small helpers shared by the real-process tests."""

from __future__ import annotations

import urllib.error
import urllib.request


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request with urllib; an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()
