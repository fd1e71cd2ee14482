"""Fixtures for the Pulumi tests: fleets, and Pulumi mocks (tests needing the SDK skip without it)."""

from __future__ import annotations

from typing import Any

import pytest

from sculpt.domain.fleet import Fleet, Slot
from sculpt.domain.spec import parse_spec


@pytest.fixture
def mocks() -> Any:
    """Install fresh Pulumi mocks (not a preview: apply callbacks run) and reset them afterwards."""
    pulumi = pytest.importorskip("pulumi", reason="the aws/gcp extras are not installed")
    from tests.pulumi.mocks import CloudMocks

    m = CloudMocks()
    pulumi.runtime.set_mocks(m, project="sculpt", stack="test", preview=False)
    yield m
    pulumi.runtime.settings.reset_options()


def make_fleet(provider: str = "aws", *, slots: list[tuple[str, str, str, int]] | None = None,
               **spec_fields: Any) -> Fleet:
    """A fleet on ``provider`` with ``slots`` as (id, shape, colour, weight)."""
    region = "us-east-1" if provider == "aws" else "us-central1"
    shape = "m6i.large" if provider == "aws" else "n2-standard-2"
    spec = parse_spec({"fleet": "web", "engine": "pulumi", "provider": provider, "shape": shape,
                       "region": region, "tags": {"team": "core"}, **spec_fields})
    fleet = Fleet.from_spec(spec)
    if slots is not None:
        fleet = fleet.with_slots([Slot(id=i, shape=s, region=region, colour=c, weight=w)  # type: ignore[arg-type]
                                  for i, s, c, w in slots])
    return fleet
