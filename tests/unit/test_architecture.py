"""The layering written down in pyproject.toml holds, and the CLI's start path stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_import_layers_hold() -> None:
    """import-linter's contract, run in its own process (it reconfigures logging when it runs)."""
    pytest.importorskip("importlinter")
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "pyproject.toml"
    code = f"import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename={str(cfg)!r}, no_cache=True))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_help_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from sculpt.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "heavy = [m for m in ('torch', 'pulumi', 'boto3', 'botocore', 'river', 'sklearn', 'fastapi') if m in sys.modules]\n"
        "print(json.dumps({'code': r.exit_code, 'heavy': heavy, 'out': r.output[:200]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, result["out"]
    assert result["heavy"] == []
