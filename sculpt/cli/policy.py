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

PlanOpt = Annotated[Path | None, typer.Option("--plan", help="a plan as `sculpt plan --json` prints it")]


def _read_plan(path: Path) -> dict[str, Any]:
    import json

    from sculpt.domain.errors import ConfigError, NotFoundError

    if not path.exists():
        raise NotFoundError(f"no plan file at {path}", "write one with `sculpt plan --json > plan.json`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not JSON", "pass the output of `sculpt plan --json`") from None
    if not isinstance(data, dict) or not isinstance(data.get("actions", []), list):
        raise ConfigError(f"{path} is not a plan (expected an object with an 'actions' list)",
                          "pass the output of `sculpt plan --json`")
    return data


def fleet_after(fleet: Any, actions: list[dict[str, Any]]) -> Any:
    """The fleet after a plan's actions (``resize``/``move`` a slot, or ``scale`` to a replica count)."""
    from sculpt.domain.fleet import Slot
    from sculpt.domain.plan import Action

    slots = list(fleet.slots)
    for raw in actions:
        a = Action.model_validate(raw)
        if a.kind == "scale" and a.replicas is not None:
            template = slots[0] if slots else Slot(id="", shape=fleet.spec.shape, region=fleet.spec.region)
            taken = {s.id for s in slots}
            fresh = (f"{fleet.name}-{i}" for i in range(10_000) if f"{fleet.name}-{i}" not in taken)
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
    from sculpt.catalog import load_catalog
    from sculpt.domain.errors import ConfigError
    from sculpt.domain.fleet import Fleet
    from sculpt.domain.spec import load_spec
    from sculpt.rules import RuleContext, evaluate

    spec = load_spec(spec_path)
    fleet = Fleet.from_spec(spec)
    is_change = False
    if plan_path is not None:
        plan = _read_plan(plan_path)
        if plan.get("stack", spec.fleet) != spec.fleet:
            raise ConfigError(f"the plan is for stack '{plan['stack']}', the spec for '{spec.fleet}'",
                              "pass the spec the plan was made from")
        fleet = fleet_after(fleet, plan.get("actions", []))
        is_change = bool(plan.get("actions"))
    catalog = load_catalog(spec.provider)
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
