"""The pulumi engine's Automation API call sequences, through a double of the ``pulumi`` CLI process.

Everything but the child process is real: the SDK's LocalWorkspace/Stack code, sculpt's engine and
ledger. ``PulumiProcessDouble`` (tests/pulumi/cli_double.py) records each argv and replies as the CLI would.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.pulumi.conftest import make_fleet

pytest.importorskip("pulumi")

from sculpt.domain.errors import ConfigError, LockedError, ProviderError  # noqa: E402
from sculpt.domain.fleet import Slot  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.engine.pulumi_errors import PulumiCliMissing  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402

INSTANCE = "aws:ec2/instance:Instance"


@pytest.fixture
def cli() -> PulumiProcessDouble:
    return PulumiProcessDouble()


@pytest.fixture
def engine(tmp_path: Path, cli: PulumiProcessDouble) -> PulumiEngine:
    fleet = make_fleet("aws")
    return PulumiEngine(fleet.spec, tmp_path / "state", Ledger(tmp_path / "state" / "ledger.db"), command=cli)


def _green(fleet_weight_blue: int = 100, green_weight: int = 0):  # noqa: ANN202
    fleet = make_fleet("aws")
    return fleet.with_slots([Slot(id="web-0", shape="m6i.large", region="us-east-1", weight=fleet_weight_blue),
                             Slot(id="web-g0", shape="c6i.large", region="us-east-1", colour="green",
                                  weight=green_weight)])


def test_process_double_first_up_creates_the_stack_sets_config_previews_then_updates(
        engine: PulumiEngine, cli: PulumiProcessDouble, tmp_path: Path) -> None:
    version = engine.up(make_fleet("aws"), "first")
    assert version == 1
    assert cli.verbs()[:6] == ["stack select", "stack init", "config set-all", "preview", "config set-all", "up"]
    init = cli.calls[1]
    assert init[:3] == ["stack", "init", "web"] and "passphrase" in init
    up = cli.calls[5]
    assert up[:3] == ["up", "--yes", "--skip-preview"]
    assert up[up.index("--message") + 1] == "sculpt v1: first"
    assert "--exec-kind" in up and up[up.index("--exec-kind") + 1] == "auto.inline"
    fleet_cfg = json.loads(cli.config["sculpt:fleet"])
    assert [s["id"] for s in fleet_cfg["slots"]] == ["web-0"]
    assert cli.config["sculpt:version"] == "1" and cli.config["aws:region"] == "us-east-1"
    assert all(e.get("PULUMI_CONFIG_PASSPHRASE") is not None for e in cli.envs)
    # the file:// backend under the state directory, written into the inline project's Pulumi.yaml
    project = (tmp_path / "state" / "pulumi" / "project" / "Pulumi.yaml").read_text()
    assert f"file://{tmp_path / 'state' / 'pulumi' / 'backend'}" in project
    assert engine.ledger.latest_version("web").result == "succeeded"


def test_process_double_second_up_selects_the_existing_stack(engine: PulumiEngine, cli: PulumiProcessDouble,
                                                              tmp_path: Path) -> None:
    engine.up(make_fleet("aws"))
    again = PulumiEngine(engine.spec, tmp_path / "state", engine.ledger, command=cli, preview_before_up=False)
    cli.calls.clear()
    assert again.up(_green()) == 2
    assert cli.verbs()[:3] == ["stack select", "config set-all", "up"]


def test_backend_url_from_the_spec_is_used(tmp_path: Path, cli: PulumiProcessDouble) -> None:
    fleet = make_fleet("aws", backend_url="s3://my-bucket/sculpt")
    eng = PulumiEngine(fleet.spec, tmp_path, Ledger(tmp_path / "l.db"), command=cli)
    eng.up(fleet)
    assert "s3://my-bucket/sculpt" in (tmp_path / "pulumi" / "project" / "Pulumi.yaml").read_text()


def test_process_double_preview_reports_summary_replace_keys_and_warns_on_unexpected(
        engine: PulumiEngine, cli: PulumiProcessDouble, caplog: pytest.LogCaptureFixture) -> None:
    cli.steps = [("create", INSTANCE, "web-g0", []),
                 ("replace", INSTANCE, "web-0", ["instanceType"]),
                 ("replace", "aws:lb/loadBalancer:LoadBalancer", "web-alb", ["subnets"]),
                 ("update", "aws:lb/listener:Listener", "web-http", [])]
    with caplog.at_level(logging.WARNING, logger="sculpt.engine.pulumi"):
        diff = engine.preview(_green())
    assert diff.resources == {"create": 1, "replace": 2, "update": 1}
    assert [(s.name, s.keys) for s in diff.steps if s.op == "replace"] == [
        ("web-0", ("instanceType",)), ("web-alb", ("subnets",))]
    # web-0 is unchanged in the slot diff, so its replacement is unexpected; so is the ALB's
    assert len(diff.warnings) == 2
    assert "web-alb" in diff.warnings[1] and "subnets" in diff.warnings[1]
    assert sum("the fleet change does not explain it" in r.message for r in caplog.records) == 2
    assert diff.to_json()["steps"][1]["replace_keys"] == ["instanceType"]
    assert [c.op for c in diff.changes] == ["create", "create"]  # no current fleet yet


def test_expected_replacements_do_not_warn(engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    engine.up(_green())
    cli.steps = [("delete", INSTANCE, "web-0", []), ("delete", "aws:lb/targetGroupAttachment:TargetGroupAttachment",
                                                     "web-0-tg", [])]
    retire_blue = _green().with_slots([Slot(id="web-g0", shape="c6i.large", region="us-east-1", colour="green")])
    assert engine.preview(retire_blue).warnings == ()


def test_process_double_up_streams_events_as_progress(tmp_path: Path, cli: PulumiProcessDouble) -> None:
    lines: list[str] = []
    cli.steps = [("create", INSTANCE, "web-0", [])]
    fleet = make_fleet("aws")
    eng = PulumiEngine(fleet.spec, tmp_path, Ledger(tmp_path / "l.db"), command=cli, on_progress=lines.append,
                       preview_before_up=False)
    eng.up(fleet)
    assert lines == [f"create {INSTANCE} web-0", "done: create 1"]


def test_process_double_history_joins_pulumi_updates_with_ledger_versions(engine: PulumiEngine,
                                                                           cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"), "one")
    engine.up(_green(), "two")
    hist = engine.history()
    assert [h.version for h in hist] == [1, 2]
    assert [h.pulumi["message"] for h in hist] == ["sculpt v1: one", "sculpt v2: two"]
    assert all(h.pulumi["result"] == "succeeded" for h in hist)
    assert hist[1].to_json()["pulumi"]["kind"] == "update"
    assert cli.verbs()[-1] == "stack history"


def test_process_double_failed_up_is_recorded_and_becomes_a_provider_error(engine: PulumiEngine,
                                                                            cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"))
    cli.fail_up = True
    with pytest.raises(ProviderError, match="InsufficientInstanceCapacity.*To fix:") as e:
        engine.up(_green())
    assert "\n" not in str(e.value)
    assert engine.ledger.version("web", 2).result == "failed"
    assert engine.current().slots == make_fleet("aws").slots  # the last succeeded version still rules


def test_process_double_rollback_reapplies_recorded_config_with_refresh_and_confirms(
        engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"), "one")
    engine.up(_green(0, 100), "two")
    cli.calls.clear()
    assert engine.rollback(1) == 3
    assert cli.verbs() == ["stack history", "config set-all", "up", "stack output", "stack output",
                           "stack history", "preview"]
    up = cli.calls[2]
    assert "--refresh" in up
    assert "--expect-no-changes" in cli.calls[-1]
    assert [s["id"] for s in json.loads(cli.config["sculpt:fleet"])["slots"]] == ["web-0"]
    assert cli.config["sculpt:version"] == "3"
    v3 = engine.ledger.version("web", 3)
    assert (v3.kind, v3.result) == ("rollback", "succeeded")
    assert engine.current().slots == make_fleet("aws").slots


def test_process_double_rollback_chooses_the_succeeded_update_of_that_version(
        engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"), "one")
    # Pulumi's record of version 1 differs from what the ledger would render (e.g. a key set by hand)
    cli.updates[0]["config"]["aws:region"] = {"value": "us-east-1", "secret": False}
    cli.updates[0]["config"]["aws:skipMetadataApiCheck"] = {"value": "false", "secret": False}
    engine.up(_green(), "two")
    engine.rollback(1)
    assert cli.config["aws:skipMetadataApiCheck"] == "false"


def test_rollback_to_a_failed_version_is_refused(engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"))
    cli.fail_up = True
    with pytest.raises(ProviderError):
        engine.up(_green())
    with pytest.raises(ConfigError, match="only a succeeded version"):
        engine.rollback(2)


def test_process_double_rollback_that_leaves_drift_says_so(engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"))
    engine.up(_green())
    cli.drift = True
    with pytest.raises(ProviderError, match="still shows changes.*To fix: run `sculpt plan`"):
        engine.rollback(1)


def test_process_double_locked_stack_becomes_a_one_line_locked_error(engine: PulumiEngine,
                                                                      cli: PulumiProcessDouble) -> None:
    cli.locked = True
    with pytest.raises(LockedError) as e:
        engine.up(make_fleet("aws"))
    msg = str(e.value)
    assert "\n" not in msg
    assert "locked by another Pulumi update" in msg and "pulumi cancel --stack web" in msg
    assert e.value.retryable
    assert engine.ledger.latest_version("web").result == "failed"


def test_process_double_destroy_keeps_history_and_records_down(engine: PulumiEngine,
                                                               cli: PulumiProcessDouble) -> None:
    engine.up(make_fleet("aws"))
    engine.destroy()
    assert "destroy" in cli.verbs()
    last = engine.ledger.latest_version("web")
    assert (last.kind, last.fleet) == ("down", {"slots": []})
    assert engine.current() is None


def test_without_the_cli_the_first_call_fails_with_the_install_hint(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `pulumi` anywhere
    fleet = make_fleet("aws")
    eng = PulumiEngine(fleet.spec, tmp_path, Ledger(tmp_path / "l.db"))
    with pytest.raises(PulumiCliMissing) as e:
        eng.up(fleet)
    msg = str(e.value)
    assert "\n" not in msg
    assert "Pulumi CLI ('pulumi') is not on PATH" in msg
    assert "To fix: install the Pulumi CLI: https://www.pulumi.com/docs/install/" in msg


def test_unrenderable_fleet_is_refused_before_pulumi_runs(engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    fleet = make_fleet("aws")
    fleet = fleet.with_slots([Slot(id="web-0", shape="m6i.large", region="eu-west-1")])
    with pytest.raises(ConfigError, match="cross-region"):
        engine.up(fleet)
    assert cli.calls == []


def test_process_double_a_volume_fleet_with_two_serving_replicas_is_refused_before_pulumi_runs(
        engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    fleet = make_fleet("aws", app={"state_sync": {"strategy": "volume"}},
                       replicas={"min": 1, "max": 3, "desired": 2})
    with pytest.raises(ConfigError, match="one data volume") as e:
        engine.up(fleet)
    assert "replicas.desired: 1" in str(e.value) and cli.calls == []
    one = make_fleet("aws", app={"state_sync": {"strategy": "volume"}},
                     slots=[("web-0", "m6i.large", "blue", 100), ("web-1", "c6i.large", "green", 0)])
    engine.up(one)  # a morph's green at weight 0 waits for the volume: that is allowed


def test_process_double_up_right_after_preview_of_the_same_fleet_does_not_preview_twice(
        engine: PulumiEngine, cli: PulumiProcessDouble) -> None:
    engine.preview(make_fleet("aws"))
    engine.up(make_fleet("aws"))
    assert cli.verbs().count("preview") == 1
    engine.up(_green())
    assert cli.verbs().count("preview") == 2


def test_sculpt_up_with_engine_pulumi_and_no_cli_prints_one_line(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sculpt.cli.main import app

    spec = tmp_path / "sculpt.yaml"
    spec.write_text("fleet: web\nengine: pulumi\nprovider: aws\nshape: m6i.large\nregion: us-east-1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("SCULPT_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["up", "--spec", str(spec)])
    assert r.exit_code == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: the Pulumi CLI ('pulumi') is not on PATH")
    assert "To fix: install the Pulumi CLI: https://www.pulumi.com/docs/install/" in line
