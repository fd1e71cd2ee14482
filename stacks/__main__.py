"""Entry point for ``pulumi preview``/``up`` run from the repository (``Pulumi.yaml`` points here)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `stacks` and `sculpt`

from stacks import program  # noqa: E402

program()
