"""The example CI workflow (docs/examples/github-workflow.yml) calls sculpt verbs and flags that exist.

A user copies the file as it is; a renamed verb or flag would break their pipeline silently. Each
``sculpt ...`` command line in a ``run:`` step is checked against the CLI's own ``--help``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from sculpt.cli.main import app

WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "examples" / "github-workflow.yml"


def _sculpt_calls() -> list[list[str]]:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    calls = []
    for job in jobs.values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                m = re.search(r"\.venv/bin/sculpt (.*?)(?:[<>|]|2>|$)", line)
                if m:
                    calls.append(shlex.split(m.group(1)))
    return calls


def test_the_workflow_calls_plan_policy_check_and_up() -> None:
    verbs = {tuple(w for w in c if not w.startswith("-"))[:1] for c in _sculpt_calls()}
    assert {("plan",), ("policy",), ("up",)} <= verbs


def test_every_sculpt_call_in_the_workflow_uses_existing_verbs_and_flags() -> None:
    for call in _sculpt_calls():
        words = [w for w in call if not w.startswith("-") and not w.startswith("$")]
        verb = words[:2] if words[:2] == ["policy", "check"] else words[:1]
        r = CliRunner().invoke(app, [*verb, "--help"])
        assert r.exit_code == 0, (call, r.output)
        for flag in (w for w in call if w.startswith("--")):
            assert flag in r.output, f"`sculpt {' '.join(verb)}` has no {flag}"
