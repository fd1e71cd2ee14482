"""The Provider port: where a stack's instances really live (local processes, a simulator, a cloud).

Engines turn a versioned ``Fleet`` into provider calls; a provider makes it real and reports what runs.
``capabilities()`` tells the engine and the decision whether a shape change can happen in place
(``live_resize``) and how strictly shapes are enforced (``enforcement``: ``cgroup-v1``, ``cgroup-v2``,
``affinity+rlimit`` locally; ``hypervisor`` in a cloud; ``simulated`` in replay).
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

from sculpt.domain.fleet import Fleet


class Capabilities(TypedDict):
    live_resize: bool
    enforcement: str


class Provider(Protocol):
    """Makes fleets real. Every method raises ``ProviderError`` (with a fix hint) when it cannot."""

    name: str

    def apply(self, fleet: Fleet) -> dict[str, Any]:
        """Reconcile to ``fleet``; return ``status()`` once every slot is healthy."""
        ...

    def status(self) -> dict[str, Any] | None:
        """What runs now (``{"lb": {"address"}, "instances": [...]}``), or ``None`` when nothing does."""
        ...

    def destroy(self) -> None:
        """Stop everything of the stack (idempotent)."""
        ...

    def capabilities(self) -> Capabilities:
        ...

    def running(self) -> bool:
        """Whether anything of the stack runs (an agent answers, locally)."""
        ...
