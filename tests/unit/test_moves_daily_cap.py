"""One record of moves (issue 11, case 9): the decision's daily cap (``plan``/``watch``) and ``policy check``
count the same migrations — the ledger's moves of the last 24 h, one per command, whatever made them
(``sculpt morph`` included, which the decision used to ignore). Real SQLite; the CLI through CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.decide.decision import REASONS, Why
from sculpt.domain.plan import Decision
from sculpt.ledger import DAY_S, Ledger
from tests.helpers import write_project
from tests.sculptor.fakes import T0, ConfidentForecast, run, service, spec

SPEC = {"fleet": "web", "shape": "std-0.5c-512m", "region": "local-a", "replicas": {"min": 1, "max": 2, "desired": 2},
        "policy": {"max_migrations_per_day": 2}}


def _move(led: Ledger, t: float, origin: str, version: int | None, slot: str = "web-0") -> None:
    led.record_move("web", time=t, origin=origin, slot=slot, from_shape="std-0.5c-512m", from_region="local-a",
                    to_shape="std-1c-1024m", to_region="local-a", version=version)


def _history(led: Ledger, now: float) -> None:
    """A morph of both slots an hour ago (one command), a rollback half an hour ago, and a watch move two
    days ago (outside the window)."""
    _move(led, now - 2 * DAY_S, "watch", None)
    _move(led, now - 3600, "morph", 2, "web-0")
    _move(led, now - 3600, "morph", 2, "web-1")
    _move(led, now - 1800, "rollback", 3)


def _rule(results: list[dict[str, object]]) -> dict[str, object]:
    return next(r for r in results if r["rule"] == "max-migrations-per-day")


@pytest.fixture
def project(sculpt_home: Path, tmp_path: Path) -> Path:
    return write_project(tmp_path, SPEC)


def test_policy_check_counts_the_record_of_moves(project: Path, sculpt_home: Path) -> None:
    import time

    plan = project.parent / "plan.json"
    plan.write_text(json.dumps({"stack": "web", "actions": [
        {"kind": "resize", "slot": "web-0", "from_shape": "std-0.5c-512m", "to_shape": "std-1c-1024m"}]}))
    runner = CliRunner()
    # no ledger yet: nothing counted
    r = runner.invoke(app, ["policy", "check", "--spec", str(project), "--plan", str(plan), "--json"])
    assert r.exit_code == 0, r.output
    assert _rule(json.loads(r.stdout))["message"] == "1 migration(s) in the last 24 h, cap 2"
    led = Ledger(sculpt_home / "ledger.db")
    _history(led, time.time())
    led.close()
    r = runner.invoke(app, ["policy", "check", "--spec", str(project), "--plan", str(plan), "--json"])
    assert r.exit_code == 2, r.output  # 2 migrations today + this one > the cap of 2
    rule = _rule(json.loads(r.stdout))
    assert (rule["passed"], rule["message"]) == (False, "3 migration(s) in the last 24 h, cap 2")


def test_plan_counts_the_same_moves(project: Path, sculpt_home: Path) -> None:
    import time

    led = Ledger(sculpt_home / "ledger.db")
    _history(led, time.time())
    led.close()
    r = CliRunner().invoke(app, ["plan", "--spec", str(project), "--json", "--model", "river"])
    assert r.exit_code == 0, r.output
    assert _rule(json.loads(r.stdout)["policy"])["message"] == "2 migration(s) in the last 24 h, cap 2"


def test_the_decision_daily_cap_reads_the_ledger_moves(tmp_path: Path) -> None:
    def blocked_by(record: bool) -> tuple[Decision, int, str]:
        led = Ledger(tmp_path / f"{record}.db")
        try:
            svc, fleet, source, act, clock = service(predictor=ConfidentForecast(cpu=1.2),
                                                     sp=spec(policy={"max_migrations_per_day": 1}))
            if record:  # `sculpt morph` moved the fleet 6 hours ago (past the cooldown); an older move is out
                _move(led, T0 - 6 * 3600, "morph", 2)
                _move(led, T0 - 2 * DAY_S, "watch", None)
            svc.moves = led
            report = run(svc, clock, 1)[0]
            return report.plan.decision, len(act.calls), report.plan.reason
        finally:
            led.close()

    decision, calls, _ = blocked_by(record=False)
    assert (decision, calls) == (Decision.MIGRATE, 1)
    decision, calls, reason = blocked_by(record=True)
    assert calls == 0 and decision is not Decision.MIGRATE, reason
    assert REASONS[Why.POLICY] in reason, reason


def test_count_moves_fills_every_stream_and_starts_the_cooldown(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db")
    try:
        svc, fleet, source, act, clock = service(n=2)
        _history(led, clock.now())
        svc.count_moves(clock.now())  # no ledger: the decision's own memory stays
        assert (svc.sculptor.state.moves_last_day(clock.now()) == 0).all()
        svc.moves = led
        svc.count_moves(clock.now())
        st = svc.sculptor.state
        assert st.moves_last_day(clock.now()).tolist() == [2] * len(st)
        assert (st.since_last_move(clock.now()) == 1800.0).all()
    finally:
        led.close()
