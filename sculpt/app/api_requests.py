"""The HTTP API's request side: the requirements body, its parsing and validation, and the error shape.

Why it exists: ``sculpt.app.api`` wires routes; what a client may send (``Requirements``, standard JSON only,
at most 64 KiB) and how every refusal is told (one ``{"error", "fix"}`` body per status, the first bad field
named) is one concern with its own tests (``tests/sculptor/test_api_hardening.py``, the API fuzzer), kept here
so the routing module stays readable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sculpt.domain.spec import FleetSpec, Profile, parse_spec

MAX_BODY_BYTES = 64 * 1024  # requirements are a few hundred bytes; anything near this is not a client of ours


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


def install_error_handlers(app: FastAPI) -> None:
    """Every error ``app`` answers, in the one ``{"error", "fix"}`` shape: ours (``ApiError``), Starlette's
    404/405, FastAPI's parameter validation (422, the field named) and any bug (500, no traceback)."""

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
