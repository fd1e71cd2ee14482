"""The cold-start prior and the river model do not import each other (issue 12 named the circle), and
priors pickled before the split still load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest


def test_the_prior_and_the_river_model_do_not_import_each_other() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("sculpt", cache_dir=None)
    prior, river = "sculpt.forecast.prior", "sculpt.forecast.river_model"
    # prior.holdout replays the river model; the river model needs only the prior model
    assert graph.find_shortest_chain(importer=prior, imported=river) is not None
    assert graph.find_shortest_chain(importer=river, imported=prior) is None
    assert graph.direct_import_exists(importer=river, imported="sculpt.forecast.prior_model")


class _Median:
    """Stands in for a fitted GBM (the prior only calls ``predict``)."""

    def __init__(self, v: float) -> None:
        self.v = v

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.v)


def test_a_prior_pickled_under_its_old_module_name_still_loads(tmp_path: Path) -> None:
    from sculpt.forecast import prior as prior_mod
    from sculpt.forecast.prior_model import FORMAT, Prior, load_prior

    p = Prior({k: _Median(0.1) for k in ("c50", "c95", "m50", "m95")}, "web", 12)
    blob = pickle.dumps({"format": FORMAT, "prior": p}, protocol=0)  # text opcodes: names are not sized
    old = blob.replace(b"sculpt.forecast.prior_model", b"sculpt.forecast.prior")  # as files written before
    assert old != blob
    path = tmp_path / "web.prior"
    path.write_bytes(old)
    got = prior_mod.load_prior(path)
    assert isinstance(got, Prior) and (got.profile, got.rows) == ("web", 12)
    assert load_prior is prior_mod.load_prior
