"""A user of the CLI with a GCP spec, whose `pulumi up`s are played into the Compute API double.

The ``pulumi`` CLI process is a double (tests/pulumi/cli_double.py) injected through
``sculpt.engine.pulumi_engine.make_engine``; everything the verbs do above it is real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gcp.fake_compute import FakeCompute, FakeGcpStack
from tests.pulumi.cli_double import PulumiProcessDouble

PROJECT = "sculpt-test"


class GcpUser:
    """``sculpt up`` has run when it is built; ``run`` invokes a verb with ``--spec``."""

    def __init__(self, tmp_path: Path, compute: FakeCompute, monkeypatch: pytest.MonkeyPatch) -> None:
        import sculpt.engine.pulumi_engine as pe

        self.stack = FakeGcpStack(compute, boot_listings=0)  # healthy at once: the CLI's clock is the real one
        self.cli = PulumiProcessDouble(render=self.stack.render)
        monkeypatch.setattr(pe, "make_engine", lambda spec, ledger, catalog, home: pe.PulumiEngine(
            spec, home, ledger, command=self.cli))
        monkeypatch.setenv("SCULPT_HOME", str(tmp_path / "home"))
        self.spec = tmp_path / "sculpt.yaml"
        self.spec.write_text("fleet: web\nengine: pulumi\nprovider: gcp\nshape: n2-standard-2\n"
                             f"region: us-central1\ngcp_project: {PROJECT}\n"
                             "app: {state_sync: {strategy: none}}\nlb: {drain_s: 0}\n")
        self.run("up")

    def run(self, verb: str, *args: str, code: int = 0) -> Any:
        from typer.testing import CliRunner

        from sculpt.cli.main import app

        r = CliRunner().invoke(app, [verb, "--spec", str(self.spec), *args])
        assert r.exit_code == code, (verb, args, r.stdout, r.stderr)
        return r
