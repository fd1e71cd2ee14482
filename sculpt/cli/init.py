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

SPEC_DOC = "docs/spec.md"  # where every field is documented (its first heading: "The fleet spec")

TEMPLATE = """\
# sculpt fleet spec. Every field is documented in {doc} ("The fleet spec").
fleet: {fleet}                  # stack name: lower-case letters, digits and dashes
engine: {engine}                # local (embedded, no cloud account) | pulumi (aws, gcp)
provider: {provider}            # local | sim | aws | gcp
{cloud}profile: general                # high-throughput | low-latency | batch | memory-bound | general
shape: {shape}                  # the shape to run now (`sculpt catalog{catalog}` lists them)
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
{app}{lb}policy:
  max_migrations_per_day: 24
  change_windows: []            # e.g. [{{days: [sat, sun], start: "02:00", end: "06:00"}}]; empty = any time
  allow_public_ip: false
tags: {{}}
"""

LOCAL_APP = """\
app:
  command: null                 # argv with {port} and {data_dir}; null runs the bundled demo app
  health_path: /healthz
  state_sync:
    strategy: http              # http | command | volume | none
    checkpoint_path: /checkpoint
    restore_path: /restore
"""

LOCAL_LB = """\
lb:
  port: 0                       # local load balancer port; 0 picks a free one (and keeps it)
  routing: weighted             # weighted | hash (consistent hashing by the 'key' query parameter)
"""

CLOUD_APP = """\
app:
  image: null                   # {image}
  command: null                 # argv with {{port}} and {{data_dir}}; null: python3 -m sculpt.demoapp (in the image)
  port: 8080                    # the port the app listens on, on each instance
  health_path: /healthz
  state_sync:
    strategy: http              # http | command | none{volume}
    checkpoint_path: /checkpoint
    restore_path: /restore
"""

CLOUD_LB = """\
lb:
  port: 80                      # the load balancer's listener port (routing is weighted on clouds)
"""

_IMAGES = {
    "aws": "AMI id with your app (ami-...); null: Amazon Linux 2023",
    "gcp": "image with your app (projects/.../global/images/...); null: Debian 12",
}

_NEXT = {
    "local": "next: sculpt up",
    "sim": ("provider sim is the simulated cloud of `sculpt replay` (it runs no instances, so `sculpt up` has "
            "nothing to start); next: `sculpt policy check` checks this spec, and `sculpt replay TRACES "
            "--catalog aws --region us-east-1` runs your traces on the simulated cloud"),
    "aws": "next: set app.image and app.command, check AWS credentials (docs/pulumi.md), then sculpt up",
    "gcp": "next: set gcp_project, app.image and app.command, check GCP credentials (docs/pulumi.md), then sculpt up",
}


def render(provider: str, fleet: str = "web") -> str:
    """The commented spec ``sculpt init`` writes for ``provider``: cloud fields (``app.image``, the
    listener port) for clouds, local ones (the demo app, a free local port, hash routing) for local/sim."""
    shape, region, regions = _DEFAULTS[provider]
    engine = "pulumi" if provider in ("aws", "gcp") else "local"
    cloud = "" if engine == "local" else (
        "backend_url: null               # Pulumi backend (s3://…, gs://…, https://api.pulumi.com); null: file:// "
        "under .sculpt/\n")
    if provider == "gcp":
        cloud += "gcp_project: null               # GCP project id; null: the Pulumi provider's (GOOGLE_PROJECT)\n"
    if engine == "local":
        app, lb = LOCAL_APP, LOCAL_LB
    else:
        volume = " | volume (an EBS volume that follows the traffic)" if provider == "aws" else ""
        app, lb = CLOUD_APP.format(image=_IMAGES[provider], volume=volume), CLOUD_LB
    catalog = "" if provider == "local" else f" --provider {provider}"
    return _align(TEMPLATE.format(doc=SPEC_DOC, fleet=fleet, engine=engine, provider=provider, shape=shape, region=region,
                           regions="[" + ", ".join(regions) + "]", cloud=cloud, app=app, lb=lb, catalog=catalog))


def _align(text: str, col: int = 32) -> str:
    """Line the trailing comments up at ``col`` whatever the values' lengths."""
    out = []
    for line in text.splitlines():
        head, sep, comment = line.partition("  # ")
        if sep and not line.lstrip().startswith("#"):
            head = head.rstrip()
            line = f"{head:<{col - 1}} # {comment}" if len(head) < col - 1 else f"{head}  # {comment}"
        out.append(line)
    return "\n".join(out) + "\n"


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
    text = render(provider, fleet)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    try:
        load_spec(tmp)  # the template must always validate
    finally:
        tmp.replace(path)
    typer.echo(f"wrote {path} (fleet '{fleet}', provider {provider}); {_NEXT[provider]}")
