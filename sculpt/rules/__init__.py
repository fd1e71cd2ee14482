"""Policy rules as pure functions, shared by ``decide`` (the policy gate), ``sculpt policy check`` and the
Pulumi CrossGuard pack in ``policies/``.

Each rule takes a ``RuleContext`` (the spec, the fleet a plan would produce, its cost, recent migrations,
the time) and returns a ``RuleResult``. ``evaluate`` runs them all. No I/O, no clock reads: ``now`` is given.

>>> from sculpt.domain.spec import parse_spec
>>> from sculpt.domain.fleet import Fleet
>>> spec = parse_spec({"fleet": "web", "shape": "std-1c-1024m", "region": "local-a", "budget_usd_per_hour": 0.01})
>>> ctx = RuleContext(spec=spec, fleet=Fleet.from_spec(spec), hourly_cost=0.05, families={"std-1c-1024m": "local-std"})
>>> [r.rule for r in evaluate(ctx) if not r.passed]
['budget']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sculpt.domain.fleet import Fleet
from sculpt.domain.plan import RuleResult
from sculpt.domain.spec import FleetSpec

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class RuleContext:
    """What a rule may look at. ``fleet`` is the fleet *after* the plan; ``hourly_cost`` its $/h."""

    spec: FleetSpec
    fleet: Fleet
    hourly_cost: float
    families: Mapping[str, str] = field(default_factory=dict)  # shape name -> family
    migrations_last_day: int = 0
    is_change: bool = False  # does the plan change the fleet?
    now: float = 0.0  # seconds since the epoch (UTC)
    tags: Mapping[str, str] = field(default_factory=dict)  # tags the resources will carry
    public_ip: bool = False  # will any instance get a public address?


Rule = Callable[[RuleContext], RuleResult]


def allowed_families(ctx: RuleContext) -> RuleResult:
    allowed = set(ctx.spec.families)
    bad = sorted({s.shape for s in ctx.fleet.slots if allowed and ctx.families.get(s.shape, "?") not in allowed})
    return RuleResult(rule="allowed-families", passed=not bad,
                      message="all shapes in allowed families" if not bad else
                      f"{', '.join(bad)} not in allowed families {sorted(allowed)}")


def allowed_regions(ctx: RuleContext) -> RuleResult:
    allowed = set(ctx.spec.allowed_regions)
    bad = sorted({s.region for s in ctx.fleet.slots if s.region not in allowed})
    return RuleResult(rule="allowed-regions", passed=not bad,
                      message="all instances in allowed regions" if not bad else
                      f"region(s) {', '.join(bad)} not in {sorted(allowed)}")


def budget(ctx: RuleContext) -> RuleResult:
    cap = ctx.spec.budget_usd_per_hour
    if cap is None:
        return RuleResult(rule="budget", passed=True, message="no budget cap set")
    ok = ctx.hourly_cost <= cap + 1e-12
    return RuleResult(rule="budget", passed=ok,
                      message=f"fleet ${ctx.hourly_cost:.4f}/h {'within' if ok else 'exceeds'} cap ${cap:.4f}/h")


def max_migrations_per_day(ctx: RuleContext) -> RuleResult:
    cap = ctx.spec.policy.max_migrations_per_day
    n = ctx.migrations_last_day + (1 if ctx.is_change else 0)
    ok = not ctx.is_change or n <= cap
    return RuleResult(rule="max-migrations-per-day", passed=ok,
                      message=f"{n} migration(s) in the last 24 h, cap {cap}")


def change_window(ctx: RuleContext) -> RuleResult:
    windows = ctx.spec.policy.change_windows
    if not windows or not ctx.is_change:
        return RuleResult(rule="change-window", passed=True,
                          message="no change windows set" if not windows else "no change planned")
    tm = time.gmtime(ctx.now)
    day, minute = DAYS[tm.tm_wday], tm.tm_hour * 60 + tm.tm_min
    for w in windows:
        start = int(w.start[:2]) * 60 + int(w.start[3:])
        end = int(w.end[:2]) * 60 + int(w.end[3:])
        if day in w.days and start <= minute < end:
            return RuleResult(rule="change-window", passed=True, message=f"inside window {w.start}-{w.end} UTC")
    return RuleResult(rule="change-window", passed=False,
                      message=f"{day} {tm.tm_hour:02d}:{tm.tm_min:02d} UTC is outside every change window")


def replica_bounds(ctx: RuleContext) -> RuleResult:
    r = ctx.spec.replicas
    serving = len([s for s in ctx.fleet.slots if s.weight > 0])
    ok = r.min <= serving <= r.max
    return RuleResult(rule="replica-bounds", passed=ok, message=f"{serving} serving replica(s), bounds {r.min}..{r.max}")


def required_tags(ctx: RuleContext) -> RuleResult:
    need = ctx.spec.policy.required_tags
    missing = sorted(k for k, v in need.items() if ctx.tags.get(k) != v and not (v == "*" and k in ctx.tags))
    return RuleResult(rule="required-tags", passed=not missing,
                      message="all required tags present" if not missing else f"missing tag(s): {', '.join(missing)}")


def no_public_ip(ctx: RuleContext) -> RuleResult:
    ok = ctx.spec.policy.allow_public_ip or not ctx.public_ip
    return RuleResult(rule="no-public-ip", passed=ok,
                      message="no public addresses" if not ctx.public_ip else
                      ("public addresses allowed by policy" if ok else "instances would get public IPs"))


RULES: tuple[Rule, ...] = (allowed_families, allowed_regions, budget, max_migrations_per_day, change_window,
                           replica_bounds, required_tags, no_public_ip)


def evaluate(ctx: RuleContext, rules: tuple[Rule, ...] = RULES) -> tuple[RuleResult, ...]:
    """Run every rule; a plan is allowed when every mandatory result passed."""
    return tuple(rule(ctx) for rule in rules)
