"""The policy pack's entry point (run by the Pulumi CLI: ``pulumi preview --policy-pack policies``).

The fleet spec comes from ``$SCULPT_SPEC`` (default: ``sculpt.yaml`` in the working directory or the
repository root). This is the only place a ``PolicyPack`` is constructed: doing so starts the analyzer's
gRPC server and blocks until the CLI is done with it.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `policies` and `sculpt` from the repository

from pulumi_policy import PolicyPack  # noqa: E402

from policies.pack import make_policies  # noqa: E402
from sculpt.domain.spec import load_spec  # noqa: E402


def _spec_path() -> Path:
    env = os.environ.get("SCULPT_SPEC")
    if env:
        return Path(env)
    for candidate in (Path.cwd() / "sculpt.yaml", ROOT / "sculpt.yaml"):
        if candidate.exists():
            return candidate
    return Path("sculpt.yaml")


PolicyPack(name="sculpt", policies=make_policies(load_spec(_spec_path())))
