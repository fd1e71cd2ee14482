"""Pure vocabulary shared by every layer: shapes, offerings, catalogs, specs, fleets, forecasts, plans.

Nothing here performs I/O or imports anything heavier than pydantic.
"""

from sculpt.domain.catalog import Catalog, Demand, Offering, Shape
from sculpt.domain.clock import Clock, FakeClock, SystemClock
from sculpt.domain.errors import (
    ConfigError,
    LockedError,
    NotFoundError,
    PermanentError,
    PolicyViolation,
    ProviderError,
    SculptError,
    TemporaryError,
)
from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.forecast import Forecast
from sculpt.domain.plan import Action, Decision, Plan, RuleResult
from sculpt.domain.spec import FleetSpec, load_spec

__all__ = [
    "Action",
    "Catalog",
    "Clock",
    "ConfigError",
    "Decision",
    "Demand",
    "FakeClock",
    "Fleet",
    "FleetSpec",
    "Forecast",
    "LockedError",
    "NotFoundError",
    "Offering",
    "PermanentError",
    "Plan",
    "PolicyViolation",
    "ProviderError",
    "RuleResult",
    "SculptError",
    "Shape",
    "Slot",
    "SystemClock",
    "TemporaryError",
    "load_spec",
]
