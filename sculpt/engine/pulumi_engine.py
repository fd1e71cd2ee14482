"""The ``pulumi`` stack engine: the desired fleet as a Pulumi stack, driven through the Automation API.

Why it exists: on AWS and GCP the fleet is real cloud infrastructure, and Pulumi gives it a state file,
diffs and safe replacement order. sculpt keeps its own numbered history in the ledger (the ``file://``
backend numbers nothing), and joins it with ``stack.history()`` through the ``sculpt:version`` config
value each update carries.

- The program is ``stacks.program`` run inline; the fleet travels as stack config (``sculpt:fleet``,
  JSON, and ``sculpt:version``), so Pulumi's history records exactly what each update applied.
- Backend: ``file://<state dir>/pulumi/backend`` unless ``backend_url`` in sculpt.yaml says otherwise;
  secrets use the passphrase provider (``PULUMI_CONFIG_PASSPHRASE``, empty if unset).
- ``preview`` returns the slot diff plus Pulumi's change summary and the replace-causing properties,
  and warns about replaces and deletes the slot diff does not explain; ``up`` previews first, then
  streams engine events as progress lines.
- ``rollback(N)`` re-applies the config Pulumi recorded for version N's succeeded update as a new version,
  with ``up(refresh=True)``, then confirms with ``preview(expect_no_changes=True)``. There is no
  ``pulumi rollback``; importing an old checkpoint would be state surgery, not a rollback.

This module and ``pulumi_errors`` are the only ones that import ``pulumi.automation`` (lazily: importing
this module costs nothing and works without the SDK).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sculpt.domain.catalog import Catalog
from sculpt.domain.errors import ConfigError, NotFoundError, ProviderError
from sculpt.domain.fleet import Fleet
from sculpt.domain.spec import FleetSpec
from sculpt.engine.base import Diff, diff_fleets
from sculpt.engine.local import fleet_of, fleet_record
from sculpt.engine.pulumi_errors import translated
from sculpt.ledger import Ledger, Version

log = logging.getLogger("sculpt.engine.pulumi")

PROJECT = "sculpt"
FLEET_KEY = "sculpt:fleet"
VERSION_KEY = "sculpt:version"

# Resources that live as long as the fleet: replacing or deleting one is never part of a migration step.
LASTING_TYPES = frozenset({
    "aws:lb/loadBalancer:LoadBalancer", "aws:lb/listener:Listener", "aws:lb/targetGroup:TargetGroup",
    "aws:ec2/securityGroup:SecurityGroup", "aws:ebs/volume:Volume",
    "gcp:compute/healthCheck:HealthCheck", "gcp:compute/uRLMap:URLMap",
    "gcp:compute/targetHttpProxy:TargetHttpProxy", "gcp:compute/globalForwardingRule:GlobalForwardingRule",
    "gcp:compute/firewall:Firewall",
})
INSTANCE_TYPES = frozenset({"aws:ec2/instance:Instance", "aws:lb/targetGroupAttachment:TargetGroupAttachment"})
DESTRUCTIVE_OPS = frozenset({"replace", "delete", "create-replacement", "delete-replaced"})

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ResourceStep:
    """One resource operation Pulumi plans (from a ``ResourcePreEvent``)."""

    op: str
    type: str
    name: str
    keys: tuple[str, ...] = ()  # the properties that force a replacement

    def __str__(self) -> str:
        why = f" (because of {', '.join(self.keys)})" if self.keys else ""
        return f"{self.op} {self.type} {self.name}{why}"


@dataclass(frozen=True)
class PulumiDiff(Diff):
    """The slot diff plus what Pulumi would do to each resource."""

    resources: Mapping[str, int] = field(default_factory=dict)  # Pulumi's change summary by op
    steps: tuple[ResourceStep, ...] = ()
    warnings: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [Diff.__str__(self)]
        if self.resources:
            lines.append("resources: " + ", ".join(f"{op} {n}" for op, n in sorted(self.resources.items())))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        out = Diff.to_json(self)
        out["resources"] = dict(self.resources)
        out["steps"] = [{"op": s.op, "type": s.type, "name": s.name, "replace_keys": list(s.keys)}
                        for s in self.steps]
        out["warnings"] = list(self.warnings)
        return out


@dataclass(frozen=True)
class StackVersion(Version):
    """A ledger version with what Pulumi recorded for its update (``None`` if Pulumi has no record)."""

    pulumi: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = Version.to_json(self)
        out["pulumi"] = self.pulumi
        return out


def unexpected_changes(steps: tuple[ResourceStep, ...], diff: Diff) -> tuple[str, ...]:
    """Replaces and deletes the slot diff does not explain (a lasting resource, or an unchanged slot)."""
    moving = {c.slot_id for c in diff.changes if c.op in ("delete", "replace")}
    out = []
    for s in steps:
        if s.op not in DESTRUCTIVE_OPS or s.op == "delete-replaced":
            continue
        slot = s.name.removesuffix("-tg")
        if s.type in LASTING_TYPES or (s.type in INSTANCE_TYPES and slot not in moving):
            out.append(f"pulumi would {s.op} {s.type} '{s.name}'"
                       + (f" because {', '.join(s.keys)} changed" if s.keys else "")
                       + " — the fleet change does not explain it")
    return tuple(out)


def load_stacks() -> Any:
    """The ``stacks`` package (the Pulumi programs): installed with ``sculpt`` (the wheel carries it), or
    beside the ``sculpt`` package in a source checkout that is not installed."""
    try:
        return importlib.import_module("stacks")
    except ImportError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "stacks" / "__init__.py").exists():
            raise ConfigError("the Pulumi stack programs (the 'stacks' package) are not importable",
                              "reinstall sculpt (pip install 'sculpt[aws]'), or run it from a checkout of its repository") from None
        sys.path.insert(0, str(root))
        return importlib.import_module("stacks")


def describe_event(event: Any) -> str | None:
    """A progress line for an engine event, or ``None`` for events not worth a line."""
    if event.resource_pre_event is not None:
        m = event.resource_pre_event.metadata
        if m.op.value in ("same", "read"):
            return None
        return f"{m.op.value} {m.type} {m.urn.split('::')[-1]}"
    if event.res_op_failed_event is not None:
        m = event.res_op_failed_event.metadata
        return f"failed {m.op.value} {m.type} {m.urn.split('::')[-1]}"
    if event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
        return "error: " + str(event.diagnostic_event.message).strip()
    if event.summary_event is not None:
        changes = event.summary_event.resource_changes or {}
        return "done: " + (", ".join(f"{op} {n}" for op, n in sorted(changes.items())) or "no changes")
    return None


class PulumiEngine:
    """``StackEngine`` over a Pulumi stack. ``command`` replaces the ``pulumi`` CLI process (tests)."""

    name = "pulumi"
    reports_health = False  # the cloud's health checks are read through the morph platform (sculpt.app.status)
    moves_regions = False  # the load balancer is regional: another region is another stack

    def __init__(self, spec: FleetSpec, state_dir: Path, ledger: Ledger, *, command: Any = None,
                 on_progress: Progress | None = None, preview_before_up: bool = True) -> None:
        self.spec = spec
        self.stack = spec.fleet
        self.state_dir = Path(state_dir)
        self.ledger = ledger
        self.backend_url = spec.backend_url or f"file://{self.state_dir / 'pulumi' / 'backend'}"
        self.work_dir = self.state_dir / "pulumi" / "project"
        self._command = command
        self._progress: Progress = on_progress or (lambda line: log.info("%s", line))
        self._preview_before_up = preview_before_up
        self._stack_obj: Any = None
        self._previewed: Fleet | None = None  # `sculpt up` previews, then ups: no second preview
        self._outputs: dict[str, Any] | None = None  # the last update's stack outputs (plain values)

    # -- the Automation API, in one place ------------------------------------------------------------------
    def _workspace_stack(self, *, create: bool = True) -> Any:
        """Create (or, with ``create=False``, only select) the stack; first use runs the CLI, so a missing CLI
        fails here, clearly. Selecting a stack the backend does not have raises ``StackNotFoundError``."""
        if self._stack_obj is not None:
            return self._stack_obj
        try:
            from pulumi import automation as auto
        except ImportError:
            raise ConfigError("engine: pulumi needs the Pulumi Python SDK, which is not installed",
                              "pip install 'sculpt[aws]' (or 'sculpt[gcp]')") from None
        if self.backend_url.startswith("file://"):
            Path(self.backend_url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with translated(self.stack):
            command = self._command or auto.PulumiCommand()
            opts = auto.LocalWorkspaceOptions(
                work_dir=str(self.work_dir),
                pulumi_command=command,
                secrets_provider="passphrase",
                env_vars=self._env(),
                project_settings=auto.ProjectSettings(name=PROJECT, runtime="python",
                                                      backend=auto.ProjectBackend(url=self.backend_url)),
            )
            pick = auto.create_or_select_stack if create else auto.select_stack
            self._stack_obj = pick(stack_name=self.stack, project_name=PROJECT, program=self._program, opts=opts)
        return self._stack_obj

    @staticmethod
    def _env() -> dict[str, str]:
        env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
        if "PULUMI_CONFIG_PASSPHRASE_FILE" not in os.environ:
            env["PULUMI_CONFIG_PASSPHRASE"] = os.environ.get("PULUMI_CONFIG_PASSPHRASE", "")
        return env

    @staticmethod
    def _program() -> None:
        load_stacks().program()

    def _config(self, fleet: Fleet, version: int) -> dict[str, Any]:
        from pulumi.automation import ConfigValue

        cloud = "aws:region" if fleet.spec.provider == "aws" else "gcp:region"
        out = {FLEET_KEY: ConfigValue(value=json.dumps(fleet.model_dump(mode="json"), separators=(",", ":"))),
               VERSION_KEY: ConfigValue(value=str(version)),
               cloud: ConfigValue(value=fleet.spec.region)}
        if fleet.spec.provider == "gcp" and fleet.spec.gcp_project:  # else the provider's GOOGLE_PROJECT
            out["gcp:project"] = ConfigValue(value=fleet.spec.gcp_project)
        return out

    def _on_event(self, event: Any) -> None:
        line = describe_event(event)
        if line:
            self._progress(line)

    def _check(self, fleet: Fleet) -> None:
        if fleet.name != self.stack:
            raise ConfigError(f"the fleet is named '{fleet.name}', this engine drives stack '{self.stack}'",
                              "use the engine of that stack")
        load_stacks().common.check_renderable(fleet)

    def _next_version(self) -> int:
        last = self.ledger.latest_version(self.stack)
        return (last.version if last else 0) + 1

    # -- the StackEngine port ------------------------------------------------------------------------------
    def preview(self, fleet: Fleet) -> PulumiDiff:
        """The slot diff, Pulumi's resource plan and warnings about replaces/deletes it does not explain."""
        self._check(fleet)
        slots = diff_fleets(self.current(), fleet)
        events: list[Any] = []
        with translated(self.stack):
            stack = self._workspace_stack()
            stack.set_all_config(self._config(fleet, self._next_version()))
            result = stack.preview(on_event=events.append, message=f"sculpt preview of {self.stack}")
        steps = tuple(
            ResourceStep(op=e.resource_pre_event.metadata.op.value, type=e.resource_pre_event.metadata.type,
                         name=e.resource_pre_event.metadata.urn.split("::")[-1],
                         keys=tuple(e.resource_pre_event.metadata.keys or ()))
            for e in events if e.resource_pre_event is not None
            and e.resource_pre_event.metadata.op.value not in ("same", "read")
        )
        warnings = unexpected_changes(steps, slots)
        for w in warnings:
            log.warning("%s", w)
        self._previewed = fleet
        return PulumiDiff(slots.stack, slots.changes, slots.spec_changed,
                          resources={str(k): int(v) for k, v in (result.change_summary or {}).items()},
                          steps=steps, warnings=warnings)

    def up(self, fleet: Fleet, message: str = "") -> int:
        """Preview (warnings first), then update the stack to ``fleet``; returns the new version."""
        self._check(fleet)
        with self.ledger.lock(self.stack, "up"):
            if self._preview_before_up and self._previewed != fleet:
                self.preview(fleet)
            self._previewed = None
            return self._apply(fleet, message or "up", kind="up", config=None)

    def rollback(self, version: int, message: str = "") -> int:
        """Re-apply the config of ``version``'s succeeded update as a new version, then confirm no drift."""
        target = self.ledger.version(self.stack, version)
        if target.result != "succeeded":
            raise ConfigError(f"version {version} of stack '{self.stack}' {target.result}; only a succeeded "
                              "version can be re-applied", "pick one marked succeeded in `sculpt history`")
        fleet = fleet_of(target)
        with self.ledger.lock(self.stack, "rollback"):
            with translated(self.stack):
                recorded = self._recorded_config(self._workspace_stack().history(), version)
            if recorded is None:
                log.info("Pulumi has no succeeded update for version %d; re-applying the ledger's fleet", version)
            n = self._apply(fleet, message or f"rollback to {version}", kind="rollback", config=recorded,
                            refresh=True)
            try:
                with translated(self.stack):
                    self._workspace_stack().preview(expect_no_changes=True)
            except ProviderError as e:
                raise ProviderError(
                    f"re-applied version {version} as version {n}, but the stack still shows changes ({e.message})",
                    "run `sculpt plan` to see the drift, then `sculpt rollback --to "
                    f"{version}` again", retryable=False) from None
            return n

    def history(self) -> list[StackVersion]:
        """Ledger versions, oldest first, each with Pulumi's record of its update."""
        with translated(self.stack):
            summaries = self._workspace_stack().history()
        by_version: dict[int, Any] = {}
        for s in summaries:
            n = _version_of(s.config)
            if n is not None and s.kind in ("update", "destroy") and n not in by_version:
                by_version[n] = s  # history is newest first: keep the latest attempt of each version
        out = []
        for v in self.ledger.versions(self.stack):
            s = by_version.get(v.version)
            pulumi = None if s is None else {
                "kind": s.kind, "result": s.result, "message": s.message,
                "start_time": s.start_time.isoformat(), "end_time": s.end_time.isoformat() if s.end_time else None,
                "resource_changes": dict(s.resource_changes or {}),
            }
            out.append(StackVersion(v.stack, v.version, v.time, v.spec, v.fleet, v.result, v.message, v.kind, pulumi))
        return out

    def current(self) -> Fleet | None:
        v = self.ledger.latest_version(self.stack, succeeded_only=True)
        return fleet_of(v) if v is not None and v.fleet.get("slots") else None

    def adopt(self) -> int:
        """Bring the ledger up to the stack's update history on the backend; returns versions adopted.

        Why: the ledger is local, the stack is not. On a CI runner or a second laptop sharing the backend
        (``backend_url``), the ledger lacks the versions others made, so ``status``, ``plan`` and ``watch``
        would call the stack not running (or show an old fleet) and the next ``up`` would reuse a number.
        Every update sculpt makes carries its version and fleet in the stack config, and Pulumi keeps the
        config of every update: each one newer than the ledger's latest version becomes the ledger version it
        was (the latest attempt of a number wins). Nothing is created: a stack the backend does not have is
        left alone (0). ``sculpt.app.wiring`` calls this when a verb opens a Pulumi stack; with the default
        backend (``file://`` under this state directory) only an empty ledger asks, since nothing else writes it.
        """
        last = self.ledger.latest_version(self.stack)
        if last is not None and self.spec.backend_url is None:
            return 0  # the default backend lives beside this ledger: only this machine writes it
        newest_known = last.version if last is not None else 0
        try:
            with translated(self.stack):
                summaries = self._workspace_stack(create=False).history()
        except NotFoundError:
            self._stack_obj = None
            return 0
        adopted = 0
        seen: set[int] = set()
        for s in summaries:  # newest first: the latest attempt of each version
            n, raw = _version_of(s.config), _value(s.config.get(FLEET_KEY))
            if n is None or n <= newest_known or not raw or n in seen or s.kind not in ("update", "destroy"):
                continue
            seen.add(n)
            try:
                fleet = Fleet.model_validate(json.loads(raw))
            except ValueError as e:
                log.warning("stack '%s': update for version %d carries no readable fleet (%s); skipped",
                            self.stack, n, str(e).splitlines()[0])
                continue
            down = s.kind == "destroy"
            message = str(s.message or "").removeprefix(f"sculpt v{n}: ")
            adopted += self.ledger.import_version(
                self.stack, n, spec=fleet.spec.model_dump(mode="json"),
                fleet={"slots": []} if down else fleet_record(fleet),
                result="succeeded" if s.result == "succeeded" else "failed",
                message=f"{message} (adopted from the Pulumi backend)", kind="down" if down else
                ("rollback" if message.startswith("rollback") else "up"),
                when=s.end_time.timestamp() if s.end_time else s.start_time.timestamp())
        if adopted:
            log.info("stack '%s': adopted %d version(s) from the Pulumi backend's history", self.stack, adopted)
        return adopted

    def outputs(self, *, refresh: bool = False) -> dict[str, Any]:
        """The stack outputs of the last update, as plain values (``stack output --json``).

        On AWS they carry, per slot, its EC2 instance id and private IP (``instances``) and the colours'
        target group ARNs (``target_groups``): what CloudWatch and the ALB's target health are keyed by.
        The outputs an ``up`` returned are kept; ``refresh`` (or a new engine) asks the CLI again.
        """
        if self._outputs is None or refresh:
            with translated(self.stack):
                raw = self._workspace_stack().outputs()
            self._outputs = {str(k): getattr(v, "value", v) for k, v in (raw or {}).items()}
        return dict(self._outputs)

    def status(self) -> dict[str, Any] | None:
        """The current fleet's slots joined with the stack outputs (the load balancer's URL, each slot's
        cloud instance id and private address); ``healthy`` is ``None`` (see ``reports_health``)."""
        fleet = self.current()
        if fleet is None:
            return None
        outputs = self.outputs()
        rows = dict(outputs.get("instances") or {})
        instances = []
        for s in fleet.slots:
            row = dict(rows.get(s.id) or {})
            instances.append({
                "id": s.id, "shape": s.shape, "region": s.region, "colour": s.colour, "weight": s.weight,
                "healthy": None, "instance_id": row.get("id"), "address": row.get("private_ip"),
                "pid": None, "cpu_limit": None, "mem_limit_mb": None, "enforcement": "instance type", "restarts": 0,
            })
        url = str(outputs.get("url") or "")
        address = url.split("://", 1)[-1] or None  # host:port, as the local load balancer reports it
        return {"enforcement": "instance type", "live_resize": False, "agent_pid": None,
                "lb": {"address": address}, "instances": instances, "notes": []}

    def running(self) -> bool:
        """Whether the stack may have resources: the cloud is not asked, so yes (``destroy`` is idempotent)."""
        return True

    def stepwise(self) -> None:
        """Each command is one Pulumi update; Pulumi orders replacements itself."""
        return None

    def current_version(self) -> int | None:
        v = self.ledger.latest_version(self.stack, succeeded_only=True)
        return v.version if v is not None else None

    def previous_succeeded(self) -> int | None:
        ok = [v.version for v in self.ledger.versions(self.stack) if v.result == "succeeded"]
        return ok[-2] if len(ok) >= 2 else None

    def destroy(self) -> None:
        """Delete every resource of the stack; the history (Pulumi's and the ledger's) stays. The destroy
        carries its own version number in the stack config, so Pulumi's history numbers it as the ledger does."""
        with self.ledger.lock(self.stack, "down"):
            last = self.ledger.latest_version(self.stack, succeeded_only=True)
            record = last is not None and bool(last.fleet.get("slots"))
            with translated(self.stack):
                stack = self._workspace_stack()
                if record:
                    from pulumi.automation import ConfigValue

                    stack.set_all_config({VERSION_KEY: ConfigValue(value=str(self._next_version()))})
                stack.destroy(on_event=self._on_event, message=f"sculpt down {self.stack}")
            self._outputs = {}
            if record:
                assert last is not None
                self.ledger.append_version(self.stack, spec=last.spec, fleet={"slots": []}, result="succeeded",
                                           message="down", kind="down")

    # -- internals -----------------------------------------------------------------------------------------
    def _apply(self, fleet: Fleet, message: str, *, kind: str, config: dict[str, Any] | None,
               refresh: bool = False) -> int:
        n = self.ledger.append_version(self.stack, spec=fleet.spec.model_dump(mode="json"),
                                       fleet=fleet_record(fleet), result="pending", message=message, kind=kind)
        try:
            with translated(self.stack):
                stack = self._workspace_stack()
                values = dict(config) if config is not None else self._config(fleet, n)
                values[VERSION_KEY] = self._config(fleet, n)[VERSION_KEY]
                stack.set_all_config(values)
                self._outputs = None
                result = stack.up(message=f"sculpt v{n}: {message}", on_event=self._on_event,
                                  **({"refresh": True} if refresh else {}))
                outputs = getattr(result, "outputs", None)
                if outputs is not None:
                    self._outputs = {str(k): getattr(v, "value", v) for k, v in outputs.items()}
        except BaseException as e:
            reason = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
            self.ledger.set_version_result(self.stack, n, "failed", f"{message} (failed: {reason})")
            raise
        self.ledger.set_version_result(self.stack, n, "succeeded")
        return n

    @staticmethod
    def _recorded_config(summaries: list[Any], version: int) -> dict[str, Any] | None:
        """The config Pulumi recorded for ``version``'s succeeded update (history is newest first)."""
        for s in summaries:
            if s.kind == "update" and s.result == "succeeded" and _version_of(s.config) == version:
                return {k: v for k, v in s.config.items() if k != VERSION_KEY}
        return None


def _value(raw: Any) -> Any:
    """A config entry as Pulumi's history gives it (a ``ConfigValue`` or a plain value) -> the value."""
    return getattr(raw, "value", raw)


def _version_of(config: Mapping[str, Any]) -> int | None:
    value = _value(config.get(VERSION_KEY))
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _stderr_progress(line: str) -> None:
    print(f"  pulumi: {line}", file=sys.stderr, flush=True)


def make_engine(spec: FleetSpec, ledger: Ledger, catalog: Catalog, home: Path) -> PulumiEngine:
    """The factory ``sculpt.app.wiring.make_engine`` calls for ``engine: pulumi`` (progress on stderr)."""
    del catalog  # prices and shapes are checked by the policy rules; the cloud validates the rest
    return PulumiEngine(spec, home, ledger, on_progress=_stderr_progress)
