"""``sculpt init``: write a commented fleet spec to start from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sculpt.cli._common import DEFAULT_SPEC

_DEFAULTS = {
    "local": ("std-0.5c-512m", "local-a", ["local-b"]),
    "sim": ("m6i.large", "us-east-1", []),
    "aws": ("m6i.large", "us-east-1", ["us-east-2"]),
    "gcp": ("n2-standard-2", "us-central1", ["us-east1"]),
}

TEMPLATE = """\
# sculpt fleet spec. Every field is documented in the README ("The fleet spec").
fleet: {fleet}                  # stack name: lower-case letters, digits and dashes
engine: {engine}                # local (embedded, no cloud account) | pulumi (aws, gcp)
provider: {provider}            # local | sim | aws | gcp
{cloud}profile: general                # high-throughput | low-latency | batch | memory-bound | general
shape: {shape}                  # the shape to run now (`sculpt catalog` lists them)
region: {region}                # the region to run in now
regions: {regions}              # other regions sculpt may move the fleet to
families: []                    # shape families sculpt may choose from; empty = all
replicas:
  min: 1                        # never fewer healthy instances, even during a morph
  max: 3
  desired: 1
slo:
  p95_latency_ms: 250           # 95th percentile latency target
  max_utilisation: 0.8          # keep CPU and memory use below this share of the shape
aggressiveness: 0.5             # 0 = move only to avoid an SLO breach, 1 = chase every saving
budget_usd_per_hour: 5.0        # fleet cost cap; a plan above it is blocked by policy
tick_s: 10                      # seconds between sculptor ticks
app:
  command: null                 # argv with {{port}} and {{data_dir}}; null runs the bundled demo app
  port: 8080                    # the app's port on cloud instances (local instances get free ports)
  health_path: /healthz
  state_sync:
    strategy: http              # http | command | volume | none
    checkpoint_path: /checkpoint
    restore_path: /restore
lb:
  port: 0                       # local load balancer port; 0 picks a free one
  routing: weighted             # weighted | hash (consistent hashing by the 'key' query parameter)
policy:
  max_migrations_per_day: 24
  change_windows: []            # e.g. [{{days: [sat, sun], start: "02:00", end: "06:00"}}]; empty = any time
  allow_public_ip: false
tags: {{}}
"""


def command(
    provider: Annotated[str, typer.Option(help="local | sim | aws | gcp")] = "local",
    fleet: Annotated[str, typer.Option(help="fleet (stack) name")] = "web",
    path: Annotated[Path, typer.Option("--spec", "-f", help="where to write the spec")] = DEFAULT_SPEC,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing spec")] = False,
) -> None:
    """Write a commented sculpt.yaml to start from."""
    from sculpt.domain.errors import ConfigError
    from sculpt.domain.spec import load_spec

    if provider not in _DEFAULTS:
        raise ConfigError(f"unknown provider '{provider}'", "use one of: local, sim, aws, gcp")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", "pass --force to overwrite it, or --spec another path")
    shape, region, regions = _DEFAULTS[provider]
    engine = "pulumi" if provider in ("aws", "gcp") else "local"
    cloud = "" if engine == "local" else (
        "backend_url: null               # Pulumi backend (s3://…, gs://…, https://api.pulumi.com); null: file:// "
        "under .sculpt/\n")
    if provider == "gcp":
        cloud += "gcp_project: null               # GCP project id; null: the Pulumi provider's (GOOGLE_PROJECT)\n"
    text = TEMPLATE.format(fleet=fleet, engine=engine, provider=provider, shape=shape, region=region,
                           regions="[" + ", ".join(regions) + "]", cloud=cloud)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    try:
        load_spec(tmp)  # the template must always validate
    finally:
        tmp.replace(path)
    typer.echo(f"wrote {path} (fleet '{fleet}', provider {provider}); next: sculpt up")
