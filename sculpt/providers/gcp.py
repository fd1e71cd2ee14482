"""The Compute Engine REST API, as much of it as a blue/green morph on GCP needs, and the HTTP caller that
the Cloud Monitoring source shares with it.

Why it exists: a morph on GCP waits for a colour's managed instance group (MIG) to have healthy instances
and, for ``http`` state sync, needs an instance's private address. That is two REST calls
(``instanceGroupManagers.listManagedInstances`` and ``instances.get``), so this module speaks them with the
standard library (``urllib``, JSON, a bearer token) instead of pulling in a gRPC client library.
``sculpt watch --source gcp-monitoring`` reads one more (``projects.timeSeries.list`` of Cloud Monitoring,
``sculpt.metrics.gcp_monitoring``); ``GoogleRestClient`` is the caller both use, ``GoogleApi`` what differs
between the two APIs (endpoint, scope, what to grant on a 403).

Credentials, first that works (read when the first request is made, never at construction):

1. ``GOOGLE_OAUTH_ACCESS_TOKEN``, the variable the Pulumi GCP provider reads too; used as is (such a
   token expires after about an hour: long-running ``sculpt watch`` should use 2.);
2. Application Default Credentials through ``google-auth`` (in the ``gcp`` extra), refreshed when they
   expire: ``gcloud auth application-default login``, ``GOOGLE_APPLICATION_CREDENTIALS``, or the metadata
   server of a GCE VM;
3. otherwise a one-line ``ConfigError`` that says how to provide either.

``SCULPT_GCP_COMPUTE_URL`` replaces ``https://compute.googleapis.com/compute/v1`` and
``SCULPT_GCP_MONITORING_URL`` ``https://monitoring.googleapis.com/v3`` (tests point them at a local
server). Throttling (429) and server errors (5xx) and network failures are retried with exponential
backoff (``Retry-After`` honoured); every failure that remains is a one-line ``ProviderError`` with a fix:
401/403/404 and other 4xx are not retryable, the rest are.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, cast

from sculpt.domain.errors import ConfigError, ProviderError

COMPUTE_URL_ENV = "SCULPT_GCP_COMPUTE_URL"
DEFAULT_COMPUTE_URL = "https://compute.googleapis.com/compute/v1"
TOKEN_ENV = "GOOGLE_OAUTH_ACCESS_TOKEN"
SCOPE = "https://www.googleapis.com/auth/compute.readonly"
MONITORING_URL_ENV = "SCULPT_GCP_MONITORING_URL"
DEFAULT_MONITORING_URL = "https://monitoring.googleapis.com/v3"
MONITORING_SCOPE = "https://www.googleapis.com/auth/monitoring.read"
PROJECT_ENVS = ("GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")
"""Where the Pulumi GCP provider looks for the project when ``gcp:project`` is not set, in its order."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CREDENTIALS_FIX = (f"export {TOKEN_ENV}=$(gcloud auth print-access-token), or install google-auth "
                   "(pip install 'sculpt[gcp]') and run `gcloud auth application-default login`")
MAX_PAGES = 1000  # a guard against a server that keeps answering with a nextPageToken


@dataclass(frozen=True)
class GoogleApi:
    """What differs between the Google REST APIs sculpt calls: how errors name it, its endpoint (and the
    variable that replaces it), the OAuth scope for ADC, and what to grant when it answers 403."""

    name: str
    url_env: str
    default_url: str
    scope: str
    grant: str


COMPUTE_API = GoogleApi(
    "the Compute API", COMPUTE_URL_ENV, DEFAULT_COMPUTE_URL, SCOPE,
    "give the caller compute.instanceGroupManagers.get and compute.instances.get on the project "
    "(roles/compute.viewer), and check that the Compute Engine API is enabled")
MONITORING_API = GoogleApi(
    "the Cloud Monitoring API", MONITORING_URL_ENV, DEFAULT_MONITORING_URL, MONITORING_SCOPE,
    "give the caller monitoring.timeSeries.list on the project (roles/monitoring.viewer), and check that the "
    "Cloud Monitoring API is enabled")


def env_project() -> str | None:
    """The project the Pulumi GCP provider would use from the environment, if any."""
    return next((os.environ[k] for k in PROJECT_ENVS if os.environ.get(k)), None)


@dataclass(frozen=True)
class ManagedInstance:
    """One row of ``listManagedInstances``: what the MIG says about one of its instances."""

    name: str
    url: str  # the instance's self link
    status: str  # instanceStatus: PROVISIONING, STAGING, RUNNING, STOPPING, ...
    action: str  # currentAction: NONE, CREATING, RECREATING, DELETING, VERIFYING, ...
    health: tuple[str, ...] = ()  # detailedHealthState per health check (HEALTHY, UNHEALTHY, TIMEOUT, ...)
    version: str | None = None  # the MIG version it runs (sculpt's program names versions after the shape)

    @property
    def healthy(self) -> bool:
        """Running, nothing pending, and every health check (the autohealing one) says HEALTHY.

        >>> ManagedInstance("a", "u", "RUNNING", "NONE", ("HEALTHY",)).healthy
        True
        >>> ManagedInstance("a", "u", "RUNNING", "NONE", ()).healthy  # not checked yet
        False
        >>> ManagedInstance("a", "u", "RUNNING", "VERIFYING", ("HEALTHY",)).healthy
        False
        """
        return (self.status == "RUNNING" and self.action == "NONE" and bool(self.health)
                and all(h == "HEALTHY" for h in self.health))

    @property
    def leaving(self) -> bool:
        """The MIG is removing it (it belongs to no slot any more)."""
        return self.action in ("DELETING", "ABANDONING")

    @staticmethod
    def from_json(row: dict[str, Any]) -> ManagedInstance:
        url = str(row.get("instance", ""))
        version = row.get("version") or {}
        return ManagedInstance(
            name=str(row.get("name") or url.rsplit("/", 1)[-1]), url=url,
            status=str(row.get("instanceStatus", "UNKNOWN")), action=str(row.get("currentAction", "UNKNOWN")),
            health=tuple(str(h.get("detailedHealthState", "UNKNOWN")) for h in row.get("instanceHealth") or ()),
            version=str(version["name"]) if isinstance(version, dict) and version.get("name") else None)


class TokenSource(Protocol):
    """Gives a bearer token for a Google API; ``fresh`` asks for a new one (the last was refused)."""

    def __call__(self, *, fresh: bool = False) -> str: ...


@dataclass(frozen=True)
class StaticToken:
    """A token given once (``GOOGLE_OAUTH_ACCESS_TOKEN``): it cannot be refreshed."""

    token: str

    def __call__(self, *, fresh: bool = False) -> str:
        return self.token


class AdcToken:
    """Application Default Credentials through google-auth, refreshed when expired (or when refused)."""

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials

    def __call__(self, *, fresh: bool = False) -> str:
        from google.auth import exceptions

        if fresh or not self.credentials.valid:
            try:
                self.credentials.refresh(_AuthRequest())
            except exceptions.GoogleAuthError as e:
                raise ConfigError(f"refreshing Application Default Credentials failed: {_one_line(str(e))}",
                                  CREDENTIALS_FIX) from None
        return str(self.credentials.token)


def default_token_source(scope: str = SCOPE) -> TokenSource:
    """``GOOGLE_OAUTH_ACCESS_TOKEN``, else ADC through google-auth (asking for ``scope``), else a one-line
    ``ConfigError``."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return StaticToken(token)
    try:
        import google.auth
        from google.auth import exceptions
    except ImportError:
        raise ConfigError(f"no GCP credentials: {TOKEN_ENV} is not set and google-auth is not installed",
                          CREDENTIALS_FIX) from None
    try:
        credentials, _ = google.auth.default(scopes=[scope], request=cast(Any, _AuthRequest()))
    except exceptions.GoogleAuthError as e:
        raise ConfigError(f"no GCP credentials: {TOKEN_ENV} is not set and Application Default Credentials "
                          f"were not found ({_one_line(str(e))})", CREDENTIALS_FIX) from None
    return AdcToken(credentials)


class _AuthResponse:
    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status, self.headers, self.data = status, headers, data


class _AuthRequest:
    """google-auth's ``transport.Request`` over urllib (its own transports need ``requests``/``urllib3``)."""

    def __call__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float | None = None, **_: Any) -> _AuthResponse:
        from google.auth import exceptions

        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout or 30.0) as resp:
                return _AuthResponse(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as e:
            return _AuthResponse(e.code, dict(e.headers or {}), e.read())
        except (OSError, ValueError) as e:
            raise exceptions.TransportError(str(e)) from e  # type: ignore[no-untyped-call]


def _one_line(text: str, limit: int = 240) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GoogleRestClient:
    """One Google REST API (``API``) over HTTP: bearer token, retries with backoff, one-line errors.

    ``sleep`` is the injected clock's (backoff in tests costs no time); ``token`` defaults to
    ``default_token_source(API.scope)`` resolved on first use; ``base_url`` to ``$<API.url_env>`` or the
    public endpoint.
    """

    API: ClassVar[GoogleApi]  # each subclass names its API

    def __init__(self, *, base_url: str | None = None, token: TokenSource | None = None,
                 sleep: Callable[[float], None] = time.sleep, attempts: int = 6, backoff_s: float = 1.0,
                 max_backoff_s: float = 32.0, timeout_s: float = 30.0) -> None:
        api = self.API
        self.base_url = (base_url or os.environ.get(api.url_env) or api.default_url).rstrip("/")
        self._token = token
        self.sleep = sleep
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s

    def token_source(self) -> TokenSource:
        """The credentials (resolved once; raises the one-line ``ConfigError`` when there are none)."""
        if self._token is None:
            self._token = default_token_source(self.API.scope)
        return self._token

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, query: dict[str, str], *, what: str) -> dict[str, Any]:
        api = self.API
        url = f"{self.base_url}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        source = self.token_source()
        fresh = False
        last = ""
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method, headers={
                "Authorization": f"Bearer {source(fresh=fresh)}", "Accept": "application/json"})
            delay: float | None = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    body = resp.read()
                try:
                    data = json.loads(body or b"{}")
                except ValueError:
                    raise ProviderError(f"{api.name} answered {what} with something that is not JSON",
                                        f"check {api.url_env} ({self.base_url})", retryable=False) from None
                return data if isinstance(data, dict) else {}
            except urllib.error.HTTPError as e:
                detail = _api_message(e)
                if e.code == 401 and not fresh and not isinstance(source, StaticToken):
                    fresh = True  # an expired ADC token: refresh once and try again
                    continue
                if e.code not in RETRY_STATUSES:
                    raise _http_error(api, e.code, detail, what, self.base_url) from None
                last = f"HTTP {e.code}" + (f" {detail}" if detail else "")
                delay = _retry_after(e)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"cannot reach {self.base_url}: {reason}"
            if attempt < self.attempts:
                self.sleep(delay if delay is not None else min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
        raise ProviderError(f"{api.name} failed {what} after {self.attempts} attempts: {_one_line(last)}",
                            f"try again later; if it persists, check the network and {api.url_env} "
                            f"({self.base_url})")


class ComputeClient(GoogleRestClient):
    """The two Compute API calls a GCP morph needs, with retries, pagination and one-line errors."""

    API = COMPUTE_API

    # -- the calls ----------------------------------------------------------------------------------------
    def list_managed_instances(self, project: str, region: str, group: str) -> list[ManagedInstance]:
        """Every instance of a regional MIG (all pages)."""
        path = (f"projects/{_q(project)}/regions/{_q(region)}/instanceGroupManagers/{_q(group)}"
                "/listManagedInstances")
        out: list[ManagedInstance] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            reply = self._call("POST", path, {"pageToken": token} if token else {},
                               what=f"listing the instances of group '{group}' in {region}")
            out += [ManagedInstance.from_json(r) for r in reply.get("managedInstances") or ()]
            token = reply.get("nextPageToken") or None
            if token is None:
                return out
        raise ProviderError(f"listing the instances of group '{group}' did not end after {MAX_PAGES} pages",
                            f"check {COMPUTE_URL_ENV}: the endpoint keeps sending nextPageToken")

    def network_ip(self, instance_url: str) -> str | None:
        """The private address of an instance (``networkInterfaces[0].networkIP``), by its self link."""
        _, sep, rest = instance_url.partition("/projects/")
        if not sep:
            raise ProviderError(f"'{instance_url}' is not an instance link", "see `sculpt status`", retryable=False)
        reply = self._call("GET", "projects/" + rest, {}, what=f"reading instance {rest.rsplit('/', 1)[-1]}")
        nics = reply.get("networkInterfaces") or []
        ip = nics[0].get("networkIP") if nics else None
        return str(ip) if ip else None


class MonitoringClient(GoogleRestClient):
    """Cloud Monitoring's REST API v3 (``sculpt.metrics.gcp_monitoring`` says which calls)."""

    API = MONITORING_API

    def get(self, path: str, query: dict[str, str], *, what: str) -> dict[str, Any]:
        """``GET {base_url}/{path}?{query}``, retried and with one-line errors as every call here."""
        return self._call("GET", path, query, what=what)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _api_message(e: urllib.error.HTTPError) -> str:
    """The ``error.message`` of a Google API error body (or its first bytes)."""
    try:
        raw = e.read()
    except OSError:
        return ""
    try:
        err = json.loads(raw).get("error", {})
        return _one_line(str(err.get("message", "")) if isinstance(err, dict) else str(err))
    except (ValueError, AttributeError):
        return _one_line(raw.decode("utf-8", "replace"))


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    value = e.headers.get("Retry-After") if e.headers is not None else None
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


def _http_error(api: GoogleApi, code: int, detail: str, what: str, base_url: str) -> ProviderError:
    msg = f"{api.name} refused {what}: HTTP {code}" + (f" {detail}" if detail else "")
    if code == 401:
        fix = f"the access token was not accepted (expired?): {CREDENTIALS_FIX}"
    elif code == 403:
        fix = api.grant
    elif code == 404:
        fix = f"check that the stack is up (`sculpt status`) and that {api.url_env} ({base_url}) is right"
    else:
        fix = f"check {api.url_env} ({base_url}) and the stack outputs (`pulumi stack output`)"
    return ProviderError(msg, fix, retryable=False)
