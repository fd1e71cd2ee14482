"""The HTTP API's authentication: the bearer token, who must send it, and the bound on guessing it.

Why it exists: ``sculpt.app.api`` wires routes; how a caller proves it may write (or read, per
``$SCULPT_API_READS``), where the token comes from (``$SCULPT_API_TOKEN`` or generated), and how failed tokens
are limited per address (429 with ``Retry-After``) is a security concern with its own tests
(``tests/sculptor/test_api_hardening.py``), kept in one place so it can be reviewed as a whole.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sculpt.app.api_requests import ApiError, one_line
from sculpt.domain.errors import ConfigError

TOKEN_ENV = "SCULPT_API_TOKEN"
READS_ENV = "SCULPT_API_READS"
AUTH_FAILURES = 10  # failed tokens per address ...
AUTH_WINDOW_S = 60.0  # ... in any window this long, then 429 until the oldest ages out
Clock = Callable[[], float]

TOKEN_FIX = ("send 'Authorization: Bearer <token>' with the token from $SCULPT_API_TOKEN (or the one "
             "`sculpt watch --api` printed at start)")


# the scheme OpenAPI shows on the routes that need the token; checking it is ``authenticate``'s job
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="the token from $SCULPT_API_TOKEN, or the one `sculpt watch --api` printed at start")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


class FailedAuthLimit:
    """At most ``limit`` failed authentications per client address in any ``window_s``: after that every
    request needing the token gets 429 (the token is not even compared) until the oldest failure ages out.
    So guessing is bounded to ``limit`` tries per window and address. The clock is injected for tests;
    at most ``max_clients`` addresses are tracked (the stalest are forgotten first)."""

    def __init__(self, limit: int = AUTH_FAILURES, window_s: float = AUTH_WINDOW_S, clock: Clock = time.monotonic,
                 max_clients: int = 4096) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        with self._lock:
            times = self._failures.get(client)
            if times is None or len(times) < self.limit:
                return None
            wait = times[0] + self.window_s - self.clock()
            return wait if wait > 0 else None

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            times = self._failures.pop(client, None) or deque(maxlen=self.limit)
            times.append(now)
            self._failures[client] = times  # re-inserted: dict order is staleness order
            if len(self._failures) > self.max_clients:
                for k in [k for k, t in self._failures.items() if t[-1] + self.window_s <= now]:
                    del self._failures[k]
                while len(self._failures) > self.max_clients:
                    del self._failures[next(iter(self._failures))]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(request: Request, doing: str, limit: FailedAuthLimit, expected: bytes) -> None:
    """Missing and wrong tokens are told apart; wrong ones count against the address (429 past the limit).
    Bytes are compared (``compare_digest`` raises on non-ASCII str); headers arrive as latin-1 str.
    ``expected`` is the token's UTF-8 bytes; ``doing`` ends the 401 message for a missing token."""
    client = client_address(request)
    wait = limit.retry_after(client)
    if wait is not None:
        secs = max(1, math.ceil(wait))
        raise ApiError(429, f"too many failed tokens from {one_line(client, 60)}",
                       f"wait {secs} s (Retry-After), then send the right token", {"Retry-After": str(secs)})
    # only SP/HTAB are HTTP whitespace: str.strip() would also drop latin-1 NBSP/NEL off the token
    scheme, _, given = request.headers.get("authorization", "").strip(" \t").partition(" ")
    given = given.strip(" \t")
    if not scheme or (scheme.lower() == "bearer" and not given):
        raise ApiError(401, f"no bearer token: {doing}", TOKEN_FIX, {"WWW-Authenticate": "Bearer"})
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode("latin-1"), expected):
        limit.failed(client)
        what = "the bearer token is wrong" if scheme.lower() == "bearer" else \
            "the Authorization header is not 'Bearer <token>'"
        raise ApiError(401, what, TOKEN_FIX, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def api_token() -> tuple[str, str]:
    """The write token and how to say where it came from (printed once)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env, f"write token from ${TOKEN_ENV}"
    tok = secrets.token_urlsafe(24)
    return tok, f"write token (generated; set ${TOKEN_ENV} to choose one): {tok}"


def reads_need_token(host: str, env: Mapping[str, str] | None = None) -> bool:
    """``$SCULPT_API_READS``: ``auto`` (default) needs the token for reads unless ``host`` is loopback."""
    value = (os.environ if env is None else env).get(READS_ENV, "").strip().lower()
    if value in ("", "auto"):
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host != "localhost"
    if value in ("open", "token"):
        return value == "token"
    raise ConfigError(f"${READS_ENV} is '{one_line(value, 40)}', not auto, open or token",
                      f"unset ${READS_ENV} (reads open on 127.0.0.1, token elsewhere) or set it to token")
