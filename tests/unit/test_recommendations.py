"""VPA-style recommendations: per instance, the ``lower_bound`` / ``target`` / ``upper_bound`` shapes - the
cheapest allowed shapes that fit the forecast with probability 5 % / 50 % / 95 %, from the one shape
distribution (``sculpt.decide.distribution``) - with ``why``.

Through the real paths: the live loop (real river model, real local catalog) fed a real Bitbrains VM's
demand tick by tick and read through the API's ``GET /v1/fleets/{name}``; the model checkpoint a watcher
leaves in a real ledger, read back by ``sculpt status --json`` on a running local stack."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.app.api import create_app, serve
from sculpt.app.status import BOUNDS, LEVELS, checkpoint_recommendations, recommend
from sculpt.catalog import load_catalog
from sculpt.cli.main import app
from sculpt.decide.decision import family_mask
from sculpt.decide.distribution import Fit, fit_probabilities, shape_distribution
from sculpt.domain.fleet import SlotInfo
from sculpt.forecast import persist
from sculpt.forecast.traces import read_trace
from sculpt.ledger import Ledger
from sculpt.loop.service import SculptorService, checkpoint_key
from tests.sculptor.fakes import service, spec

ARRAYS = load_catalog("local").arrays("local-a")
ALL = family_mask(ARRAYS, None)
NAMES = [str(n) for n in ARRAYS.names]
SIZE = {str(n): (float(c), float(m)) for n, c, m in zip(ARRAYS.names, ARRAYS.vcpu, ARRAYS.memory_gib, strict=True)}


def demand(cpu: tuple[float, float], mem: tuple[float, float]) -> Fit:
    """One stream's forecast: (p50, p95) of CPU cores and of memory GiB (the interval's top = p95)."""
    a = [np.array([float(v)]) for v in (cpu[0], cpu[1], cpu[1], mem[0], mem[1], mem[1])]
    return Fit(*a)


def one(fc: Fit, current: str | None = None, allowed: np.ndarray = ALL, cap: float = 0.8) -> dict[str, Any]:
    (rec,) = recommend(ARRAYS, allowed, cap, fc, [current], confidence=np.array([0.7]))
    return rec


def check(rec: dict[str, Any], cap: float, allowed: np.ndarray = ALL) -> None:
    """Bounds in price order; each is the cheapest allowed shape whose fit probability (the distribution's)
    reaches its level, or, when none does, ``why`` says the likeliest is named; a found target and upper
    bound hold the demand's p50 and p95 at ``cap``; the cores/memory given are the shape's; why is one line."""
    idx = [NAMES.index(rec[b]["shape"]) for b in BOUNDS]
    assert idx == sorted(idx), rec  # never a cheaper shape for a higher level: the bounds cannot cross
    d = rec["demand"]
    for b, level, key in zip(BOUNDS, LEVELS, (None, "p50", "p95"), strict=True):
        j = NAMES.index(rec[b]["shape"])
        cores, mem = SIZE[rec[b]["shape"]]
        assert bool(allowed[j]) and (rec[b]["cpu_cores"], rec[b]["memory_gib"]) == (cores, mem)
        if rec[b]["p_fit"] >= level:
            assert all(rec["distribution"].get(NAMES[k], 0.0) < 1.0 for k in range(j))
            if key is not None:
                assert cores * cap >= d["cpu_cores"][key] * (1 - 1e-3), (b, rec)
        else:
            assert "likeliest to fit" in rec["why"], rec
    assert rec["why"] and "\n" not in rec["why"] and rec["target"]["shape"] in rec["why"]
    dist, total = rec["distribution"], sum(rec["distribution"].values())
    if not dist:  # no allowed shape can fit at all
        assert "likeliest to fit" in rec["why"] and rec["target"]["p_fit"] < 1e-4, rec
    else:  # the 5 likeliest shapes of a distribution over the allowed shapes
        assert total <= 1 + 1e-9 and (len(dist) == 5 or math.isclose(total, 1.0)), rec
        assert {NAMES.index(n) for n in dist} <= set(np.flatnonzero(allowed)), rec


def test_bounds_are_the_cheapest_shapes_fitting_at_5_50_95_percent() -> None:
    fc = demand(cpu=(0.6, 1.5), mem=(0.3, 0.9))
    rec = one(fc, "std-0.5c-512m")
    p = fit_probabilities(ARRAYS, fc, 0.8)[0]
    for b, level in zip(BOUNDS, LEVELS, strict=True):  # the definition, against the fit probabilities
        j = NAMES.index(rec[b]["shape"])
        assert p[j] >= level and all(p[k] < level for k in range(j)), (b, rec)
        assert rec[b]["p_fit"] == pytest.approx(p[j], abs=1e-4)
    assert [rec[b]["shape"] for b in BOUNDS] == ["std-0.5c-512m", "std-1c-1024m", "std-2c-2048m"]
    assert rec["target"] == {"shape": "std-1c-1024m", "cpu_cores": 1.0, "memory_gib": 1.0, "usd_per_hour": 0.045,
                             "p_fit": pytest.approx(float(p[NAMES.index("std-1c-1024m")]), abs=1e-4)}
    assert rec["distribution"] == shape_distribution(ARRAYS, fc, 0, allowed=ALL, cap=0.8)  # the Plan's formula
    assert "runs std-0.5c-512m now" in rec["why"] and "confidence 70%" in rec["why"]
    check(rec, 0.8)
    # memory picks the shape too: 1.5 GiB at 80 % needs a memory-optimised 0.5-core shape, not 2 cores
    assert one(demand(cpu=(0.2, 0.3), mem=(1.5, 1.6)))["target"]["shape"] == "mem-0.5c-2048m"


def test_no_forecast_no_bounds_and_too_much_demand_names_the_likeliest() -> None:
    none = one(demand(cpu=(math.nan, math.nan), mem=(math.nan, math.nan)), "std-1c-1024m")
    assert all(none[b] is None for b in BOUNDS) and "no forecast yet" in none["why"] and none["distribution"] == {}
    std = family_mask(ARRAYS, ["local-std"])
    big = one(demand(cpu=(1.5, 9.0), mem=(0.1, 0.1)), allowed=std)
    assert big["upper_bound"]["shape"] == "std-2c-2048m" and "likeliest to fit" in big["why"]
    huge = one(demand(cpu=(40.0, 60.0), mem=(0.1, 0.1)), allowed=std)  # nothing can fit at all: the largest
    assert {huge[b]["shape"] for b in BOUNDS} == {"std-2c-2048m"} and huge["distribution"] == {}
    unpriced = recommend(ARRAYS, np.zeros(len(ARRAYS), dtype=bool), 0.8, demand((1.0, 1.2), (0.5, 0.6)), [None])
    assert unpriced[0]["target"] is None and "no allowed shape has a price" in unpriced[0]["why"]


finite = st.floats(0, 4, allow_nan=False)
maybe = st.one_of(finite, st.just(math.nan))


@settings(max_examples=300, deadline=None)
@given(cpu=st.tuples(finite, maybe), mem=st.tuples(maybe, maybe), cap=st.floats(0.3, 1.0),
       k=st.floats(1.0, 3.0), families=st.sampled_from([None, ["local-std"], ["local-mem"]]))
def test_bounds_never_cross_and_grow_with_demand(cpu: tuple[float, float], mem: tuple[float, float], cap: float,
                                                 k: float, families: list[str] | None) -> None:
    """Whatever the forecast (even a p95 below the median, NaN memory), the bounds are in price order, and
    the same demand scaled up never gets a cheaper bound."""
    allowed = family_mask(ARRAYS, families)
    fc = Fit(*(np.array([v, v * k]) for v in (cpu[0], cpu[1], cpu[1], mem[0], mem[1], mem[1])))
    recs = recommend(ARRAYS, allowed, cap, fc, [None, None])
    if math.isnan(cpu[1]):  # no CPU p95: no usable forecast (the decision holds on it as bad input)
        assert all(r[b] is None for r in recs for b in BOUNDS) and "no forecast yet" in recs[0]["why"]
        return
    for rec in recs:
        check(rec, cap, allowed)
    for b in BOUNDS:
        assert NAMES.index(recs[1][b]["shape"]) >= NAMES.index(recs[0][b]["shape"]), (b, recs)


# -- a real VM's demand through the live loop ------------------------------------------------------------------
class TraceSource:
    """Stands in for the metric backend: serves one real trace's CPU and memory, a sample per tick."""

    keeps_history = False

    def __init__(self, cpu: np.ndarray, mem: np.ndarray) -> None:
        self.cpu, self.mem, self.i = cpu, mem, 0

    def history(self, slots: Sequence[SlotInfo], start: float, end: float, step: float) -> dict[str, list[Any]]:
        return {}

    def latest(self, slots: Sequence[SlotInfo], now: float) -> dict[str, dict[str, float]]:
        c, m = float(self.cpu[self.i % len(self.cpu)]), float(self.mem[self.i % len(self.mem)])
        self.i += 1
        return {s.id: {"cpu_cores": c, "mem_gib": m} for s in slots}


def learned_service(bitbrains: Path, ticks: int = 288) -> SculptorService:
    """A day of a real VM at its 5-minute steps (memory scaled to fit the local catalog's shapes)."""
    tr = read_trace(sorted(bitbrains.glob("vm_*.csv.gz"))[0])
    cpu = np.nan_to_num(tr.cpu[:ticks])
    mem = np.nan_to_num(tr.mem[:ticks]) * 0.25
    sp = spec(families=["local-std", "local-mem"])
    svc, _, _, _, clock = service(mode="recommend", sp=sp)
    svc.port.readings = TraceSource(cpu, mem)
    for _ in range(ticks):
        clock.advance(300.0)
        svc.tick()
    return svc


@pytest.mark.data
def test_the_api_recommends_from_a_real_trace(bitbrains: Path) -> None:
    svc = learned_service(bitbrains)
    server = serve(create_app({"web": svc}, token="t"), "127.0.0.1:0")
    try:
        fleet = httpx.get(f"http://{server.address}/v1/fleets/web", timeout=10).json()
    finally:
        server.stop()
    (inst,) = fleet["instances"]
    rec = inst["recommendation"]
    check(rec, svc.spec.slo.max_utilisation)
    assert rec["current"] == inst["shape"] and rec["utilisation_cap"] == 0.8
    # the demand is the forecast the decision sees (the instance's floored p50; p95 raised to the interval's top)
    d = rec["demand"]["cpu_cores"]
    assert d["p50"] == pytest.approx(inst["forecast"]["cpu_p50"], abs=1e-3)
    assert d["p95"] >= inst["forecast"]["cpu_p95"] - 1e-3 and d["p95"] >= d["p50"] > 0
    # one distribution: the recommendation's is the plan's the instance line shows
    top = [{"shape": s, "p": round(p, 4)} for s, p in list(rec["distribution"].items())[:3]]
    assert top == inst["top_shapes"] and top
    assert rec["confidence"] == pytest.approx(inst["confidence"], abs=1e-3) and rec["confidence"] > 0


@pytest.mark.data
def test_checkpointed_model_recommends_for_status(bitbrains: Path, tmp_path: Path) -> None:
    """What ``sculpt status`` reads: the model the watcher saved in the ledger, forecast for the slots."""
    svc = learned_service(bitbrains)
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        persist.save(ledger, checkpoint_key("web"), svc.guard.primary)
        w = type("W", (), {"spec": svc.spec, "stack": "web", "ledger": ledger, "catalog": svc.catalog})()
        recs, notes = checkpoint_recommendations(w, [{"id": "web-0", "shape": "std-0.5c-512m", "region": "local-a"}])
        assert notes == [] and set(recs) == {"web-0"}
        check(recs["web-0"], 0.8)
        assert "checkpointed" in recs["web-0"]["why"]
        # the same model forecasting the same stream directly: the target holds that median
        fc = svc.guard.primary.forecast_many(["web#0"], 3600.0)
        assert recs["web-0"]["demand"]["cpu_cores"]["p50"] == pytest.approx(float(fc.cpu_p50[0]), abs=1e-4)
        empty = Ledger(tmp_path / "empty.db")
        w.ledger = empty
        assert checkpoint_recommendations(w, [{"id": "web-0", "shape": "std-0.5c-512m"}])[0] == {}
        assert "sculpt watch" in checkpoint_recommendations(w, [{"id": "web-0"}])[1][0]
        empty.close()
    finally:
        ledger.close()


@pytest.mark.e2e
@pytest.mark.data
def test_status_json_shows_the_recommendation_of_a_running_stack(bitbrains: Path, sculpt_home: Path,
                                                                  tmp_path: Path) -> None:
    """``sculpt up`` a real local stack, leave a watcher's checkpoint in its ledger, read ``status``."""
    from tests.e2e.cli_user import Cli, dead

    cli = Cli(tmp_path / "proj" / "sculpt.yaml")
    cli("init")
    try:
        before = cli.json("up")
        assert before["result"] == "succeeded"
        st = cli.json("status")
        assert st["instances"][0]["recommendation"] is None
        assert "sculpt watch" in st["recommendations_note"] and st["notes"] == []
        svc = learned_service(bitbrains)
        ledger = Ledger.for_spec(cli.spec)
        try:
            persist.save(ledger, checkpoint_key(st["stack"]), svc.guard.primary)
        finally:
            ledger.close()
        st = cli.json("status")
        (inst,) = st["instances"]
        rec = inst["recommendation"]
        check(rec, 0.8)
        assert rec["current"] == inst["shape"] and st["recommendations_note"] is None
        text = cli("status").stdout
        assert "recommended shapes" in text and rec["target"]["shape"] in text
    finally:
        cli.runner.invoke(app, ["down", "--spec", str(cli.spec)])
        assert all(dead(p) for p in cli.pids)
