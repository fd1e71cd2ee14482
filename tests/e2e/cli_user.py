"""``sculpt`` verbs in-process (typer's CliRunner) against one spec, for the end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
from typer.testing import CliRunner

from sculpt.cli.main import app


class Cli:
    """Runs ``sculpt`` verbs in-process against one spec; remembers every pid it saw for the final check."""

    def __init__(self, spec: Path) -> None:
        self.spec = spec
        self.runner = CliRunner()
        self.pids: set[int] = set()

    def __call__(self, *args: str, code: int = 0) -> Any:
        r = self.runner.invoke(app, [*args, "--spec", str(self.spec)])
        assert r.exit_code == code, f"sculpt {' '.join(args)} -> {r.exit_code}\n{r.output}\n{r.exception!r}"
        return r

    def json(self, *args: str, code: int = 0) -> Any:
        data = json.loads(self(*args, "--json", code=code).stdout)
        if isinstance(data, dict):
            self.pids.update(i["pid"] for i in data.get("instances") or [] if i.get("pid"))
            if data.get("agent_pid"):
                self.pids.add(data["agent_pid"])
        return data

    def edit(self, old: str, new: str) -> None:
        text = self.spec.read_text()
        assert old in text
        self.spec.write_text(text.replace(old, new, 1))


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
