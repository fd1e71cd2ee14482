"""The decision, pure: forecast + catalog + current shape + state + policy + now -> ``Plan``.

``decide`` is the single-instance form (returns a ``Plan`` that explains itself); ``decide_many`` decides
for thousands of streams in a few numpy operations. ``CostModel`` holds the constants (explained there and
in docs/decision.md); ``DecisionState`` is the hysteresis/cooldown memory, passed in and returned.
"""

from sculpt.decide.cost import CostModel, breach_probability
from sculpt.decide.decision import BatchDecision, Columns, Why, decide, decide_many, plan_of
from sculpt.decide.state import DecisionState

__all__ = ["BatchDecision", "Columns", "CostModel", "DecisionState", "Why", "breach_probability", "decide",
           "decide_many", "plan_of"]
