"""The README's verbs on ``engine: pulumi`` (AWS), end to end through the CLI, as a user runs them.

Real parts: every ``sculpt`` verb's code, the composition root (it finds ``pulumi`` on ``PATH``), the
Pulumi SDK's Automation API spawning the CLI as a separate process, the ledger, and CloudWatch/ELBv2 calls
over HTTP to moto's server. Double: the ``pulumi`` executable on ``PATH`` (tests/pulumi/fake_pulumi.py),
which answers like the CLI but runs no program and creates no cloud resources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("pulumi", reason="the aws extra is not installed")

from sculpt.cli.main import app  # noqa: E402
from tests.pulumi.aws_outputs import instance_id  # noqa: E402
from tests.pulumi.fake_pulumi import STATE_ENV, install, read_state  # noqa: E402

SPEC = """\
fleet: {fleet}
engine: pulumi
provider: aws
shape: {shape}
region: us-east-1
families: [m6i, c6i]
replicas: {{min: 1, max: 2, desired: 1}}
app:
  state_sync: {{strategy: none}}
"""


class User:
    """A shell with the fake ``pulumi`` on PATH and a spec in its working directory."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet: str = "web") -> None:
        self.fleet = fleet
        self.state = tmp_path / "pulumi-state.json"
        install(tmp_path / "bin", self.state)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
        monkeypatch.setenv(STATE_ENV, str(self.state))
        monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test")
        monkeypatch.delenv("SCULPT_HOME", raising=False)
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                    "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))  # no credentials at all
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.chdir(tmp_path)
        self.spec = tmp_path / "sculpt.yaml"
        self.write(shape="m6i.large")

    def write(self, shape: str) -> None:
        self.spec.write_text(SPEC.format(shape=shape, fleet=self.fleet))

    def run(self, *args: str, code: int = 0) -> Any:
        r = CliRunner().invoke(app, list(args))
        assert r.exit_code == code, (args, r.stdout, r.stderr)
        return r

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)

    def pulumi_calls(self) -> list[list[str]]:
        return list(read_state(self.state).get("calls", []))

    def applied_shapes(self) -> list[str]:
        return [json.loads(c["sculpt:fleet"])["slots"][0]["shape"] for c in read_state(self.state)["ups"]]


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> User:
    return User(tmp_path, monkeypatch)


def test_fake_cli_up_status_history_rollback_down(user: User) -> None:
    up = user.json("up")
    assert (up["stack"], up["version"], up["result"]) == ("web", 1, "succeeded")
    assert ["up"] in [c[:1] for c in user.pulumi_calls()]

    status = user.json("status")
    assert (status["engine"], status["version"]) == ("pulumi", 1)
    assert status["lb"]["address"] == "web-alb.elb.example:80"
    (inst,) = status["instances"]
    assert inst["healthy"] is None and "health unknown" in status["notes"][0]  # no AWS credentials here
    assert (inst["id"], inst["shape"], inst["colour"], inst["weight"]) == ("web-0", "m6i.large", "blue", 100)
    assert inst["instance_id"] == instance_id("web-0") and inst["address"].startswith("10.0.0.")

    human = user.run("up")  # an unchanged spec re-applies the running fleet (version 2)
    assert "version 2 succeeded" in human.stdout and "0/1 healthy (1 unknown)" in human.stdout
    assert "serving on http://web-alb.elb.example:80" in human.stdout

    user.write(shape="c6i.large")  # the user's word: a new shape
    assert user.json("up")["version"] == 3
    assert user.applied_shapes() == ["m6i.large", "m6i.large", "c6i.large"]

    history = user.json("history")
    assert [(h["version"], h["result"]) for h in history] == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]

    back = user.json("rollback")
    assert (back["version"], back["rolled_back_to"], back["result"]) == (4, 2, "succeeded")
    assert user.applied_shapes() == ["m6i.large", "m6i.large", "c6i.large", "m6i.large"]
    ups = [c for c in user.pulumi_calls() if c[0] == "up"]
    assert "--refresh" in ups[-1]
    assert any(c[0] == "preview" and "--expect-no-changes" in c for c in user.pulumi_calls())

    user.run("down")
    assert any(c[0] == "destroy" for c in user.pulumi_calls())


def test_without_the_pulumi_cli_every_stack_verb_is_one_line(user: User, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    r = user.run("up", code=1)
    assert r.stderr.count("\n") == 1 and "install the Pulumi CLI" in r.stderr


def test_fake_cli_a_second_machine_on_the_shared_backend_sees_the_stack(user: User, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shared = f"backend_url: file://{tmp_path / 'shared-backend'}\n"
    user.spec.write_text(user.spec.read_text() + shared)
    user.run("up")
    user.write(shape="c6i.large")
    user.spec.write_text(user.spec.read_text() + shared)
    user.run("up")

    ci = tmp_path / "ci-runner"  # a fresh checkout: the same spec, an empty .sculpt/ledger.db
    ci.mkdir()
    (ci / "sculpt.yaml").write_text(user.spec.read_text())
    monkeypatch.chdir(ci)
    status = user.json("status")
    assert status["version"] == 2 and status["instances"][0]["shape"] == "c6i.large"
    assert [(h["version"], h["result"]) for h in user.json("history")] == [(1, "succeeded"), (2, "succeeded")]
    assert user.json("up")["version"] == 3  # numbering continues where the stack is
    init_calls = [c for c in user.pulumi_calls() if c[:2] == ["stack", "init"]]
    assert len(init_calls) == 1  # the CI runner selected the existing stack, it did not create one
