"""The sculptor's HTTP API (FastAPI + uvicorn): read what the loop sees, change what the fleet needs.

Why it exists: other systems (dashboards, CI, a developer saying "I need low latency") talk to a running
sculptor without a shell on its machine. Writes need ``Authorization: Bearer <token>`` with the token from
``$SCULPT_API_TOKEN`` or, when unset, one generated at start and printed once. Reads need it too when
``$SCULPT_API_READS`` says so (``auto``, the default: open on a loopback address such as 127.0.0.1, token
elsewhere; ``token``: always; ``open``: never) - they show instance ids and prices. OpenAPI is served at
``/openapi.json`` (``/docs`` for humans) with the bearer scheme on the routes that need it.

=========================================  ============================================================
``GET /v1/fleets``                         ``[{"name", "mode", "shape", "decision", "confidence"}]``
``GET /v1/fleets/{name}``                  status: mode, spec requirements, instances (shape, cpu,
                                           forecast, top shapes, confidence, ``recommendation``: the
                                           ``lower_bound``/``target``/``upper_bound`` shapes and ``why``),
                                           last plan, last action
``PUT /v1/fleets/{name}/requirements``     ``{"profile"?, "slo"?: {"p95_latency_ms"?, "max_utilisation"?},
                                           "budget_usd_per_hour"?, "aggressiveness"?}`` -> validated by the
                                           spec model, applied to the loop, saved as a new stack version;
                                           ``"changed": false`` (and no version) when nothing changes
``GET /v1/fleets/{name}/plan``             ``Plan.to_json()``
``GET /metrics``                           Prometheus text 0.0.4 (OpenMetrics when ``Accept`` asks):
                                           ``sculpt_fleet_info``, ticks, decisions, migrations, warnings,
                                           predictions, confidence, cost per hour, tick duration (seconds)
=========================================  ============================================================

Every error has one shape, ``{"error": "<one line>", "fix": "<what to do>"}``: 400 (empty or not JSON),
401 (no token and a wrong token told apart), 404, 405, 409, 413 (a body over 64 KiB), 422 (the first bad
field, named; non-finite numbers), 429 (too many failed tokens from one address; ``Retry-After``), 500 (a
bug). Authentication runs before the body is read, so an unauthenticated caller learns nothing from it.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import math
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sculpt.app.sculptor import SculptorService
from sculpt.app.status import service_recommendations
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.spec import FleetSpec, Profile, parse_spec
from sculpt.metrics.exposition import registry_of, render

TOKEN_ENV = "SCULPT_API_TOKEN"
READS_ENV = "SCULPT_API_READS"
MAX_BODY_BYTES = 64 * 1024  # requirements are a few hundred bytes; anything near this is not a client of ours
AUTH_FAILURES = 10  # failed tokens per address ...
AUTH_WINDOW_S = 60.0  # ... in any window this long, then 429 until the oldest ages out
Persist = Callable[[FleetSpec], Any]
Clock = Callable[[], float]

TOKEN_FIX = ("send 'Authorization: Bearer <token>' with the token from $SCULPT_API_TOKEN (or the one "
             "`sculpt watch --api` printed at start)")


# the scheme OpenAPI shows on the routes that need the token; checking it is ``authenticate``'s job
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="the token from $SCULPT_API_TOKEN, or the one `sculpt watch --api` printed at start")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


class SLOChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    p95_latency_ms: float | None = Field(None, description="95th percentile latency target, ms")
    max_utilisation: float | None = Field(None, description="highest CPU/memory share of a shape to use")


class Requirements(BaseModel):
    """What the application needs; omitted fields keep their value. Strict: ``true`` or ``"0.5"`` is not a
    number here, and neither is ``Infinity``/``NaN`` (the ledger stores versions as standard JSON)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    profile: Profile | None = None
    slo: SLOChange | None = None
    budget_usd_per_hour: float | None = Field(None, description="fleet cost cap, $/h")
    aggressiveness: float | None = Field(None, description="0: move only to avoid SLO breach; 1: chase savings")


class ErrorBody(BaseModel):
    """The one shape of every error response."""

    error: str = Field(description="what is wrong, one line")
    fix: str = Field(description="what to do about it")


def apply_requirements(spec: FleetSpec, req: Requirements) -> FleetSpec:
    """The spec with ``req`` applied, validated by the spec model (``ConfigError`` names the bad field)."""
    data = spec.model_dump(mode="json")
    if req.profile is not None:
        data["profile"] = req.profile
    if req.slo is not None:
        data["slo"] = {**data["slo"], **req.slo.model_dump(exclude_none=True)}
    if req.budget_usd_per_hour is not None:
        data["budget_usd_per_hour"] = req.budget_usd_per_hour
    if req.aggressiveness is not None:
        data["aggressiveness"] = req.aggressiveness
    return parse_spec(data, "requirements")


def _num(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def fleet_status(svc: SculptorService) -> dict[str, Any]:
    r = svc.last
    spec = svc.spec
    plan = svc.plan()
    recs = service_recommendations(svc)
    return {
        "name": spec.fleet, "mode": svc.mode, "model": svc.guard.name, "degraded": svc.guard.degraded,
        "model_profile": svc.model_profile(),
        "shape": spec.shape, "region": spec.region,
        "requirements": {"profile": spec.profile, "slo": spec.slo.model_dump(),
                         "budget_usd_per_hour": spec.budget_usd_per_hour, "aggressiveness": spec.aggressiveness},
        "instances": [{**i.to_json(), "recommendation": recs.get(i.slot)} for i in r.instances] if r else [],
        "distribution": plan.distribution, "confidence": plan.confidence,
        "last_decision": {"decision": plan.decision.value, "reason": plan.reason, "t": r.t if r else None},
        "last_action": r.action.to_json() if r and r.action else None,
        "ticks": svc.counters["ticks"], "warnings": r.warnings if r else [],
    }


def _seconds(ms: float) -> float:
    return ms / 1000.0 if math.isfinite(ms) else math.nan


def metric_families(services: Mapping[str, SculptorService]) -> list[Metric]:
    """Every fleet's loop as Prometheus families, one family per metric (all fleets' samples in it)."""
    info = InfoMetricFamily("sculpt_fleet", "The watched fleet: mode, forecast model, shape and region.",
                            labels=["stack"])
    ticks = CounterMetricFamily("sculpt_ticks", "Loop ticks run.", labels=["stack"])
    warnings = CounterMetricFamily("sculpt_warnings", "Warnings the loop's ticks raised.", labels=["stack"])
    tick_s = GaugeMetricFamily("sculpt_last_tick_duration_seconds",
                               "Duration of the last tick (excluding a morph it started), seconds.", labels=["stack"])
    model_s = GaugeMetricFamily("sculpt_last_model_duration_seconds",
                                "Time the last tick spent in the forecast model, seconds.", labels=["stack"])
    decisions = CounterMetricFamily("sculpt_decisions", "Plans decided, by decision.", labels=["stack", "decision"])
    migrations = CounterMetricFamily("sculpt_migrations", "Morphs asked for, by result (recommended in recommend "
                                     "mode).", labels=["stack", "result"])
    predicted = GaugeMetricFamily("sculpt_predicted_cpu_cores", "Forecast CPU demand over the horizon, by quantile.",
                                  labels=["stack", "instance", "quantile"])
    confidence = GaugeMetricFamily("sculpt_confidence", "Forecast confidence in [0, 1].", labels=["stack", "instance"])
    shape_p = GaugeMetricFamily("sculpt_shape_probability", "P(shape is the right one) for each instance.",
                                labels=["stack", "instance", "shape"])
    cost = GaugeMetricFamily("sculpt_cost_usd_per_hour", "What the fleet costs now, $/h.", labels=["stack"])
    for name, s in services.items():
        info.add_metric([name], {"mode": s.mode, "model": s.guard.name, "shape": s.spec.shape,
                                 "region": s.spec.region, "profile": s.spec.profile})
        ticks.add_metric([name], float(s.counters["ticks"]))
        warnings.add_metric([name], float(s.counters["warnings"]))
        for d, n in sorted(s.counters["decisions"].items()):
            decisions.add_metric([name, d], float(n))
        for d, n in sorted(s.counters["migrations"].items()):
            migrations.add_metric([name, d], float(n))
        last = s.last
        if last is not None:
            tick_s.add_metric([name], _seconds(last.tick_ms))
            model_s.add_metric([name], _seconds(last.model_ms))
            for i in last.instances:
                predicted.add_metric([name, i.slot, "0.5"], i.forecast_p50)
                predicted.add_metric([name, i.slot, "0.95"], i.forecast_p95)
                confidence.add_metric([name, i.slot], i.confidence)
                for shape, p in i.top:
                    shape_p.add_metric([name, i.slot, shape], p)
        try:
            cost.add_metric([name], s.catalog.price(s.spec.shape, s.spec.region) * max(1, len(s.port.slots)))
        except SculptError:
            pass
    return [info, ticks, warnings, tick_s, model_s, decisions, migrations, predicted, confidence, shape_p, cost]


def metrics_registry(services: Mapping[str, SculptorService]) -> CollectorRegistry:
    return registry_of(lambda: metric_families(services))


def metrics_text(services: Mapping[str, SculptorService]) -> str:
    """Prometheus text exposition (format 0.0.4) of every fleet's loop."""
    return render(metrics_registry(services))[0].decode()


class ApiError(Exception):
    """An error response: status, one-line message, fix (and headers such as ``Retry-After``)."""

    def __init__(self, status: int, message: str, fix: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fix = fix
        self.headers = dict(headers or {})


def one_line(text: object, limit: int = 300) -> str:
    """``text`` as one printable line (error messages may quote what a client sent)."""
    s = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def error_response(status: int, message: str, fix: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=one_line(message).rstrip("."), fix=one_line(fix).rstrip("."))
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


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


class _NonFinite(Exception):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _NonFinite(text)
    return v


def _finite_int(text: str) -> int:
    if len(text) > 300 and not math.isfinite(float(text)):  # before int(): Python refuses over 4300 digits
        raise _NonFinite(f"{text[:12]}... ({len(text.lstrip('-'))} digits)")
    return int(text)


def parse_body(body: bytes) -> Any:
    """JSON, standard only: ``Infinity``, ``NaN`` and numbers that overflow a double (1e309) are refused."""
    example = 'send a JSON object such as {"profile": "low-latency"}'
    if not body.strip():
        raise ApiError(400, "the request body is empty", example)
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_finite_int)
    except _NonFinite as e:
        raise ApiError(422, f"{one_line(e, 40)} is not a finite number", "send budgets, SLOs and aggressiveness "
                       "as finite JSON numbers") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the body is not JSON ({e.msg} at line {e.lineno} column {e.colno})", example) from None
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text", example) from None
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"the body is not usable JSON ({one_line(e, 120)})", example) from None


_PLACES = {"body", "path", "query", "header", "cookie"}


def first_problem(errors: list[Any], what: str) -> tuple[str, str]:
    """The first of pydantic's/FastAPI's errors as (message, fix), naming the field."""
    err = errors[0] if errors else {}
    loc = [str(x) for x in err.get("loc", ())]
    if loc and loc[0] in _PLACES:
        loc = loc[1:]
    field = one_line(".".join(loc), 80)
    kind = err.get("type", "")
    fix = ("send only profile, slo.p95_latency_ms, slo.max_utilisation, budget_usd_per_hour and aggressiveness "
           "(see /docs)")
    if kind == "extra_forbidden":
        return f"{what}: unknown field '{field}'", fix
    if not field:
        return f"{what}: {one_line(err.get('msg', 'invalid'), 120)}", 'send a JSON object such as {"profile": "batch"}'
    return f"{what}: field '{field}': {one_line(err.get('msg', 'invalid'), 160)}", fix


def parse_requirements(body: bytes) -> Requirements:
    data = parse_body(body)
    try:
        return Requirements.model_validate(data)
    except ValidationError as e:
        message, fix = first_problem(list(e.errors()), "requirements")
        raise ApiError(422, message, fix) from None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (declared or streamed) without reading the rest."""
    too_big = ApiError(413, f"the request body is over {limit // 1024} KiB", "send only the requirements that change")
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise too_big
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise too_big
    return bytes(buf)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def create_app(services: Mapping[str, SculptorService], *, token: str,
               persist: Mapping[str, Persist] | None = None, reads_need_token: bool = False,
               auth_limit: FailedAuthLimit | None = None) -> FastAPI:
    """The API over running services (one per fleet); ``persist[name](spec)`` records a new spec version.
    ``reads_need_token``: GET routes (but not ``/openapi.json``, ``/docs``) need the bearer token too."""
    app = FastAPI(title="sculpt", version="1", description="The sculptor's API: fleets, plans, requirements. "
                  'Every error is {"error": "<one line>", "fix": "<what to do>"}.')
    persist = dict(persist or {})
    limit = auth_limit or FailedAuthLimit()
    expected = token.encode("utf-8")
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody, "description": text} for code, text in (
            (401, "no token, or a wrong one"), (404, "no such fleet"), (422, "a parameter is invalid (named)"),
            (429, "too many failed tokens from this address"))}
    write_errors: dict[int | str, dict[str, Any]] = {**errors, **{
        code: {"model": ErrorBody, "description": text} for code, text in (
            (400, "the body is empty or not JSON"), (409, "the loop refused the change"),
            (413, "the body is too large"), (422, "a field is invalid (named)"))}}

    def authenticate(request: Request, doing: str) -> None:
        """Missing and wrong tokens are told apart; wrong ones count against the address (429 past the limit).
        Bytes are compared (``compare_digest`` raises on non-ASCII str); headers arrive as latin-1 str."""
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

    async def writer(request: Request, _: Credentials) -> None:
        authenticate(request, "changing a fleet needs one")

    async def reader(request: Request, _: Credentials) -> None:
        authenticate(request, f"reads need one on this API (${READS_ENV})")

    reads = [Security(reader)] if reads_need_token else []

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.message, e.fix, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 404:
            message, fix = f"no route {request.method} {request.url.path}", "GET /openapi.json lists the routes"
        elif e.status_code == 405:
            message, fix = (f"{request.method} is not allowed on {request.url.path}",
                            "GET /openapi.json lists each route's methods")
        else:
            message, fix = str(e.detail), "see /docs"
        return error_response(e.status_code, message, fix, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        message, fix = first_problem(list(e.errors()), "request")
        return error_response(422, message, fix)

    @app.exception_handler(Exception)
    async def _bug(_: Request, e: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(e).__name__})",
                              "this is a bug in sculpt: the watcher's log has the traceback; please report it")

    def get(name: str) -> SculptorService:
        svc = services.get(name)
        if svc is None:
            raise ApiError(404, f"no fleet '{one_line(name, 60)}' is watched here", "GET /v1/fleets lists them")
        return svc

    @app.get("/v1/fleets", dependencies=reads, responses=errors)
    def fleets() -> list[dict[str, Any]]:
        out = []
        for name, s in services.items():
            p = s.plan()
            out.append({"name": name, "mode": s.mode, "shape": s.spec.shape, "decision": p.decision.value,
                        "confidence": p.confidence})
        return out

    @app.get("/v1/fleets/{name}", dependencies=reads, responses=errors)
    def fleet(name: str) -> dict[str, Any]:
        return fleet_status(get(name))

    @app.get("/v1/fleets/{name}/plan", dependencies=reads, responses=errors)
    def plan(name: str) -> dict[str, Any]:
        return get(name).plan().to_json()

    def change(name: str, svc: SculptorService, req: Requirements) -> dict[str, Any]:
        """Idempotent: requirements that leave the spec as it is write no version and touch no model."""
        version, notes = None, ["nothing changed: the fleet already has these requirements"]
        try:
            with svc.lock:  # never while a tick (or the morph it started) is in flight
                new = apply_requirements(svc.spec, req)
                changed = new.model_dump(mode="json") != svc.spec.model_dump(mode="json")
                if changed:
                    version = persist[name](new) if name in persist else None
                    notes = svc.update_spec(new)
        except SculptError as e:
            raise ApiError(422 if isinstance(e, ConfigError) else 409, e.message,
                           e.fix or f"see GET /v1/fleets/{name}") from None
        return {"name": name, "changed": changed, "version": version,
                "requirements": fleet_status(svc)["requirements"], "notes": notes}

    @app.put("/v1/fleets/{name}/requirements", dependencies=[Security(writer)], responses=write_errors,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/Requirements"}}}}})
    async def requirements(name: str, request: Request) -> dict[str, Any]:
        """Authenticated first (the dependency), then the fleet, then the body: size, JSON, fields."""
        svc = get(name)
        req = parse_requirements(await read_body(request))
        return await run_in_threadpool(change, name, svc, req)

    registry = metrics_registry(services)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=reads, responses=errors)
    def metrics(request: Request) -> Response:
        """Text format 0.0.4; OpenMetrics when ``Accept`` asks for ``application/openmetrics-text``."""
        body, content_type = render(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the requirements body (parsed by hand, so not seen by FastAPI)."""
        if app.openapi_schema is None:
            schema = base_openapi()
            models = schema.setdefault("components", {}).setdefault("schemas", {})
            body = Requirements.model_json_schema(ref_template="#/components/schemas/{model}")
            models.update(body.pop("$defs", {}))
            models["Requirements"] = body
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def api_token() -> tuple[str, str]:
    """The write token and how to say where it came from (printed once)."""
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env, f"write token from ${TOKEN_ENV}"
    tok = secrets.token_urlsafe(24)
    return tok, f"write token (generated; set ${TOKEN_ENV} to choose one): {tok}"


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", address
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"'{address}' is not HOST:PORT", "pass --api 127.0.0.1:8787") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"port {p} is out of range", "use a port between 0 and 65535")
    return host or "127.0.0.1", p


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or a ``ConfigError`` naming the address and the fix
    (``Address already in use``: another process listens there)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"the API address '{one_line(host, 60)}' does not resolve ({one_line(e, 80)})",
                          "pass --api 127.0.0.1:8787 (HOST:PORT)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as e:
        sock.close()
        taken = e.errno == errno.EADDRINUSE
        raise ConfigError(f"the API cannot listen on {host}:{port}: {e.strerror or e}",
                          "stop what listens there or pick another --api port" if taken else
                          "pick another --api address (HOST:PORT) this machine can bind") from None
    return sock


@dataclass
class Server:
    """A uvicorn server running in a thread."""

    server: Any
    thread: threading.Thread
    address: str
    token: str
    token_note: str

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10.0)


def serve(app: FastAPI, address: str, token: str = "", token_note: str = "") -> Server:
    """Start ``app`` on ``address`` in a background thread; returns once it listens (port 0 picks one)."""
    import uvicorn

    host, port = parse_address(address)
    sock = bind_socket(host, port)  # before uvicorn: a busy port is one line of ours, not its logged errno
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    # the CLI owns signals; older uvicorn installs them through this method, newer ones (no such attribute)
    # leave them alone off the main thread
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sculpt-api")
    th.start()
    deadline = time.monotonic() + 15.0
    while not server.started:
        if not th.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise ConfigError(f"the API could not listen on {host}:{port}", "pick another --api port")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    return Server(server, th, f"{bound[0]}:{bound[1]}", token, token_note)


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


def serve_in_thread(svc: SculptorService, address: str, ledger: Any = None, engine: Any = None) -> Server:
    """Serve the API of one running service (``sculpt watch --api``)."""
    token, note = api_token()
    protect = reads_need_token(parse_address(address)[0])
    note += "; reads need the token too" if protect else f"; reads are open (${READS_ENV}=token to protect them)"
    persist: dict[str, Persist] = {}
    if engine is not None:
        def save(spec: FleetSpec) -> int:
            from sculpt.domain.fleet import Fleet

            current = engine.current()
            slots = current.slots if current is not None else Fleet.from_spec(spec).slots
            return int(engine.up(Fleet(spec=spec, slots=slots), "requirements changed through the API",
                                 kind="requirements"))

        persist[svc.spec.fleet] = save
    app = create_app({svc.spec.fleet: svc}, token=token, persist=persist, reads_need_token=protect)
    return serve(app, address, token, note)
