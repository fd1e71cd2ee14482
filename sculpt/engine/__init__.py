"""Stack engines: the desired fleet as a stack with history (see ``base.StackEngine``)."""

from sculpt.engine.base import Diff, SlotChange, StackEngine, diff_fleets

__all__ = ["Diff", "SlotChange", "StackEngine", "diff_fleets"]
