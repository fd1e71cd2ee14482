"""Fuzz the HTTP API (Hypothesis) over real HTTP: uvicorn on a free 127.0.0.1 port, raw httpx requests.

Any body, Authorization header, extra header or fleet name gives a status in {200, 400, 401, 404, 413, 422,
429}, never 500; every error body is the sculpt shape (exactly ``error`` and ``fix``, one line each); and
the stored version count grows by one exactly when the PUT was authenticated, its body valid and it
changed the requirements (the oracle below decides that with the standard library and the spec model).
Header values are drawn from what HTTP allows in a field value (visible ASCII, SP/HTAB, obs-text bytes):
anything else is refused by uvicorn's parser (h11) before sculpt sees it. Bounded: < 40 s on 2 cores."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sculpt.app.api import create_app, serve
from sculpt.app.api_auth import FailedAuthLimit
from sculpt.app.api_requests import MAX_BODY_BYTES, Requirements, apply_requirements
from sculpt.domain.errors import SculptError
from sculpt.domain.spec import FleetSpec
from sculpt.loop.service import SculptorService
from tests.sculptor.fakes import run, service

TOKEN = "fuzz-token-Zq9"
ALLOWED = {200, 400, 401, 404, 413, 422, 429}
FIELD_VALUE_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]
SETTINGS = settings(max_examples=1000, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Served:
    """The running API and what it saved. Not a dataclass: a falsifying example prints its arguments, and
    Hypothesis would print every saved spec (a repr so large that the warning fails the run)."""

    def __init__(self, client: httpx.Client, svc: SculptorService, saved: list[FleetSpec], now: list[float]) -> None:
        self.client, self.svc, self.saved, self.now = client, svc, saved, now

    def __repr__(self) -> str:
        return f"Served({len(self.saved)} versions saved, clock at {self.now[0]})"


@pytest.fixture(scope="module")
def api() -> Iterator[Served]:
    svc, _fleet, _source, _act, clock = service()
    run(svc, clock, 30)
    saved: list[FleetSpec] = []
    now = [0.0]

    def persist(spec: FleetSpec) -> int:
        saved.append(spec)
        return len(saved)

    limit = FailedAuthLimit(limit=5, window_s=60.0, clock=lambda: now[0])
    server = serve(create_app({"web": svc}, token=TOKEN, persist={"web": persist}, reads_need_token=True,
                              auth_limit=limit), "127.0.0.1:0")
    try:
        with httpx.Client(base_url=f"http://{server.address}", timeout=30) as c:
            yield Served(c, svc, saved, now)
    finally:
        server.stop()


# -- strategies ----------------------------------------------------------------------------------------------
# SP/HTAB around a value are not part of it (h11 will not even send them): strip them
field_value = st.lists(st.sampled_from(FIELD_VALUE_BYTES), max_size=60).map(lambda b: bytes(b).strip(b" \t"))
right = st.just(f"Bearer {TOKEN}".encode())
authorization = st.one_of(  # the right token often, so bodies get past authentication
    right, right, right, st.none(),
    st.sampled_from([b"bearer", b"BEARER", b"Bearer", b"Basic", b"Token", b""]).flatmap(
        lambda scheme: st.sampled_from([TOKEN.encode(), TOKEN.encode() + b"x", TOKEN[:-1].encode(),
                                        TOKEN.encode() + b"\xa0", b"", "tökén".encode()]).map(
            lambda tok: scheme + b" " + tok)),
    field_value,
).map(lambda v: v if v is None else v.strip(b" \t"))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                            st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                           max_leaves=12)
numbers = st.one_of(st.floats(), st.integers(-10, 10), st.floats(0.0, 1.0), st.floats(1.0, 1000.0),
                    st.sampled_from([0, 1, 0.5, 250.0, 1e309, -1e309, 10**400]))
near_valid = st.fixed_dictionaries({}, optional={
    "profile": st.one_of(st.sampled_from(["general", "batch", "low-latency", "high-throughput", "memory-bound"]),
                         st.text(max_size=10), numbers),
    "slo": st.one_of(st.fixed_dictionaries({}, optional={"p95_latency_ms": numbers, "max_utilisation": numbers,
                                                         "other": scalars}), scalars),
    "budget_usd_per_hour": st.one_of(numbers, scalars),
    "aggressiveness": st.one_of(numbers, scalars),
    "colour": scalars,
})


valid = st.fixed_dictionaries({}, optional={  # what a real client sends: mostly changes, sometimes not
    "profile": st.sampled_from(["general", "batch", "low-latency"]),
    "slo": st.fixed_dictionaries({}, optional={"p95_latency_ms": st.sampled_from([250.0, 100, 50.5]),
                                               "max_utilisation": st.sampled_from([0.8, 0.5, 1])}),
    "budget_usd_per_hour": st.sampled_from([1.5, 2, 0.25]),
    "aggressiveness": st.sampled_from([0.5, 0, 1.0]),
})


SPECIAL = {"empty": b"", "blank": b"  ", "deep-list": b"[" * 20_000, "deep-object": b"{" * 5000,
           "bom": b"\xef\xbb\xbf{}", "utf-16": "{}".encode("utf-16"), "over-the-limit": b" " * (MAX_BODY_BYTES + 1),
           "5000-digits": b'{"budget_usd_per_hour": ' + b"9" * 5000 + b"}"}


class Body(bytes):
    """A body whose repr stays short (a falsifying 64 KiB example would otherwise be a warning, so an error)."""

    def __repr__(self) -> str:
        return bytes.__repr__(self) if len(self) <= 200 else f"Body({bytes(self[:60])!r} + ... {len(self)} bytes)"


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, default=str).encode()  # Infinity/NaN tokens on purpose


bodies = st.one_of(
    valid.map(_dump), near_valid.map(_dump), near_valid.map(_dump),
    json_values.map(_dump),
    st.binary(max_size=200),
    near_valid.map(_dump).flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda i: b[:i])),  # cut short
    st.sampled_from(list(SPECIAL)).map(SPECIAL.__getitem__),  # by name: the strategy's repr stays short
).map(Body)
fleet_names = st.one_of(st.just("web"), st.just("web"), st.just("web"), st.text(max_size=12))
extra_headers = st.dictionaries(st.sampled_from([b"content-type", b"x-forwarded-for", b"accept", b"x-a"]),
                                field_value, max_size=3)


# -- the oracle ----------------------------------------------------------------------------------------------
def authenticated(raw: bytes | None) -> bool:
    """What the API must accept: ``Bearer`` (any case), one SP, the token; SP/HTAB around is not part of it."""
    if raw is None:
        return False
    scheme, _, given = raw.strip(b" \t").partition(b" ")
    return scheme.lower() == b"bearer" and given.strip(b" \t") == TOKEN.encode()


def routable(name: str) -> bool:
    """Whether ``/v1/fleets/<name>/requirements`` reaches the route (else 404 before any authentication)."""
    return bool(name) and "/" not in name and name not in (".", "..")


def finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 1e308
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def would_change(body: bytes, spec: FleetSpec) -> bool:
    """Independently of the API's parser: standard JSON, finite numbers, the model, a different spec."""
    if len(body) > MAX_BODY_BYTES:
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not finite(data):
        return False
    try:
        new = apply_requirements(spec, Requirements.model_validate(data))
    except (ValidationError, SculptError):
        return False
    return new.model_dump(mode="json") != spec.model_dump(mode="json")


def check_response(r: httpx.Response) -> None:
    event(f"status {r.status_code}")  # --hypothesis-show-statistics shows the spread
    assert r.status_code in ALLOWED, (r.status_code, r.text[:300])
    if r.status_code == 200:
        return
    body = r.json()
    assert set(body) == {"error", "fix"}, body
    for v in body.values():
        assert isinstance(v, str) and v and v.isprintable(), body
    if r.status_code == 429:
        assert int(r.headers["retry-after"]) >= 1


def put(api: Served, name: str, body: bytes, auth: bytes | None, extra: dict[bytes, bytes]) -> httpx.Response:
    headers: dict[bytes, bytes] = dict(extra)
    if auth is not None:
        headers[b"authorization"] = auth
    return api.client.put(f"/v1/fleets/{quote(name, safe='')}/requirements", content=body, headers=headers)


# -- the properties ------------------------------------------------------------------------------------------
@SETTINGS
@given(body=bodies, auth=authorization, name=fleet_names, extra=extra_headers)
def test_any_put_is_a_clean_answer_and_versions_only_on_a_real_change(
        api: Served, body: bytes, auth: bytes | None, name: str, extra: dict[bytes, bytes]) -> None:
    api.now[0] += 3600.0  # a fresh failed-token window for every example (the sequence test covers 429)
    before, count = api.svc.spec, len(api.saved)
    expect = authenticated(auth) and name == "web" and would_change(body, before)
    r = put(api, name, body, auth, extra)
    check_response(r)
    assert len(api.saved) == count + (1 if expect else 0), (r.status_code, r.text[:300])
    if not routable(name):
        assert r.status_code == 404, r.text
    elif not authenticated(auth):
        assert r.status_code == 401, r.text
    else:
        assert r.status_code not in (401, 429), r.text  # the right token, in a fresh window
    if r.status_code == 200:
        assert r.json()["changed"] is expect and (api.svc.spec is before) is not expect
    else:
        assert api.svc.spec is before


@SETTINGS
@given(auth=authorization, path=st.sampled_from(["/v1/fleets", "/v1/fleets/web", "/v1/fleets/web/plan",
                                                 "/metrics", "/v1/fleets/nope"]), extra=extra_headers)
def test_any_protected_read_is_a_clean_answer(api: Served, auth: bytes | None, path: str,
                                              extra: dict[bytes, bytes]) -> None:
    api.now[0] += 3600.0
    headers: dict[bytes, bytes] = dict(extra)
    if auth is not None:
        headers[b"authorization"] = auth
    r = api.client.get(path, headers=headers)
    check_response(r)
    if authenticated(auth):
        assert r.status_code == (404 if path.endswith("nope") else 200), r.text[:300]
    else:
        assert r.status_code == 401 and "web-0" not in r.text


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.one_of(authorization, field_value), bodies, st.floats(0.0, 8.0)),
                      min_size=1, max_size=20))
def test_a_sequence_of_puts_keeps_the_failed_token_bound(api: Served, steps: list[tuple[bytes | None, bytes,
                                                                                        float]]) -> None:
    api.now[0] += 3600.0
    failures: list[float] = []  # the oracle's own record of wrong tokens: at most 5 in any 60 s
    for auth, body, dt in steps:
        api.now[0] += dt
        now = api.now[0]
        recent = [t for t in failures if t > now - 60.0]
        locked = len(recent) >= 5
        before, count = api.svc.spec, len(api.saved)
        expect = not locked and authenticated(auth) and would_change(body, before)
        r = put(api, "web", body, auth, {})
        check_response(r)
        assert len(api.saved) == count + (1 if expect else 0), (locked, r.status_code, r.text[:300])
        if locked:
            assert r.status_code == 429
        elif r.status_code == 401 and auth is not None and auth.strip(b" \t").lower() not in (b"", b"bearer"):
            failures.append(now)
        assert len([t for t in failures if t > now - 60.0]) <= 5
