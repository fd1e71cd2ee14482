"""The API against hostile callers, over real HTTP (uvicorn on a free 127.0.0.1 port, raw httpx requests):
missing vs wrong tokens, authentication before the body, one error shape, non-finite numbers, an
idempotent PUT, the failed-token limit (on an injected clock), OpenAPI's security scheme, protected reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from sculpt.app.api import create_app, serve, serve_in_thread
from sculpt.app.api_auth import FailedAuthLimit, reads_need_token
from sculpt.domain.errors import ConfigError
from sculpt.domain.spec import FleetSpec
from sculpt.loop.service import SculptorService
from tests.sculptor.fakes import run, service

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUT = "/v1/fleets/web/requirements"


@dataclass
class Api:
    client: httpx.Client
    svc: SculptorService
    saved: list[FleetSpec]
    now: list[float] = field(default_factory=lambda: [0.0])  # the failed-token limit's clock


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    servers: list[Any] = []
    clients: list[httpx.Client] = []

    def make(token: str = TOKEN, **options: Any) -> Api:
        svc, _fleet, _source, _act, clock = service()
        run(svc, clock, 30)
        saved: list[FleetSpec] = []
        now = [0.0]

        def persist(spec: FleetSpec) -> int:
            saved.append(spec)
            return 41 + len(saved)

        limit = FailedAuthLimit(limit=5, window_s=60.0, clock=lambda: now[0])
        app = create_app({"web": svc}, token=token, persist={"web": persist}, auth_limit=limit, **options)
        server = serve(app, "127.0.0.1:0")
        servers.append(server)
        client = httpx.Client(base_url=f"http://{server.address}", timeout=10)
        clients.append(client)
        return Api(client, svc, saved, now)

    try:
        yield make
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()


def assert_error_shape(r: httpx.Response, status: int, *words: str) -> dict[str, str]:
    """The one error shape: exactly ``error`` and ``fix``, each one non-empty line."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "fix"}, body
    assert all(isinstance(v, str) and v and "\n" not in v for v in body.values()), body
    for w in words:
        assert w in body["error"], body
    return body  # type: ignore[no-any-return]


def test_a_non_ascii_token_is_a_401_not_a_500(make_api: Callable[..., Api]) -> None:
    api = make_api()
    for raw in ("Bearer tökén".encode(), b"Bearer \xe9\xff", "Bearer s3cret-tokén".encode()):
        r = api.client.put(PUT, json={"profile": "batch"}, headers={b"Authorization": raw})
        assert_error_shape(r, 401, "the bearer token is wrong")
    assert api.saved == []


def test_a_non_ascii_configured_token_matches_its_utf8_bytes(make_api: Callable[..., Api]) -> None:
    api = make_api(token="clé-ünïcode")
    r = api.client.put(PUT, json={"profile": "batch"}, headers={b"Authorization": "Bearer clé-ünïcode".encode()})
    assert r.status_code == 200, r.text
    assert len(api.saved) == 1


@pytest.mark.parametrize("body", [b"{not json", b'{"colour": "red"}', b'{"budget_usd_per_hour": Infinity}', b"",
                                  b"[" * 5000, b"x" * 200_000])
def test_authentication_runs_before_the_body_is_read(make_api: Callable[..., Api], body: bytes) -> None:
    api = make_api()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = api.client.put(PUT, content=body, headers={"content-type": "application/json", **headers})
        got = assert_error_shape(r, 401)
        assert "token" in got["error"] and "json" not in r.text.lower() and "colour" not in r.text
    assert api.saved == []


def test_every_error_is_one_line_naming_the_field(make_api: Callable[..., Api]) -> None:
    api = make_api()
    c = api.client
    before = api.svc.spec
    cases: list[tuple[str, str, dict[str, Any], int, tuple[str, ...]]] = [
        ("PUT", PUT, {"content": b"{bad"}, 400, ("not JSON", "line 1 column 2")),
        ("PUT", PUT, {"content": b""}, 400, ("empty",)),
        ("PUT", PUT, {"content": b"\xff\xfe\x00garbage"}, 400, ()),
        ("PUT", PUT, {"content": b"[" * 50_000}, 400, ("not usable JSON",)),
        ("PUT", PUT, {"content": b" " * 70_000}, 413, ("64 KiB",)),
        ("PUT", PUT, {"json": {"colour": "red"}}, 422, ("unknown field 'colour'",)),
        ("PUT", PUT, {"json": {"slo": {"max_utilisation": 3}}}, 422, ("slo.max_utilisation",)),
        ("PUT", PUT, {"json": {"slo": {"p95_latency_ms": "fast"}}}, 422, ("slo.p95_latency_ms",)),
        ("PUT", PUT, {"json": {"aggressiveness": True}}, 422, ("aggressiveness",)),
        ("PUT", PUT, {"json": {"profile": "fast"}}, 422, ("profile",)),
        ("PUT", PUT, {"json": [1, 2]}, 422, ("requirements",)),
        ("PUT", PUT, {"json": {"slo": {"nope\nline": 1}}}, 422, ("unknown field 'slo.nope line'",)),
        ("PUT", "/v1/fleets/nope/requirements", {"json": {}}, 404, ("no fleet 'nope'",)),
        ("GET", "/v1/fleets/nope", {}, 404, ("no fleet 'nope'",)),
        ("GET", "/v1/nothing", {}, 404, ("no route GET /v1/nothing",)),
        ("DELETE", "/v1/fleets", {}, 405, ("DELETE is not allowed",)),
    ]
    for method, path, kw, status, words in cases:
        assert_error_shape(c.request(method, path, headers=AUTH, **kw), status, *words)
    assert api.saved == [] and api.svc.spec == before


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e309", "-1e309", "9" * 400])
@pytest.mark.parametrize("path", ["budget_usd_per_hour", "aggressiveness", "slo.p95_latency_ms"])
def test_non_finite_numbers_are_refused(make_api: Callable[..., Api], number: str, path: str) -> None:
    api = make_api()
    top, _, sub = path.partition(".")
    body = f'{{"{top}": {{"{sub}": {number}}}}}' if sub else f'{{"{top}": {number}}}'
    got = assert_error_shape(api.client.put(PUT, content=body.encode(), headers=AUTH), 422, "not a finite number")
    assert "finite JSON numbers" in got["fix"]
    assert api.saved == [] and api.svc.spec.budget_usd_per_hour is None


def test_an_identical_put_writes_no_version(make_api: Callable[..., Api]) -> None:
    api = make_api()
    c = api.client
    first = c.put(PUT, json={"budget_usd_per_hour": 2.0, "slo": {"p95_latency_ms": 100}}, headers=AUTH).json()
    assert first["changed"] is True and first["version"] == 42
    spec = api.svc.spec
    for same in ({"budget_usd_per_hour": 2.0, "slo": {"p95_latency_ms": 100}}, {"budget_usd_per_hour": 2},
                 {}, {"profile": spec.profile, "aggressiveness": spec.aggressiveness},
                 {"slo": {"max_utilisation": spec.slo.max_utilisation}}):
        r = c.put(PUT, json=same, headers=AUTH)
        assert r.status_code == 200 and r.json()["changed"] is False and r.json()["version"] is None, (same, r.text)
        assert "nothing changed" in r.json()["notes"][0]
    assert len(api.saved) == 1 and api.svc.spec is spec
    again = c.put(PUT, json={"budget_usd_per_hour": 3.0}, headers=AUTH).json()
    assert again["changed"] is True and again["version"] == 43 and len(api.saved) == 2


def test_failed_tokens_are_limited_per_address(make_api: Callable[..., Api]) -> None:
    api = make_api()
    c = api.client
    bad = {"Authorization": "Bearer guess"}
    for t in range(5):  # one guess a second
        api.now[0] = float(t)
        assert c.put(PUT, json={"budget_usd_per_hour": 9.0}, headers=bad).status_code == 401
    r = c.put(PUT, json={"budget_usd_per_hour": 9.0}, headers=bad)
    assert_error_shape(r, 429, "too many failed tokens from 127.0.0.1")
    assert r.headers["retry-after"] == "56"  # the first guess (t=0) leaves the 60 s window at t=60
    # locked out: even the right token is not compared (so guessing cannot go on behind the 429s)
    assert c.put(PUT, json={"budget_usd_per_hour": 9.0}, headers=AUTH).status_code == 429
    # a missing token does not count as a guess, but is held back as well
    assert c.put(PUT, json={}).status_code == 429
    api.now[0] = 45.5
    assert c.put(PUT, json={}, headers=AUTH).headers["retry-after"] == "15"
    api.now[0] = 60.0
    assert c.put(PUT, json={"budget_usd_per_hour": 9.0}, headers=AUTH).status_code == 200
    assert len(api.saved) == 1
    # the other four guesses are still in the window: one more locks again, until the t=1 guess ages out
    assert c.put(PUT, json={}, headers=bad).status_code == 401
    r = c.put(PUT, json={}, headers=AUTH)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"


def test_the_limit_counts_each_address_and_stays_bounded() -> None:
    now = [0.0]
    limit = FailedAuthLimit(limit=3, window_s=10.0, clock=lambda: now[0], max_clients=100)
    for _ in range(3):
        limit.failed("10.0.0.1")
    assert limit.retry_after("10.0.0.1") == 10.0 and limit.retry_after("10.0.0.2") is None
    limit.failed("10.0.0.2")
    now[0] = 4.0
    assert limit.retry_after("10.0.0.1") == 6.0
    for i in range(1000):
        limit.failed(f"192.0.2.{i}")
    assert len(limit._failures) <= 100
    now[0] = 10.0
    assert limit.retry_after("10.0.0.1") is None


def test_openapi_declares_the_bearer_scheme_on_the_routes_that_need_it(make_api: Callable[..., Api]) -> None:
    for protect in (False, True):
        doc = make_api(reads_need_token=protect).client.get("/openapi.json").json()
        scheme = doc["components"]["securitySchemes"]["bearer"]
        assert scheme["type"] == "http" and scheme["scheme"] == "bearer" and "SCULPT_API_TOKEN" in scheme["description"]
        paths = doc["paths"]
        assert paths["/v1/fleets/{name}/requirements"]["put"]["security"] == [{"bearer": []}]
        for read in ("/v1/fleets", "/v1/fleets/{name}", "/v1/fleets/{name}/plan", "/metrics"):
            assert ("security" in paths[read]["get"]) is protect, read
        put = paths["/v1/fleets/{name}/requirements"]["put"]
        ref = put["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        schemas = doc["components"]["schemas"]
        assert set(schemas[ref]["properties"]) == {"profile", "slo", "budget_usd_per_hour", "aggressiveness"}
        refs = [v.rsplit("/", 1)[1] for v in _refs(doc)]
        assert refs and all(r in schemas for r in refs)  # every $ref resolves
        for code in ("400", "401", "413", "422", "429"):
            assert put["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_reads_can_require_the_token(make_api: Callable[..., Api]) -> None:
    api = make_api(reads_need_token=True)
    c = api.client
    for path in ("/v1/fleets", "/v1/fleets/web", "/v1/fleets/web/plan", "/metrics"):
        assert_error_shape(c.get(path), 401, "no bearer token: reads need one", "SCULPT_API_READS")
        assert_error_shape(c.get(path, headers={"Authorization": "Bearer nope"}), 401, "wrong")
        r = c.get(path, headers=AUTH)
        assert r.status_code == 200 and "web" in r.text, r.text
    assert "web-0" in c.get("/metrics", headers=AUTH).text  # the instance ids the option hides
    assert c.get("/openapi.json").status_code == 200  # the schema shows no instance or price
    assert_error_shape(c.get("/v1/fleets/nope"), 401)  # not even which fleets exist
    assert json.loads(c.get("/v1/fleets", headers=AUTH).text)[0]["name"] == "web"


@pytest.mark.parametrize(("host", "env", "protect"), [
    ("127.0.0.1", {}, False), ("127.0.0.2", {}, False), ("::1", {}, False), ("localhost", {}, False),
    ("0.0.0.0", {}, True), ("10.1.2.3", {}, True), ("my-host", {}, True),
    ("0.0.0.0", {"SCULPT_API_READS": "open"}, False), ("127.0.0.1", {"SCULPT_API_READS": "Token"}, True),
    ("0.0.0.0", {"SCULPT_API_READS": "auto"}, True)])
def test_reads_need_the_token_off_loopback_unless_told(host: str, env: dict[str, str], protect: bool) -> None:
    assert reads_need_token(host, env) is protect


def test_a_bad_reads_setting_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match=r"\$SCULPT_API_READS is 'yes', not auto, open or token\. To fix: unset"):
        reads_need_token("127.0.0.1", {"SCULPT_API_READS": "yes"})


def test_watch_serves_with_the_reads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    svc, _fleet, _source, _act, clock = service()
    run(svc, clock, 5)
    monkeypatch.setenv("SCULPT_API_TOKEN", TOKEN)
    for setting, status, note in (("token", 401, "reads need the token too"), ("", 200, "reads are open")):
        monkeypatch.setenv("SCULPT_API_READS", setting)
        server = serve_in_thread(svc, "127.0.0.1:0")
        try:
            assert note in server.token_note
            assert httpx.get(f"http://{server.address}/metrics", timeout=10).status_code == status
            assert httpx.get(f"http://{server.address}/metrics", headers=AUTH, timeout=10).status_code == 200
        finally:
            server.stop()
