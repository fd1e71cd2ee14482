"""Fixtures of the state-safety tests: throwaway local stacks that are always torn down (load stopped,
``sculpt down``, and any process of the stack's directory still alive then is killed so nothing leaks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sculpt.cli.chaos import ChaosStack
from tests.statesafety.harness import Live


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[..., ChaosStack]]:
    """``stacks(name="web", replicas=1, routing="weighted", env=None, spec=None)`` -> a new ChaosStack (not up)."""
    made: list[ChaosStack] = []

    def make(name: str = "web", **kw: Any) -> ChaosStack:
        s = ChaosStack(tmp_path / f"stack{len(made)}", name, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.teardown(grace_s=2.0)


@pytest.fixture
def live(stacks: Callable[..., ChaosStack]) -> Iterator[Callable[..., Live]]:
    """``live(seed=0, **stack options)`` -> a stack that is up with the steady load running."""
    made: list[Live] = []

    def make(seed: int = 0, **kw: Any) -> Live:
        lv = Live(stacks(**kw), seed=seed)
        made.append(lv)
        return lv

    yield make
    for lv in made:
        lv.load.stop()
