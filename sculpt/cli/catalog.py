"""``sculpt catalog``: list the offerings of a provider's catalog."""

from __future__ import annotations

from typing import Annotated

import typer

from sculpt.cli._common import JsonOpt, emit_json, is_tty

app = typer.Typer(help="List instance shapes and prices.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def list_offerings(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option(help="local | aws | gcp | sim")] = "local",
    region: Annotated[str | None, typer.Option(help="only this region")] = None,
    family: Annotated[list[str] | None, typer.Option(help="only these families (repeatable)")] = None,
    min_vcpu: Annotated[float, typer.Option(help="only shapes with at least this many vCPUs")] = 0.0,
    min_memory_gib: Annotated[float, typer.Option(help="only shapes with at least this much memory")] = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """List offerings (cheapest first); with --min-vcpu/--min-memory-gib, those meeting the demand.

    Lists the catalog `sculpt catalog refresh` wrote to <state dir>/catalog/<provider>.csv when there is one
    (the one stacks price with), else the built-in one; --json says which in "source".
    """
    if ctx.invoked_subcommand is not None:
        return
    from sculpt.catalog import load_catalog, refreshed_path
    from sculpt.domain.catalog import Demand
    from sculpt.ledger import state_dir

    source = refreshed_path(provider, state_dir())  # what `sculpt catalog refresh` wrote, as stacks use
    cat = load_catalog(provider, source)
    if region is not None and region not in cat.regions():
        from sculpt.domain.errors import NotFoundError

        raise NotFoundError(f"region '{region}' is not in the {cat.provider} catalog",
                            f"use one of: {', '.join(cat.regions())}")
    if family:
        known = sorted({o.shape.family for o in cat.offerings})
        unknown = [f for f in family if f not in known]
        if unknown:
            from sculpt.domain.errors import NotFoundError

            raise NotFoundError(f"famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(repr(f) for f in unknown)} "
                                f"not in the {cat.provider} catalog", f"use one of: {', '.join(known)}")
        cat = cat.filter(families=family)
    offers = cat.meeting(Demand(cpu_cores=min_vcpu, memory_gib=min_memory_gib), region)
    if json_out:
        emit_json({
            "provider": cat.provider,
            "source": str(source) if source else "built-in",
            "regions": list(cat.regions()) if region is None else [region],
            "offerings": [
                {"shape": o.shape.name, "family": o.shape.family, "vcpu": o.shape.vcpu,
                 "memory_gib": o.shape.memory_gib, "gpus": o.shape.gpus, "network_gbps": o.shape.network_gbps,
                 "storage": o.shape.storage, "arch": o.shape.arch, "region": o.region,
                 "price_hour": o.price_hour, "spot_price_hour": o.spot_price_hour}
                for o in offers
            ],
        })
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{cat.provider} catalog" + (f" in {region}" if region else "") + (f" (from {source})" if source else "")
    t = Table(title=title, show_lines=False)
    for col in ("shape", "family", "vCPU", "GiB", "GPU", "net Gb/s", "disk", "region", "$/h", "spot $/h"):
        t.add_column(col, justify="right" if col not in ("shape", "family", "disk", "region") else "left")
    for o in offers[:200]:
        s = o.shape
        t.add_row(s.name, s.family, f"{s.vcpu:g}", f"{s.memory_gib:g}", str(s.gpus),
                  "" if s.network_gbps is None else f"{s.network_gbps:g}", s.storage, o.region,
                  f"{o.price_hour:.4f}", "" if o.spot_price_hour is None else f"{o.spot_price_hour:.4f}")
    Console(width=None if is_tty() else 160).print(t)
    if len(offers) > 200:
        typer.echo(f"... {len(offers) - 200} more; narrow with --region/--family or use --json")


@app.command("refresh")
def refresh(
    provider: Annotated[str, typer.Option(help="aws (the only provider with a refresh so far)")] = "aws",
    regions: Annotated[list[str] | None, typer.Option(
        "--regions", help="regions to refresh (repeatable or comma-separated); default: the built-in catalog's")] = None,
    out: Annotated[str | None, typer.Option(help="CSV to write; default: <state dir>/catalog/<provider>.csv")] = None,
    endpoint_url: Annotated[str | None, typer.Option(
        "--endpoint-url", envvar="AWS_ENDPOINT_URL", help="EC2 endpoint (e.g. a local emulator)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the catalog from the cloud's API (specs, offerings per region, spot prices)."""
    from pathlib import Path

    from sculpt.domain.errors import ConfigError

    if provider != "aws":
        raise ConfigError(f"catalog refresh is built for aws, not '{provider}'",
                          "use --provider aws; the GCP catalog is the built-in one")
    try:
        import boto3  # noqa: F401

        from sculpt.catalog.refresh import refresh_aws, write_csv
    except ImportError:
        raise ConfigError("catalog refresh needs boto3", "pip install 'sculpt[aws]'") from None
    from sculpt.catalog import load_catalog
    from sculpt.ledger import state_dir

    base = load_catalog("aws")
    wanted = [r.strip() for item in (regions or []) for r in item.split(",") if r.strip()] or list(base.regions())
    report = refresh_aws(wanted, base, endpoint_url=endpoint_url)
    path = write_csv(report.rows, Path(out) if out else state_dir() / "catalog" / f"{provider}.csv")
    if json_out:
        emit_json({"provider": provider, "path": str(path), "regions": wanted, "offerings": len(report.rows),
                   "with_spot": report.with_spot, "skipped_unpriced": report.unpriced})
        return
    typer.echo(f"wrote {path}: {report.summary()}")
