"""Names for the numpy array types that sculpt passes between layers.

Why it exists: the forecast, decision and replay code hands whole fleets around as numpy columns; naming
the element type (``FloatArray`` for measurements in cores/GiB/seconds/dollars, ``IntArray`` for row
indices and counters, ``BoolArray`` for masks) lets mypy tell a mask from a measurement.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

FloatArray: TypeAlias = NDArray[np.float64]
IntArray: TypeAlias = NDArray[np.int64]
BoolArray: TypeAlias = NDArray[np.bool_]

__all__ = ["BoolArray", "FloatArray", "IntArray"]
