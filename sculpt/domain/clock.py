"""Time is a parameter: production code takes a ``Clock``; tests pass a ``FakeClock`` that never sleeps.

>>> c = FakeClock(100.0)
>>> c.sleep(3600); c.now()
3700.0
"""

from __future__ import annotations

import time
from typing import Protocol

from sculpt.domain.errors import ConfigError


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (or since the simulation's start)."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that advances only when told to (``sleep`` or ``advance``)."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._t += float(seconds)


class ScaledClock:
    """A clock whose ``now`` runs ``factor`` times faster than the wall clock (``sculpt demo``'s compressed
    time: with factor 300 one real second is five model minutes). ``sleep`` waits the real time that
    corresponds to the model seconds asked for."""

    def __init__(self, factor: float, start: float | None = None, base: Clock | None = None) -> None:
        if not factor > 0:
            raise ConfigError(f"time factor {factor} must be positive", "pass a factor above 0")
        self.factor = float(factor)
        self.base = base or SystemClock()
        self._real0 = self.base.monotonic()
        self._t0 = self.base.now() if start is None else float(start)

    def now(self) -> float:
        return self._t0 + (self.base.monotonic() - self._real0) * self.factor

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds / self.factor)
