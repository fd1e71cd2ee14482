"""``sculpt policy check`` through the CLI (no Pulumi involved), and the plan's pull-request markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sculpt.cli.main import app
from sculpt.domain.plan import Action, Decision, Plan, RuleResult

SPEC = """\
fleet: web
engine: pulumi
provider: aws
shape: m6i.large
region: us-east-1
families: [m6i, c6i]
budget_usd_per_hour: 1.0
replicas: {min: 1, max: 3, desired: 2}
"""


@pytest.fixture
def spec(tmp_path: Path, sculpt_home: Path) -> Path:
    p = tmp_path / "sculpt.yaml"
    p.write_text(SPEC)
    return p


def _plan(tmp_path: Path, actions: list[dict], stack: str = "web") -> Path:
    p = tmp_path / "plan.json"
    p.write_text(json.dumps({"stack": stack, "decision": "migrate", "actions": actions, "reason": "x",
                             "policy": []}))
    return p


def test_spec_within_policy_exits_0_with_a_json_list(spec: Path) -> None:
    r = CliRunner().invoke(app, ["policy", "check", "--spec", str(spec), "--json"])
    assert r.exit_code == 0, r.output
    results = json.loads(r.stdout)
    assert {"rule", "level", "passed", "message"} == set(results[0])
    assert {x["rule"] for x in results} >= {"allowed-families", "allowed-regions", "budget", "replica-bounds",
                                            "required-tags", "no-public-ip"}
    assert all(x["passed"] for x in results)


def test_plan_into_a_forbidden_family_exits_2(spec: Path, tmp_path: Path) -> None:
    plan = _plan(tmp_path, [{"kind": "resize", "slot": "web-0", "from_shape": "m6i.large", "to_shape": "r6i.large"}])
    r = CliRunner().invoke(app, ["policy", "check", "--spec", str(spec), "--plan", str(plan), "--json"])
    assert r.exit_code == 2
    failed = [x for x in json.loads(r.stdout) if not x["passed"]]
    assert [x["rule"] for x in failed] == ["allowed-families"]
    assert "r6i.large not in allowed families" in failed[0]["message"]
    assert "error: policy blocks it: allowed-families" in r.stderr


def test_plan_scaling_beyond_the_budget_exits_2_in_text_mode(spec: Path, tmp_path: Path) -> None:
    plan = _plan(tmp_path, [{"kind": "resize", "to_shape": "m6i.8xlarge"}, {"kind": "scale", "replicas": 3}])
    r = CliRunner().invoke(app, ["policy", "check", "--spec", str(spec), "--plan", str(plan)])
    assert r.exit_code == 2
    assert "[BLOCK] budget: fleet $" in r.stdout
    assert "[ok] replica-bounds: 3 serving replica(s), bounds 1..3" in r.stdout


def test_plan_for_another_stack_is_a_one_line_error(spec: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["policy", "check", "--spec", str(spec), "--plan", str(_plan(tmp_path, [], "api"))])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        "error: the plan is for stack 'api', the spec for 'web'. To fix: pass the spec the plan was made from."]


def test_plan_that_is_not_json_is_a_one_line_error(spec: Path, tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("not json")
    r = CliRunner().invoke(app, ["policy", "check", "--spec", str(spec), "--plan", str(bad)])
    assert r.exit_code == 1 and "is not JSON" in r.stderr


def test_plan_markdown_shows_changes_reason_money_confidence_and_policy() -> None:
    plan = Plan(stack="web", decision=Decision.MIGRATE, reason="demand fell; c6i is cheaper",
                actions=(Action(kind="resize", slot="web-0", from_shape="m6i.large", to_shape="c6i.large",
                                from_region="us-east-1", to_region="us-east-1"),),
                expected_monthly_delta_usd=-23.5, confidence=0.82, risk=0.03,
                policy=(RuleResult(rule="budget", passed=True, message="fleet $0.08/h within cap $1.00/h"),
                        RuleResult(rule="change-window", level="advisory", passed=False, message="outside")))
    md = plan.to_markdown()
    assert md.startswith("### sculpt plan for `web`: migrate (allowed)")
    assert "**Why:** demand fell; c6i is cheaper" in md
    assert "| resize | web-0 | m6i.large us-east-1 | c6i.large us-east-1 |" in md
    assert "**-$23.50/month**" in md and "confidence: 82%" in md
    assert "| budget | mandatory | pass |" in md and "| change-window | advisory | warn |" in md


def test_blocked_plan_markdown_says_so() -> None:
    plan = Plan(stack="web", decision=Decision.BLOCKED, reason="over budget",
                policy=(RuleResult(rule="budget", passed=False, message="fleet $2/h exceeds cap $1/h"),))
    md = plan.to_markdown()
    assert "(**blocked by policy**)" in md and "| budget | mandatory | **FAIL** |" in md
    assert "No changes to the fleet." in md
