"""A stand-in ``pulumi`` *executable*: the same replies as ``PulumiProcessDouble``, as a separate process.

Why it exists: ``PulumiProcessDouble`` replaces the CLI inside the test process, so it needs an engine built
by the test. Put on ``PATH`` as ``pulumi`` (see ``install``), this script lets the real ``sculpt`` verbs run
end to end — the composition root finds "the Pulumi CLI" on ``PATH`` exactly as on a user's machine, and the
SDK spawns it. It is a double of the CLI process, nothing more: it does not run the stack program (the
outputs come from ``tests/pulumi/aws_outputs.render_aws``) and creates no cloud resources.

State survives between invocations in the JSON file named by ``FAKE_PULUMI_STATE``; every argv is
appended to its ``calls`` so tests can read what sculpt asked for.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

STATE_ENV = "FAKE_PULUMI_STATE"
REPO = Path(__file__).resolve().parents[2]


def install(bin_dir: Path, state: Path) -> Path:
    """Write an executable ``pulumi`` into ``bin_dir`` that runs this module with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "pulumi"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                   "from tests.pulumi.fake_pulumi import main\nsys.exit(main(sys.argv[1:]))\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    state.write_text(json.dumps({}))
    return exe


def read_state(path: Path) -> dict:  # type: ignore[type-arg]
    return dict(json.loads(path.read_text() or "{}"))


def main(argv: list[str]) -> int:
    from tests.pulumi.aws_outputs import render_aws
    from tests.pulumi.cli_double import CLI_VERSION, PulumiProcessDouble

    if argv == ["version"]:
        print(f"v{CLI_VERSION}")
        return 0
    path = Path(os.environ[STATE_ENV])
    state = read_state(path)
    double = PulumiProcessDouble(render=render_aws)
    double.stacks = set(state.get("stacks", []))
    double.config = dict(state.get("config", {}))
    double.updates = list(state.get("updates", []))
    double.outputs = dict(state.get("outputs", {}))
    double.ups = list(state.get("ups", []))
    double.fail_up_at = set(state.get("fail_up_at", []))
    argv = [a for a in argv if a != "--non-interactive"]  # the SDK adds it to every call it spawns
    reply = double._reply(argv)
    state.update(stacks=sorted(double.stacks), config=double.config, updates=double.updates,
                 outputs=double.outputs, ups=double.ups, calls=[*state.get("calls", []), list(argv)])
    path.write_text(json.dumps(state))
    sys.stdout.write(reply.stdout)
    sys.stderr.write(reply.stderr)
    return int(reply.code)
