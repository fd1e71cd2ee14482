"""The sculptor's HTTP API (FastAPI + uvicorn): read what the loop sees, change what the fleet needs.

Why it exists: other systems (dashboards, CI, a developer saying "I need low latency") talk to a running
sculptor without a shell on its machine. Reads are open on the bound address (127.0.0.1 by default);
writes need ``Authorization: Bearer <token>`` with the token from ``$SCULPT_API_TOKEN`` or, when unset, one
generated at start and printed once. OpenAPI is served at ``/openapi.json`` (``/docs`` for humans).

=========================================  ============================================================
``GET /v1/fleets``                         ``[{"name", "mode", "shape", "decision", "confidence"}]``
``GET /v1/fleets/{name}``                  status: mode, spec requirements, instances (shape, cpu,
                                           forecast, top shapes, confidence), last plan, last action
``PUT /v1/fleets/{name}/requirements``     ``{"profile"?, "slo"?: {"p95_latency_ms"?, "max_utilisation"?},
                                           "budget_usd_per_hour"?, "aggressiveness"?}`` -> validated by the
                                           spec model, applied to the loop, saved as a new stack version
``GET /v1/fleets/{name}/plan``             ``Plan.to_json()``
``GET /metrics``                           Prometheus text: predictions, confidence, decisions,
                                           migrations, cost per hour, tick latency
=========================================  ============================================================
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from sculpt.app.sculptor import SculptorService
from sculpt.domain.errors import ConfigError, SculptError
from sculpt.domain.spec import FleetSpec, Profile, parse_spec

TOKEN_ENV = "SCULPT_API_TOKEN"
Persist = Callable[[FleetSpec], Any]


class SLOChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p95_latency_ms: float | None = Field(None, description="95th percentile latency target, ms")
    max_utilisation: float | None = Field(None, description="highest CPU/memory share of a shape to use")


class Requirements(BaseModel):
    """What the application needs; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    profile: Profile | None = None
    slo: SLOChange | None = None
    budget_usd_per_hour: float | None = Field(None, description="fleet cost cap, $/h")
    aggressiveness: float | None = Field(None, description="0: move only to avoid SLO breach; 1: chase savings")


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
    return {
        "name": spec.fleet, "mode": svc.mode, "model": svc.guard.name, "degraded": svc.guard.degraded,
        "model_profile": svc.model_profile(),
        "shape": spec.shape, "region": spec.region,
        "requirements": {"profile": spec.profile, "slo": spec.slo.model_dump(),
                         "budget_usd_per_hour": spec.budget_usd_per_hour, "aggressiveness": spec.aggressiveness},
        "instances": [i.to_json() for i in r.instances] if r else [],
        "distribution": plan.distribution, "confidence": plan.confidence,
        "last_decision": {"decision": plan.decision.value, "reason": plan.reason, "t": r.t if r else None},
        "last_action": r.action.to_json() if r and r.action else None,
        "ticks": svc.counters["ticks"], "warnings": r.warnings if r else [],
    }


def metrics_text(services: Mapping[str, SculptorService]) -> str:
    """Prometheus text exposition (format 0.0.4) of every fleet's loop."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")

    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    def sample(name: str, labels: dict[str, str], value: float) -> None:
        lab = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{lab}}} {value if math.isfinite(value) else 'NaN'}")

    family("sculpt_ticks_total", "counter", "Loop ticks run.")
    for name, s in services.items():
        sample("sculpt_ticks_total", {"stack": name}, float(s.counters["ticks"]))
    family("sculpt_tick_latency_ms", "gauge", "Duration of the last tick (excluding a morph it started), ms.")
    for name, s in services.items():
        if s.last:
            sample("sculpt_tick_latency_ms", {"stack": name}, s.last.tick_ms)
    family("sculpt_model_latency_ms", "gauge", "Time the last tick spent in the forecast model, ms.")
    for name, s in services.items():
        if s.last:
            sample("sculpt_model_latency_ms", {"stack": name}, s.last.model_ms)
    family("sculpt_decisions_total", "counter", "Plans decided, by decision.")
    for name, s in services.items():
        for d, n in sorted(s.counters["decisions"].items()):
            sample("sculpt_decisions_total", {"stack": name, "decision": d}, float(n))
    family("sculpt_migrations_total", "counter", "Morphs asked for, by result (recommended in recommend mode).")
    for name, s in services.items():
        for d, n in sorted(s.counters["migrations"].items()):
            sample("sculpt_migrations_total", {"stack": name, "result": d}, float(n))
    family("sculpt_predicted_cpu_cores", "gauge", "Forecast CPU demand over the horizon, by quantile.")
    family("sculpt_confidence", "gauge", "Forecast confidence in [0, 1].")
    family("sculpt_shape_probability", "gauge", "P(shape is the right one) for each instance.")
    for name, s in services.items():
        for i in s.last.instances if s.last else []:
            base = {"stack": name, "instance": i.slot}
            sample("sculpt_predicted_cpu_cores", {**base, "quantile": "0.5"}, i.forecast_p50)
            sample("sculpt_predicted_cpu_cores", {**base, "quantile": "0.95"}, i.forecast_p95)
            sample("sculpt_confidence", base, i.confidence)
            for shape, p in i.top:
                sample("sculpt_shape_probability", {**base, "shape": shape}, p)
    family("sculpt_cost_usd_per_hour", "gauge", "What the fleet costs now, $/h.")
    for name, s in services.items():
        n = max(1, len(s.port.slots))
        try:
            sample("sculpt_cost_usd_per_hour", {"stack": name},
                   s.catalog.price(s.spec.shape, s.spec.region) * n)
        except SculptError:
            continue
    return "\n".join(lines) + "\n"


def create_app(services: Mapping[str, SculptorService], *, token: str,
               persist: Mapping[str, Persist] | None = None) -> FastAPI:
    """The API over running services (one per fleet); ``persist[name](spec)`` records a new spec version."""
    app = FastAPI(title="sculpt", version="1", description="The sculptor's API: fleets, plans, requirements.")
    persist = dict(persist or {})

    def get(name: str) -> SculptorService:
        svc = services.get(name)
        if svc is None:
            raise HTTPException(404, f"no fleet '{name}' is watched here; GET /v1/fleets lists them")
        return svc

    def writer(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() != "bearer" or not given or not hmac.compare_digest(given.strip(), token):
            raise HTTPException(401, "a bearer token is required to change a fleet: send "
                                     "'Authorization: Bearer <token>' ($SCULPT_API_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/v1/fleets")
    def fleets() -> list[dict[str, Any]]:
        out = []
        for name, s in services.items():
            p = s.plan()
            out.append({"name": name, "mode": s.mode, "shape": s.spec.shape, "decision": p.decision.value,
                        "confidence": p.confidence})
        return out

    @app.get("/v1/fleets/{name}")
    def fleet(name: str) -> dict[str, Any]:
        return fleet_status(get(name))

    @app.get("/v1/fleets/{name}/plan")
    def plan(name: str) -> dict[str, Any]:
        return get(name).plan().to_json()

    @app.put("/v1/fleets/{name}/requirements", dependencies=[Depends(writer)])
    def requirements(name: str, req: Requirements) -> dict[str, Any]:
        svc = get(name)
        try:
            with svc.lock:  # never while a tick (or the morph it started) is in flight
                new = apply_requirements(svc.spec, req)
                version = persist[name](new) if name in persist else None
                notes = svc.update_spec(new)
        except SculptError as e:
            raise HTTPException(422 if isinstance(e, ConfigError) else 409, str(e)) from None
        return {"name": name, "version": version, "requirements": fleet_status(svc)["requirements"],
                "notes": notes or []}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return metrics_text(services)

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
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    # the CLI owns signals; older uvicorn installs them through this method, newer ones (no such attribute)
    # leave them alone off the main thread
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    th = threading.Thread(target=server.run, daemon=True, name="sculpt-api")
    th.start()
    deadline = time.monotonic() + 15.0
    while not server.started:
        if not th.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the API could not listen on {host}:{port}", "pick another --api port")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    return Server(server, th, f"{bound[0]}:{bound[1]}", token, token_note)


def serve_in_thread(svc: SculptorService, address: str, ledger: Any = None, engine: Any = None) -> Server:
    """Serve the API of one running service (``sculpt watch --api``)."""
    token, note = api_token()
    persist: dict[str, Persist] = {}
    if engine is not None:
        def save(spec: FleetSpec) -> int:
            from sculpt.domain.fleet import Fleet

            current = engine.current()
            slots = current.slots if current is not None else Fleet.from_spec(spec).slots
            return int(engine.up(Fleet(spec=spec, slots=slots), "requirements changed through the API",
                                 kind="requirements"))

        persist[svc.spec.fleet] = save
    return serve(create_app({svc.spec.fleet: svc}, token=token, persist=persist), address, token, note)
