"""The event record (decisions, moves, rollbacks, policy blocks), ``sculpt events [--follow]`` and the
webhook: real SQLite, a real HTTP receiver on a socket, the real CLI process for ``--follow``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sculpt.app.events import DecisionEvents, Webhook, http_post
from sculpt.cli.main import app
from sculpt.domain.plan import Action, Decision, Plan, RuleResult
from sculpt.ledger import Ledger
from tests.helpers import serving


@pytest.fixture
def led(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "home" / "ledger.db")
    yield ledger
    ledger.close()


def _plan(decision: Decision, *actions: Action, reason: str = "r", policy: tuple[RuleResult, ...] = ()) -> Plan:
    return Plan(stack="web", decision=decision, actions=actions, reason=reason, policy=policy)


UP = Action(kind="resize", slot="web-0", from_shape="a", to_shape="b")


def test_decisions_are_recorded_once_per_change_of_mind(led: Ledger) -> None:
    ev = DecisionEvents(led, "web")
    assert ev.observe(_plan(Decision.HOLD, reason="demand 0.31"), 1.0) is not None  # the first plan
    assert ev.observe(_plan(Decision.HOLD, reason="demand 0.33"), 2.0) is None  # still holding
    assert ev.observe(_plan(Decision.MIGRATE, UP), 3.0) is not None
    assert ev.observe(_plan(Decision.MIGRATE, UP), 4.0, executed="done") is not None  # it was carried out
    assert ev.observe(_plan(Decision.HOLD), 5.0) is not None
    got = led.events("web")
    assert [(e.kind, e.data["decision"], e.time) for e in got] == [
        ("decision", "hold", 1.0), ("decision", "migrate", 3.0), ("decision", "migrate", 4.0),
        ("decision", "hold", 5.0)]
    assert got[2].data["executed"] == "done"
    assert got[1].data["actions"][0]["to_shape"] == "b"
    assert [e.seq for e in got] == sorted(e.seq for e in got)


def test_a_policy_block_is_its_own_kind_naming_the_rule(led: Ledger) -> None:
    rule = RuleResult(rule="budget", passed=False, message="over $5/h")
    DecisionEvents(led, "web").observe(_plan(Decision.BLOCKED, UP, reason="too dear", policy=(rule,)), 1.0)
    (e,) = led.events("web")
    assert e.kind == "policy-block"
    assert "budget" in e.summary
    assert e.data["policy"] == [{"rule": "budget", "passed": False, "level": "mandatory", "message": "over $5/h"}]


def test_moves_and_rolled_back_migrations_are_events_written_with_them(led: Ledger) -> None:
    led.record_move("web", time=10.0, origin="watch", slot="web-0", from_shape="a", from_region="r",
                    to_shape="b", to_region="r", version=3)
    led.begin_migration("m1", "web", "blue-green", {}, {}, "PLAN")
    led.end_migration("m1", "rolled_back", "green never became healthy", when=20.0)
    led.begin_migration("m2", "web", "in-place", {}, {}, "PLAN")
    led.end_migration("m2", "done", None, when=30.0)
    kinds = [(e.kind, e.time) for e in led.events("web")]
    assert kinds == [("move", 10.0), ("rollback", 20.0)]
    move, rb = led.events("web")
    assert move.data["to_shape"] == "b" and move.data["origin"] == "watch"
    assert "green never became healthy" in rb.summary
    assert led.events("web", kinds=("rollback",)) == [rb]
    assert led.events("web", after=move.seq) == [rb]
    assert led.events("other") == []


class _Receiver(BaseHTTPRequestHandler):
    fail_first = 0
    got: list[dict[str, Any]]
    seen = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.seen += 1
        if cls.seen <= cls.fail_first:
            self.send_response(503)
        else:
            cls.got.append({"body": json.loads(body), "seq": self.headers["X-Sculpt-Event-Seq"]})
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("R", (_Receiver,), {"got": [], "seen": 0, "fail_first": 0})
    with serving(handler) as url:
        yield f"{url}/hook", handler


def test_the_webhook_delivers_in_order_retrying_with_backoff(led: Ledger, receiver: tuple[str, Any]) -> None:
    url, handler = receiver
    handler.fail_first = 3
    for i in range(3):
        led.append_event("web", "decision", f"d{i}", {"i": i}, when=float(i))
    slept: list[float] = []
    hook = Webhook(led, "web", url, sleep=slept.append)
    assert hook.deliver(budget_s=100.0) == 3
    assert [g["body"]["summary"] for g in handler.got] == ["d0", "d1", "d2"]
    assert [g["body"]["kind"] for g in handler.got] == ["decision"] * 3
    assert [int(g["seq"]) for g in handler.got] == [g["body"]["seq"] for g in handler.got]
    assert slept == [0.5, 1.0, 2.0]  # 503 three times, doubling
    assert hook.deliver() == 0  # nothing twice: the cursor moved past each 2xx
    assert led.event_cursor("web", url) == handler.got[-1]["body"]["seq"]


def test_a_receiver_that_is_down_gets_everything_later(led: Ledger, receiver: tuple[str, Any]) -> None:
    url, handler = receiver
    port = int(url.split(":")[2].split("/")[0])
    led.append_event("web", "move", "m0", {}, when=1.0)
    # nothing listens on port 1: refused; the budget runs out, the cursor stays
    down = Webhook(led, "web", "http://127.0.0.1:1/hook", sleep=lambda s: None,
                   monotonic=iter(range(0, 10_000, 7)).__next__)
    assert down.deliver(budget_s=20.0) == 0
    assert led.event_cursor("web", "http://127.0.0.1:1/hook") == 0
    led.append_event("web", "rollback", "r1", {}, when=2.0)
    assert Webhook(led, "web", url).deliver() == 2
    assert [g["body"]["summary"] for g in handler.got] == ["m0", "r1"]
    assert port > 1


def test_http_post_reports_refusals_as_zero() -> None:
    assert http_post("http://127.0.0.1:1/x", b"{}", {}) == 0


def _spec(tmp_path: Path) -> Path:
    p = tmp_path / "proj" / "sculpt.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text("fleet: web\nprovider: local\nshape: std-0.5c-512m\nregion: local-a\n")
    return p


def test_sculpt_events_json_and_filters(led: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCULPT_HOME", str(led.path.parent))
    led.append_version("web", spec={"fleet": "web", "provider": "local", "shape": "std-0.5c-512m",
                                    "region": "local-a"}, fleet={"slots": []}, result="succeeded")
    led.append_event("web", "decision", "hold: fine", {"decision": "hold"}, when=1.0)
    led.append_event("web", "move", "web-0: a -> b", {}, when=2.0)
    spec = _spec(tmp_path)
    r = CliRunner().invoke(app, ["events", "--spec", str(spec), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert [e["kind"] for e in got] == ["decision", "move"]
    assert set(got[0]) == {"seq", "time", "stack", "kind", "summary", "data"}
    r = CliRunner().invoke(app, ["events", "--spec", str(spec), "--json", "--kind", "move"])
    assert [e["summary"] for e in json.loads(r.stdout)] == ["web-0: a -> b"]
    r = CliRunner().invoke(app, ["events", "--spec", str(spec), "--kind", "nope"])
    assert r.exit_code == 1 and "unknown event kind" in r.output


def test_sculpt_events_follow_prints_each_event_as_it_is_recorded(led: Ledger, tmp_path: Path) -> None:
    led.append_version("web", spec={"fleet": "web", "provider": "local", "shape": "std-0.5c-512m",
                                    "region": "local-a"}, fleet={"slots": []}, result="succeeded")
    led.append_event("web", "decision", "first", {}, when=1.0)
    spec = _spec(tmp_path)
    env = {**os.environ, "SCULPT_HOME": str(led.path.parent), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sculpt.cli.main", "events", "--follow", "--json",
                             "--spec", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None

    def line() -> dict[str, Any]:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "sculpt events --follow printed nothing"
        return json.loads(proc.stdout.readline())  # type: ignore[union-attr]

    try:
        assert line()["summary"] == "first"
        for i in range(3):  # written by another process while it follows
            led.append_event("web", "move", f"move {i}", {"i": i}, when=2.0 + i)
            assert line()["summary"] == f"move {i}"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
