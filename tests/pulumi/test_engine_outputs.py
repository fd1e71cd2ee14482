"""``PulumiEngine.outputs()``: the last update's stack outputs, through a double of the ``pulumi`` CLI process.

Only the child process is a double (tests/pulumi/cli_double.py); the SDK's ``stack output`` handling and
the engine are real. The outputs themselves are rendered by ``tests/pulumi/aws_outputs.py``, not by the
program: what the real program exports is tested under Pulumi's mocks (test_stacks_aws.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pulumi.conftest import make_fleet

pytest.importorskip("pulumi")

from sculpt.domain.errors import ProviderError  # noqa: E402
from sculpt.domain.fleet import Slot  # noqa: E402
from sculpt.engine.pulumi_engine import PulumiEngine  # noqa: E402
from sculpt.ledger import Ledger  # noqa: E402
from tests.pulumi.aws_outputs import instance_id, render_aws  # noqa: E402
from tests.pulumi.cli_double import PulumiProcessDouble  # noqa: E402


def _engine(tmp_path: Path, cli: PulumiProcessDouble) -> PulumiEngine:
    fleet = make_fleet("aws")
    return PulumiEngine(fleet.spec, tmp_path / "state", Ledger(tmp_path / "state" / "ledger.db"), command=cli,
                        preview_before_up=False)


def test_process_double_outputs_after_up_are_the_updates_outputs_without_asking_again(tmp_path: Path) -> None:
    cli = PulumiProcessDouble(render=render_aws)
    eng = _engine(tmp_path, cli)
    eng.up(make_fleet("aws"))
    n = len(cli.calls)
    out = eng.outputs()
    assert out["instances"]["web-0"]["id"] == instance_id("web-0")
    assert out["target_groups"]["blue"].endswith("web-blue/1")
    assert len(cli.calls) == n  # kept from the up's result


def test_process_double_a_new_engine_reads_outputs_with_stack_output(tmp_path: Path) -> None:
    cli = PulumiProcessDouble(render=render_aws)
    _engine(tmp_path, cli).up(make_fleet("aws"))
    again = _engine(tmp_path, cli)
    cli.calls.clear()
    assert set(again.outputs()["instances"]) == {"web-0"}
    assert [c[:2] for c in cli.calls if c[0] == "stack"][-1] == ["stack", "output"]


def test_process_double_failed_up_forgets_the_cached_outputs(tmp_path: Path) -> None:
    cli = PulumiProcessDouble(render=render_aws)
    eng = _engine(tmp_path, cli)
    eng.up(make_fleet("aws"))
    cli.fail_up = True
    green = make_fleet("aws").with_slots([Slot(id="web-0", shape="m6i.large", region="us-east-1"),
                                          Slot(id="web-1", shape="c6i.large", region="us-east-1", colour="green",
                                               weight=0)])
    with pytest.raises(ProviderError):
        eng.up(green)
    cli.calls.clear()
    assert set(eng.outputs()["instances"]) == {"web-0"}  # what the stack holds: asked again, not guessed
    assert ["stack", "output"] in [c[:2] for c in cli.calls]
