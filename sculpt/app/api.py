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

This module is the routing and the server (uvicorn in a thread); what a request may carry and how errors are
told is ``sculpt.app.api_requests``, the token and its limits ``sculpt.app.api_auth``, the ``/metrics``
families ``sculpt.app.api_metrics``.
"""

from __future__ import annotations

import errno
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from sculpt.app.api_auth import (
    READS_ENV,
    Credentials,
    FailedAuthLimit,
    api_token,
    authenticate,
    reads_need_token,
)
from sculpt.app.api_metrics import metrics_registry
from sculpt.app.api_requests import (
    ApiError,
    ErrorBody,
    Requirements,
    apply_requirements,
    install_error_handlers,
    one_line,
    parse_requirements,
    read_body,
)
from sculpt.app.status import service_recommendations
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.spec import FleetSpec
from sculpt.loop.service import SculptorService

if TYPE_CHECKING:
    from sculpt.engine.base import StackEngine
    from sculpt.ledger import Ledger
from sculpt.metrics.exposition import render

Persist = Callable[[FleetSpec], Any]


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

    async def writer(request: Request, _: Credentials) -> None:
        authenticate(request, "changing a fleet needs one", limit, expected)

    async def reader(request: Request, _: Credentials) -> None:
        authenticate(request, f"reads need one on this API (${READS_ENV})", limit, expected)

    reads = [Security(reader)] if reads_need_token else []

    install_error_handlers(app)

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


def serve_in_thread(svc: SculptorService, address: str, ledger: Ledger | None = None,
                    engine: StackEngine | None = None) -> Server:
    """Serve the API of one running service (``sculpt watch --api``). With ``engine``, a requirements
    change is a stack version (``kind: requirements`` where the engine's commands are step-wise; a plain
    update on a cloud engine, whose ``up`` takes no kind)."""
    token, note = api_token()
    protect = reads_need_token(parse_address(address)[0])
    note += "; reads need the token too" if protect else f"; reads are open (${READS_ENV}=token to protect them)"
    persist: dict[str, Persist] = {}
    if engine is not None:
        def save(spec: FleetSpec) -> int:
            from sculpt.domain.fleet import Fleet

            assert engine is not None
            current = engine.current()
            fleet = Fleet(spec=spec, slots=current.slots if current is not None else Fleet.from_spec(spec).slots)
            message = "requirements changed through the API"
            stepwise = engine.stepwise()
            if stepwise is not None:
                return int(stepwise.up(fleet, message, kind="requirements"))
            return int(engine.up(fleet, message))

        persist[svc.spec.fleet] = save
    app = create_app({svc.spec.fleet: svc}, token=token, persist=persist, reads_need_token=protect)
    return serve(app, address, token, note)
