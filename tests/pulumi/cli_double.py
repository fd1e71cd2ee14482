"""A test double for the ``pulumi`` CLI *process* — the boundary the Automation API talks across.

``PulumiProcessDouble`` subclasses ``auto.PulumiCommand`` and replaces only what happens in the child
process: ``run()`` records each argv and answers with the ``CommandResult`` the real CLI would print (and
the engine events it would write to ``--event-log``). Everything above it — the SDK's LocalWorkspace and
Stack code, sculpt's engine, the ledger — is the real code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pulumi.automation import CommandResult, PulumiCommand
from pulumi.automation.errors import create_command_error
from semver import VersionInfo

# Below 3.205 the SDK reads engine events from a file (``--event-log PATH``), which a double can write.
CLI_VERSION = "3.200.0"
LOCKED_STDERR = ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end "
                 "or delete the lock file with `pulumi cancel`.\n  file:///x/.pulumi/locks/web/abc.json: "
                 "created by root@host (pid 42) at 2026-11-28T05:00:00Z")


@dataclass
class PulumiProcessDouble(PulumiCommand):
    """Stands in for the ``pulumi`` process. Knobs: ``steps`` (planned resource ops in previews),
    ``locked`` (every update hits a held lock), ``fail_up`` (the next update fails in the cloud),
    ``drift`` (``--expect-no-changes`` previews report changes), ``fail_up_at`` (the update numbers,
    counted from 1, that fail), ``render`` (the stack outputs a succeeded update leaves, from the config it
    applied: the real CLI gets them from running the program, which the double does not do)."""

    steps: list[tuple[str, str, str, list[str]]] = field(default_factory=list)  # (op, type, name, keys)
    locked: bool = False
    fail_up: bool = False
    drift: bool = False
    calls: list[list[str]] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)
    stacks: set[str] = field(default_factory=set)
    config: dict[str, str] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)  # newest first, as `stack history` prints
    fail_up_at: set[int] = field(default_factory=set)
    render: Callable[[dict[str, str]], dict[str, Any]] | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    ups: list[dict[str, str]] = field(default_factory=list)  # the config each `up` ran with, in order

    def __post_init__(self) -> None:
        self.command = "pulumi"
        self.version = VersionInfo.parse(CLI_VERSION)

    def run(self, args: list[str], cwd: str, additional_env: Mapping[str, str],
            on_output: Any = None, on_error: Any = None) -> CommandResult:
        args = list(args)
        self.calls.append(args)
        self.envs.append(dict(additional_env))
        result = self._reply(args)
        if result.code != 0:
            raise create_command_error(result)
        return result

    def verbs(self) -> list[str]:
        """The calls as short verbs: 'stack select', 'config set-all', 'preview', 'up', ..."""
        out = []
        for a in self.calls:
            words = [w for w in a if not w.startswith("-")]
            out.append(" ".join(words[:2]) if words[0] in ("stack", "config") else words[0])
        return out

    # -- replies ---------------------------------------------------------------------------------------------
    def _reply(self, args: list[str]) -> CommandResult:
        verb = args[0]
        if args[:2] == ["stack", "select"]:
            name = args[args.index("--stack") + 1]
            if name not in self.stacks:
                return CommandResult("", f"error: no stack named '{name}' found", 255)
            return CommandResult("", "", 0)
        if args[:2] == ["stack", "init"]:
            self.stacks.add(args[2])
            return CommandResult(f"Created stack '{args[2]}'", "", 0)
        if args[:2] == ["config", "set-all"]:
            for flag, pair in zip(args, args[1:], strict=False):
                if flag in ("--plaintext", "--secret"):
                    key, _, value = pair.partition("=")
                    self.config[key] = value
            return CommandResult("", "", 0)
        if args[:2] == ["stack", "output"]:
            return CommandResult(json.dumps(self.outputs), "", 0)
        if args[:2] == ["stack", "history"]:
            n = int(args[args.index("--page-size") + 1]) if "--page-size" in args else len(self.updates)
            return CommandResult(json.dumps(self.updates[:n]), "", 0)
        if verb == "preview":
            if "--expect-no-changes" in args and self.drift:
                self._events(args, [("update", "aws:lb/listener:Listener", "web-http", [])])
                return CommandResult("", "error: no changes were expected but changes were proposed", 255)
            self._events(args, self.steps)
            return CommandResult("Previewing update (web)", "", 0)
        if verb in ("up", "destroy"):
            if self.locked:
                return CommandResult("", LOCKED_STDERR, 255)
            if verb == "up":
                self.ups.append(dict(self.config))
            failed = verb == "up" and (self.fail_up or len(self.ups) in self.fail_up_at)
            self.fail_up = False
            self._events(args, self.steps)
            self._record(verb, args, "failed" if failed else "succeeded")
            if failed:
                return CommandResult("", "error: creating EC2 Instance: InsufficientInstanceCapacity: We "
                                         "currently do not have sufficient m6i.large capacity", 255)
            if verb == "up" and self.render is not None:
                self.outputs = self.render(dict(self.config))
            elif verb == "destroy":
                self.outputs = {}
            return CommandResult("Update succeeded", "", 0)
        return CommandResult("", f"error: the double does not know `pulumi {' '.join(args)}`", 255)

    def _events(self, args: list[str], steps: list[tuple[str, str, str, list[str]]]) -> None:
        if "--event-log" not in args:
            return
        events: list[dict[str, Any]] = [
            {"sequence": i, "timestamp": 0, "resourcePreEvent": {"metadata": {
                "op": op, "urn": f"urn:pulumi:web::sculpt::{typ}::{name}", "type": typ, "provider": "",
                "keys": keys}}}
            for i, (op, typ, name, keys) in enumerate(steps)]
        summary: dict[str, int] = {}
        for op, *_ in steps:
            summary[op] = summary.get(op, 0) + 1
        events.append({"sequence": len(events), "timestamp": 0,
                       "summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": summary,
                                        "PolicyPacks": {}}})
        events.append({"sequence": len(events), "timestamp": 0, "cancelEvent": {}})
        with open(args[args.index("--event-log") + 1], "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(e) + "\n" for e in events))

    def _record(self, verb: str, args: list[str], result: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        message = args[args.index("--message") + 1] if "--message" in args else ""
        self.updates.insert(0, {
            "kind": "update" if verb == "up" else "destroy", "startTime": now, "endTime": now,
            "message": message, "environment": {}, "result": result,
            "config": {k: {"value": v, "secret": False} for k, v in self.config.items()},
            "resourceChanges": {"create": len(self.steps)},
        })
