"""The fleet spec (``sculpt.yaml``): what the application needs and what sculpt may do about it.

Parsed once at the edge (``load_spec``) into a typed, frozen ``FleetSpec``; every invalid field becomes a
one-line ``ConfigError`` naming the field and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sculpt.domain.errors import ConfigError, NotFoundError

Engine = Literal["local", "pulumi"]
Provider = Literal["local", "sim", "aws", "gcp"]
Profile = Literal["high-throughput", "low-latency", "batch", "memory-bound", "general"]
SyncStrategy = Literal["http", "command", "volume", "none"]
Routing = Literal["weighted", "hash"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

PROFILES: tuple[str, ...] = ("high-throughput", "low-latency", "batch", "memory-bound", "general")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Replicas(_Frozen):
    min: int = Field(1, ge=0, description="never fewer healthy instances than this, even mid-migration")
    max: int = Field(3, ge=1)
    desired: int = Field(1, ge=0, description="instances to run now")

    @model_validator(mode="after")
    def _bounds(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max}); make min <= max")
        if not self.min <= self.desired <= self.max:
            raise ValueError(f"desired ({self.desired}) must lie between min ({self.min}) and max ({self.max})")
        return self


class SLO(_Frozen):
    p95_latency_ms: float = Field(250.0, gt=0, description="95th percentile request latency target, ms")
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


class LoadBalancer(_Frozen):
    port: int = Field(0, ge=0, le=65535, description="stable local address port; 0 picks a free one")
    routing: Routing = "weighted"
    hash_key: str = Field("key", description="query parameter or path segment used by 'hash' routing")
    pause_max_ms: int = Field(2000, ge=0, description="longest a paused LB holds a request before failing it")
    drain_s: float = Field(5.0, ge=0)
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
            ok = 0 <= int(h) <= 24 and 0 <= int(m) < 60
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"'{v}' is not a time; write HH:MM, e.g. 02:00")
        return v


class Policy(_Frozen):
    max_migrations_per_day: int = Field(24, ge=0)
    change_windows: list[ChangeWindow] = Field(default_factory=list, description="empty: any time")
    required_tags: dict[str, str] = Field(default_factory=dict)
    allow_public_ip: bool = False


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
    budget_usd_per_hour: float | None = Field(None, gt=0)
    tick_s: float = Field(10.0, ge=1, le=3600)
    app: App = App()
    lb: LoadBalancer = LoadBalancer()
    policy: Policy = Policy()
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


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_spec(data: Any, source: str = "sculpt.yaml") -> FleetSpec:
    """Validate a mapping; the first problem becomes a one-line ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a mapping of fields", "start from `sculpt init`")
    try:
        return FleetSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = _field_path(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            raise ConfigError(f"{source}: unknown field '{field}'", "remove it or check its spelling") from None
        if err.get("type") == "missing":
            raise ConfigError(f"{source}: field '{field}' is required", f"add '{field}:' to {source}") from None
        if err.get("type") == "literal_error":
            raise ConfigError(f"{source}: field '{field}': {msg}", f"set '{field}' to one of the listed values") from None
        raise ConfigError(f"{source}: field '{field}': {msg}", f"correct '{field}' in {source}") from None


def load_spec(path: str | Path) -> FleetSpec:
    """Read and validate ``sculpt.yaml``."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"no fleet spec at {p}", "run `sculpt init` or pass --spec PATH")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p} is not valid YAML{where}", "fix the YAML syntax (indentation, colons)") from None
    return parse_spec(data, str(p))
