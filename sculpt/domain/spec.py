"""The fleet spec (``sculpt.yaml``): what the application needs and what sculpt may do about it.

Parsed once at the edge (``load_spec``) into a typed, frozen ``FleetSpec``; every invalid field becomes a
one-line ``ConfigError`` naming the field and the fix. The file itself is checked first: at most
``MAX_SPEC_BYTES``, UTF-8, YAML without repeated keys; numbers must be finite and durations bounded, so a
typo such as ``pause_max_ms: 1e24`` or ``drain_s: .inf`` is refused instead of stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sculpt.domain.errors import ConfigError

Engine = Literal["local", "pulumi"]
Provider = Literal["local", "sim", "aws", "gcp"]
Profile = Literal["high-throughput", "low-latency", "batch", "memory-bound", "general"]
SyncStrategy = Literal["http", "command", "volume", "none"]
Routing = Literal["weighted", "hash"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

PROFILES: tuple[str, ...] = ("high-throughput", "low-latency", "batch", "memory-bound", "general")


MAX_SPEC_BYTES = 1_000_000  # a spec is a page of YAML; each stack version stores it (in the ledger)
MAX_REPLICAS = 1000


class _Frozen(BaseModel):
    # allow_inf_nan: YAML's .inf/.nan (and 1e400) are typos here, and JSON cannot store them
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Replicas(_Frozen):
    min: int = Field(1, ge=0, le=MAX_REPLICAS,
                     description="never fewer healthy instances than this, even mid-migration")
    max: int = Field(3, ge=1, le=MAX_REPLICAS)
    desired: int = Field(1, ge=0, le=MAX_REPLICAS, description="instances to run now")

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max}); make min <= max")
        if not self.min <= self.desired <= self.max:
            raise ValueError(f"desired ({self.desired}) must lie between min ({self.min}) and max ({self.max})")
        return self


class SLO(_Frozen):
    p95_latency_ms: float = Field(250.0, gt=0, le=600_000, description="95th percentile request latency target, ms")
    max_utilisation: float = Field(0.8, gt=0, le=1, description="highest CPU/memory use as a share of the shape")


class StateSync(_Frozen):
    strategy: SyncStrategy = "http"
    checkpoint_path: str = "/checkpoint"
    restore_path: str = "/restore"
    delta_path: str = "/checkpoint?since={seq}"
    checkpoint_command: str | None = None
    restore_command: str | None = None
    volume: str | None = Field(None, description="data directory (local) or volume name (cloud) for 'volume'")


class App(_Frozen):
    command: list[str] | None = Field(
        None, description="argv of the app; {port} and {data_dir} are substituted; default: the demo app"
    )
    image: str | None = Field(None, description="machine image for cloud providers (AMI id, GCP image)")
    port: int = Field(8080, ge=1, le=65535, description="port the app listens on (cloud); local picks free ports")
    health_path: str = "/healthz"
    state_sync: StateSync = StateSync()
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            import shlex

            return shlex.split(v)
        return v

    @field_validator("command")
    @classmethod
    def _not_empty(cls, v: list[str] | None) -> list[str] | None:
        # an empty argv would silently run the demo app instead of the user's
        if v is not None and (not v or not v[0].strip()):
            raise ValueError("the command is empty; give the app's argv, e.g. [python, app.py, --port, "
                             "'{port}'], or remove app.command to run the demo app")
        return v


class LoadBalancer(_Frozen):
    port: int = Field(0, ge=0, le=65535, description="stable local address port; 0 picks a free one")
    routing: Routing = "weighted"
    hash_key: str = Field("key", description="query parameter or path segment used by 'hash' routing")
    pause_max_ms: int = Field(2000, ge=0, le=600_000,
                              description="longest a paused LB holds a request before failing it (<= 10 min)")
    drain_s: float = Field(5.0, ge=0, le=3600, description="seconds a retired instance drains (<= 1 h)")
    pause_lease_s: float = Field(
        10.0, ge=1, le=600,
        description="longest a morph may keep the LB paused; past it (or once the morph's process is dead) "
                    "the agent finishes or undoes the handover itself")


_ALL_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ChangeWindow(_Frozen):
    days: list[Day] = Field(default_factory=lambda: list(_ALL_DAYS))
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        try:
            h, m = v.split(":")
            ok = 0 <= int(h) <= 24 and 0 <= int(m) < 60 and (int(h) < 24 or int(m) == 0)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"'{v}' is not a time; write HH:MM, e.g. 02:00")
        return v


class Policy(_Frozen):
    max_migrations_per_day: int = Field(24, ge=0, le=1440)
    change_windows: list[ChangeWindow] = Field(default_factory=list, description="empty: any time")
    required_tags: dict[str, str] = Field(default_factory=dict)
    allow_public_ip: bool = False


class Events(_Frozen):
    webhook_url: str | None = Field(
        None, pattern=r"^https?://[^\s]+$", max_length=2048,
        description="POST every event (decision, policy block, move, rollback) here as JSON; retried with backoff")


class FleetSpec(_Frozen):
    """Everything ``sculpt.yaml`` says. Units are in the field names."""

    fleet: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$", description="stack name")
    engine: Engine = "local"
    provider: Provider = "local"
    profile: Profile = "general"
    shape: str = Field(description="the shape to run now; sculpt changes it through new stack versions")
    region: str
    regions: list[str] = Field(default_factory=list, description="regions sculpt may move to; empty: only region")
    families: list[str] = Field(default_factory=list, description="shape families sculpt may use; empty: all")
    replicas: Replicas = Replicas()
    slo: SLO = SLO()
    aggressiveness: float = Field(0.5, ge=0, le=1, description="0: move only to avoid SLO breach; 1: chase savings")
    budget_usd_per_hour: float | None = Field(None, gt=0, le=1_000_000)
    tick_s: float = Field(10.0, ge=1, le=3600)
    app: App = App()
    lb: LoadBalancer = LoadBalancer()
    policy: Policy = Policy()
    events: Events = Events()
    tags: dict[str, str] = Field(default_factory=dict)
    backend_url: str | None = Field(None, description="Pulumi backend URL (engine: pulumi); default file://")
    gcp_project: str | None = Field(
        None, pattern=r"^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        description="GCP project id (provider gcp); default: the Pulumi provider's (GOOGLE_PROJECT)",
    )
    catalog_file: str | None = Field(
        None, description="catalog CSV to price with (e.g. from `sculpt catalog refresh`); default: built-in"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FleetSpec:
        if self.engine == "local" and self.provider not in ("local", "sim"):
            raise ValueError(
                f"provider '{self.provider}' needs engine 'pulumi'; set engine: pulumi or provider: local"
            )
        if self.engine == "pulumi" and self.provider not in ("aws", "gcp"):
            raise ValueError(f"engine 'pulumi' drives aws or gcp, not '{self.provider}'; set engine: local")
        if self.gcp_project and self.provider != "gcp":
            raise ValueError(f"gcp_project is for provider gcp, not '{self.provider}'; remove it")
        return self

    @property
    def allowed_regions(self) -> list[str]:
        return list(dict.fromkeys([self.region, *self.regions]))

    def with_changes(self, **changes: Any) -> FleetSpec:
        """A copy with fields replaced and validated again."""
        data = self.model_dump()
        data.update(changes)
        return FleetSpec.model_validate(data)


def _one_line(text: str, limit: int = 80) -> str:
    """``text`` safe for a one-line error: control characters escaped, at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _field_path(loc: tuple[Any, ...]) -> str:
    return _one_line(".".join(str(p) for p in loc), 120) or "(top level)"


def parse_spec(data: Any, source: str = "sculpt.yaml") -> FleetSpec:
    """Validate a mapping; the first problem becomes a one-line ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a mapping of fields", "start from `sculpt init`")
    try:
        return FleetSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = _field_path(tuple(err.get("loc", ())))
        msg = _one_line(str(err.get("msg", "invalid")).removeprefix("Value error, "), 240)
        if err.get("type") == "extra_forbidden":
            raise ConfigError(f"{source}: unknown field '{field}'", "remove it or check its spelling") from None
        if err.get("type") == "missing":
            raise ConfigError(f"{source}: field '{field}' is required", f"add '{field}:' to {source}") from None
        if err.get("type") == "literal_error":
            raise ConfigError(f"{source}: field '{field}': {msg}", f"set '{field}' to one of the listed values") from None
        raise ConfigError(f"{source}: field '{field}': {msg}", f"correct '{field}' in {source}") from None


_IDENTITY = ("fleet", "engine", "provider", "shape", "region")


def parse_stored_spec(data: Any, source: str) -> FleetSpec:
    """A spec a ledger version recorded. Validated like the file, except that a field an older sculpt accepted
    and this one refuses (a non-finite number, a bound added since, an empty command) falls back to its
    default with a warning: ``down``, ``status`` and ``history`` must keep working on an old stack. The
    identity (fleet, engine, provider, shape, region) is never guessed: a bad one is the usual ConfigError."""
    import copy
    import logging

    if not isinstance(data, dict):
        return parse_spec(data, source)
    work = copy.deepcopy(data)
    for _ in range(32):
        try:
            spec = FleetSpec.model_validate(work)
        except ValidationError as e:
            loc = tuple(e.errors()[0].get("loc", ()))
            if not loc or loc[0] in _IDENTITY or not _drop(work, loc):
                break
            logging.getLogger("sculpt.spec").warning(
                "%s: field '%s' is no longer valid (%s); reading it as the default",
                source, _field_path(loc),
                _one_line(str(e.errors()[0].get("msg", "invalid")).removeprefix("Value error, "), 120))
            continue
        return spec
    return parse_spec(data, source)


def _drop(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    """Remove the field at ``loc`` (a list element's whole list) so its default applies; ``False`` if absent."""
    node: Any = data
    for key in loc[:-1]:
        nxt = node.get(key) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):  # a list (or scalar) on the way: drop that whole field
            return _drop_key(node, key)
        node = nxt
    return _drop_key(node, loc[-1])


def _drop_key(node: Any, key: Any) -> bool:
    if isinstance(node, dict) and key in node:
        del node[key]
        return True
    return False


def _unique_key_loader() -> type:
    """A ``yaml.SafeLoader`` that refuses a key repeated in one mapping (plain YAML keeps the last one,
    silently dropping what the user wrote first)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # '<<: *anchor' may repeat; merged keys are overridden, as YAML says
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    try:
                        if key in seen:
                            raise _DuplicateKey(_one_line(str(key)), seen[key], line)
                        seen[key] = line
                    except TypeError:
                        continue  # an unhashable key: the base class reports it
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, again: int) -> None:
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


def _read_bytes(p: Path) -> bytes:
    """The spec's bytes, at most ``MAX_SPEC_BYTES``."""
    from sculpt.domain.files import read_bounded

    return read_bounded(p, "the fleet spec", MAX_SPEC_BYTES, missing_fix="run `sculpt init` or pass --spec PATH",
                        fix="pass --spec PATH to a sculpt.yaml file (`sculpt init` writes one)",
                        too_large_fix="keep sculpt.yaml to the fields `sculpt init` writes (data belongs elsewhere)")


def load_spec(path: str | Path) -> FleetSpec:
    """Read and validate ``sculpt.yaml``: size, encoding, YAML (no repeated keys, bounded nesting), fields."""
    import yaml

    p = Path(path)
    raw = _read_bytes(p)
    name = _one_line(str(p), 200)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line})",
                          f"save {name} as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        lines = f"line {e.first}" if e.first == e.again else f"lines {e.first} and {e.again}"
        raise ConfigError(f"{name}: key '{e.key}' appears twice in one mapping ({lines})",
                          "keep one of them; YAML would silently drop the first") from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, most control characters)
        line = text[:e.position].count("\n") + 1
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "\0")
        raise ConfigError(f"{name} is not valid YAML: character U+{code:04X} at line {line} is not allowed",
                          "remove control characters from the file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{name} is not valid YAML{where}", "fix the YAML syntax (indentation, colons)") from None
    except RecursionError:
        raise ConfigError(f"{name} nests too deeply to be a fleet spec", "flatten the YAML (a spec is a few "
                          "levels deep; see `sculpt init`)") from None
    try:
        return parse_spec(data, name)
    except RecursionError:
        raise ConfigError(f"{name} nests too deeply to be a fleet spec", "flatten the YAML") from None


def check_regions(spec: FleetSpec, known: Iterable[str], source: str = "sculpt.yaml") -> None:
    """Every region the spec names (``region`` and each of ``regions``) must be one the provider's catalog
    offers; called where the spec meets its catalog (the catalog can come from ``catalog_file``)."""
    offered = list(known)
    for field, region in [("region", spec.region), *((f"regions.{i}", r) for i, r in enumerate(spec.regions))]:
        if region not in offered:
            raise ConfigError(f"{source}: field '{field}': unknown region '{region}' for provider '{spec.provider}'",
                              f"use one of: {', '.join(offered)} (see `sculpt catalog`)")
