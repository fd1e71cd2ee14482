"""``sculpt policy check``: run the policy rules on the spec's fleet, or on the fleet a plan would produce.

The same pure rules (``sculpt.rules``) gate ``decide`` and back the CrossGuard pack in ``policies/``; this
verb runs them without Pulumi. Exit 0 when every mandatory rule passes, 2 when one fails. ``--json``
prints a list of ``{"rule", "level", "passed", "message"}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from sculpt.cli._common import DEFAULT_SPEC, JsonOpt, SpecOpt, emit_json

app = typer.Typer(help="Check a fleet or a plan against sculpt.yaml's policy.", no_args_is_help=True)

MAX_PLAN_BYTES = 1_000_000  # `sculpt plan --json` prints a few kB

PlanOpt = Annotated[Path | None, typer.Option("--plan", help="a plan as `sculpt plan --json` prints it")]


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON; a plan that has them was not written by ``sculpt plan --json``."""
    raise ValueError(name)


def _read_plan(path: Path) -> dict[str, Any]:
    import json

    from sculpt.domain.errors import ConfigError
    from sculpt.domain.files import read_bounded

    fix = "pass the output of `sculpt plan --json`"
    raw = read_bounded(path, "the plan file", MAX_PLAN_BYTES, fix=fix, too_large_fix=fix,
                       missing_fix="write one with `sculpt plan --json > plan.json`")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{path} is not JSON", fix) from None
    if not isinstance(data, dict) or not isinstance(data.get("actions", []), list):
        raise ConfigError(f"{path} is not a plan (expected an object with an 'actions' list)",
                          "pass the output of `sculpt plan --json`")
    return data


def parse_actions(raw_actions: list[Any], source: str = "the plan") -> list[Any]:
    """The plan's ``actions`` as ``Action``s; the first bad one is a one-line ``ConfigError`` naming its index
    and field (a hand-edited plan with an action missing ``kind`` must not print a pydantic traceback)."""
    from pydantic import ValidationError

    from sculpt.domain.errors import ConfigError
    from sculpt.domain.plan import Action
    from sculpt.domain.spec import MAX_REPLICAS

    fix = "pass the output of `sculpt plan --json` (actions have 'kind': resize, move or scale)"
    out = []
    for i, raw in enumerate(raw_actions):
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: action {i} is not an object", fix)
        try:
            a = Action.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err.get("loc", ())) or "(the action)"
            field = "".join(c if c.isprintable() else "?" for c in field)[:80]
            detail = " is required" if err.get("type") == "missing" else f": {err.get('msg', 'invalid')}"
            raise ConfigError(f"{source}: action {i}: field '{field}'{detail}", fix) from None
        if a.kind == "scale" and a.replicas is not None and not 0 <= a.replicas <= MAX_REPLICAS:
            raise ConfigError(f"{source}: action {i}: field 'replicas' is {a.replicas}, not 0..{MAX_REPLICAS}", fix)
        out.append(a)
    return out


def fleet_after(fleet: Any, actions: list[dict[str, Any]], source: str = "the plan") -> Any:
    """The fleet after a plan's actions (``resize``/``move`` a slot, or ``scale`` to a replica count)."""
    from sculpt.domain.fleet import Slot
    from sculpt.domain.spec import MAX_REPLICAS

    slots = list(fleet.slots)
    for a in parse_actions(actions, source):
        if a.kind == "scale" and a.replicas is not None:
            template = slots[0] if slots else Slot(id="", shape=fleet.spec.shape, region=fleet.spec.region)
            taken = {s.id for s in slots}
            fresh = (f"{fleet.name}-{i}" for i in range(2 * MAX_REPLICAS + 1) if f"{fleet.name}-{i}" not in taken)
            slots = slots[:a.replicas] + [template.model_copy(update={"id": next(fresh)})
                                          for _ in range(a.replicas - len(slots))]
        elif a.kind in ("resize", "move"):
            slots = [s.model_copy(update={"shape": a.to_shape or s.shape, "region": a.to_region or s.region})
                     if a.slot in (None, s.id) else s for s in slots]
    return fleet.with_slots(slots)


def _migrations_last_day(spec_path: Path, stack: str, now: float) -> int:
    """The stack's migrations in the 24 h before ``now``, from the ledger's one record of moves (watch,
    morph, rollback, up; one per command) — the count the decision's daily cap uses too."""
    from sculpt.ledger import DAY_S, Ledger, migration_times, state_dir

    db = state_dir(spec_path) / "ledger.db"
    if not db.exists():
        return 0
    ledger = Ledger(db)
    try:
        return len(migration_times(ledger.moves(stack, since=now - DAY_S)))
    finally:
        ledger.close()


def check(spec_path: Path, plan_path: Path | None, now: float) -> list[Any]:
    """The rule results for the spec's fleet, or for the fleet after the plan in ``plan_path``."""
    from sculpt.app.wiring import catalog_for
    from sculpt.domain.errors import ConfigError
    from sculpt.domain.fleet import Fleet
    from sculpt.domain.spec import check_regions, load_spec
    from sculpt.ledger import state_dir
    from sculpt.rules import RuleContext, evaluate

    spec = load_spec(spec_path)
    fleet = Fleet.from_spec(spec)
    is_change = False
    if plan_path is not None:
        plan = _read_plan(plan_path)
        if plan.get("stack", spec.fleet) != spec.fleet:
            raise ConfigError(f"the plan is for stack {str(plan['stack'])[:60]!r}, the spec for '{spec.fleet}'",
                              "pass the spec the plan was made from")
        fleet = fleet_after(fleet, plan.get("actions", []), str(plan_path))
        is_change = bool(plan.get("actions"))
    # the stack's catalog (catalog_file, or the one `sculpt catalog refresh` wrote): the regions it offers
    catalog = catalog_for(spec, state_dir(spec_path), Path(spec_path).resolve().parent)
    check_regions(spec, catalog.regions(), str(spec_path))
    ctx = RuleContext(
        spec=spec, fleet=fleet, hourly_cost=sum(catalog.price(s.shape, s.region) for s in fleet.slots),
        families={name: shape.family for name, shape in catalog.shapes().items()},
        migrations_last_day=_migrations_last_day(spec_path, spec.fleet, now), is_change=is_change, now=now,
        tags={**spec.tags, "sculpt:fleet": spec.fleet}, public_ip=spec.policy.allow_public_ip,
    )
    return list(evaluate(ctx))


@app.command("check")
def check_command(spec: SpecOpt = DEFAULT_SPEC, plan: PlanOpt = None, json_out: JsonOpt = False) -> None:
    """Run the policy rules; exit 2 if a mandatory rule fails."""
    results = check(spec, plan, time.time())
    if json_out:
        emit_json([r.model_dump() for r in results])
    else:
        for r in results:
            mark = "ok" if r.passed else ("BLOCK" if r.level == "mandatory" else "warn")
            typer.echo(f"[{mark}] {r.rule}: {r.message}")
    blocked = [r for r in results if r.level == "mandatory" and not r.passed]
    if blocked:
        from sculpt.domain.errors import PolicyViolation

        raise PolicyViolation(f"policy blocks it: {'; '.join(f'{r.rule}: {r.message}' for r in blocked)}",
                              "change the plan or the policy in sculpt.yaml")
