"""Every stack verb (`up`, `status`, `history`, `rollback`, `down`) first finishes a cloud morph whose
controller died, through ``sculpt.app.wiring.recover_unfinished`` — on ``engine: pulumi`` too.

Real parts: the orchestrator, ``CloudPlatform``, the PulumiEngine and the SDK's Automation API code, the
ledger, moto's EC2/ELBv2 over HTTP. Double: the ``pulumi`` CLI process (tests/pulumi/cli_double.py). The
controller's death is a ``BaseException`` raised inside the crash fault, after which the migration's row is
given the pid of a process that has exited (what a killed controller leaves behind).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pulumi", reason="the aws extra is not installed")

from sculpt.app.wiring import Wiring, recover_unfinished  # noqa: E402
from sculpt.catalog import load_catalog  # noqa: E402
from tests.aws.test_cloud_morph import Rig, crash_at  # noqa: E402


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _crash_at(rig: Rig, where: str) -> str:
    m = crash_at(rig, where)
    with rig.ledger._conn() as db:  # the controller that wrote the row has exited
        db.execute("UPDATE migrations SET pid=? WHERE id=?", (_dead_pid(), m.id))
    return str(m.id)


def _wiring(rig: Rig, tmp_path: Path) -> Wiring:
    return Wiring("web", tmp_path, rig.ledger, load_catalog("aws"), rig.engine, rig.fleet.spec, None)


def test_process_double_a_stack_verb_rolls_back_a_cloud_morph_whose_controller_died(
        tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # the verb's own boto3 clients find moto, as a user's find AWS
    rig = Rig(tmp_path, moto_url)
    mid = _crash_at(rig, "WAIT_HEALTHY")
    assert [s[0] for s in rig.applied()[-1]] == ["web-0", "web-1"]  # green added, then the controller died
    lines = recover_unfinished(_wiring(rig, tmp_path))
    assert lines == [f"recovered interrupted morph {mid}: rolled_back"]
    assert rig.applied()[-1] == [("web-0", "m6i.large", "blue", 100)]  # the base version, re-applied
    assert "--refresh" in rig.up_args()[-1]
    assert "web-1" not in rig.moto.ids
    assert rig.ledger.unfinished_migrations("web") == []
    assert recover_unfinished(_wiring(rig, tmp_path)) == []  # nothing left: the next verb does nothing


def test_process_double_a_cloud_morph_whose_controller_is_alive_is_left_alone(tmp_path: Path,
                                                                             moto_url: str) -> None:
    rig = Rig(tmp_path, moto_url)
    crash_at(rig, "WAIT_HEALTHY")  # the row names this (live) process as its controller
    ups = len(rig.cli.ups)
    assert recover_unfinished(_wiring(rig, tmp_path)) == []
    assert len(rig.cli.ups) == ups
    assert len(rig.ledger.unfinished_migrations("web")) == 1
