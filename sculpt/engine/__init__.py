"""Stack engines: the desired fleet as a stack with history (see ``base.StackEngine``; built by
``registry.engine_for``)."""

from sculpt.engine.base import Command, Diff, SlotChange, StackEngine, StepwiseEngine, diff_fleets

__all__ = ["Command", "Diff", "SlotChange", "StackEngine", "StepwiseEngine", "diff_fleets"]
