"""The loop's tests use replay's tiny catalog and stub predictor."""

from tests.replay.conftest import catalog, stub_predictor  # noqa: F401 - fixtures, by name
