"""VPA-style recommendations: per instance, the ``lower_bound`` / ``target`` / ``upper_bound`` shapes from
the forecast interval's low / median / high, with ``why``.

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
from sculpt.app.sculptor import SculptorService, SlotInfo, checkpoint_key
from sculpt.app.status import BOUNDS, Demand, checkpoint_recommendations, recommend
from sculpt.catalog import load_catalog
from sculpt.cli.main import app
from sculpt.decide.decision import family_mask
from sculpt.forecast import persist
from sculpt.forecast.traces import read_trace
from sculpt.ledger import Ledger
from tests.sculptor.fakes import service, spec

ARRAYS = load_catalog("local").arrays("local-a")
ALL = family_mask(ARRAYS, None)
SIZE = {str(n): (float(c), float(m)) for n, c, m in zip(ARRAYS.names, ARRAYS.vcpu, ARRAYS.memory_gib, strict=True)}


def sizes(rec: dict[str, Any]) -> list[tuple[float, float]]:
    return [SIZE[rec[b]["shape"]] for b in BOUNDS]


def check(rec: dict[str, Any], cap: float) -> None:
    """lower <= target <= upper by shape size; each bound's shape holds its demand when any allowed does;
    the cores/memory given are the shape's; why is one line."""
    lo, tg, hi = sizes(rec)
    assert lo <= tg <= hi, rec
    assert lo[0] <= tg[0] <= hi[0], rec  # cores never go down from one bound to the next
    for b, key in zip(BOUNDS, ("low", "point", "high"), strict=True):
        cores, mem = SIZE[rec[b]["shape"]]
        assert (rec[b]["cpu_cores"], rec[b]["memory_gib"]) == (cores, mem)
        need = rec["demand"]["cpu_cores"][key]
        if need <= max(c for c, _ in SIZE.values()) * cap:
            assert cores * cap >= need - 1e-4, (b, rec)  # the demand shown is rounded to 4 places
    assert rec["why"] and "\n" not in rec["why"] and rec["target"]["shape"] in rec["why"]


def test_bounds_follow_the_interval() -> None:
    rec = recommend(ARRAYS, ALL, 0.8, Demand(cpu=(0.1, 0.6, 1.5), mem=(0.1, 0.3, 0.9)), "std-0.5c-512m")
    assert [rec[b]["shape"] for b in BOUNDS] == ["std-0.25c-256m", "std-1c-1024m", "std-2c-2048m"]
    assert rec["target"] == {"shape": "std-1c-1024m", "cpu_cores": 1.0, "memory_gib": 1.0, "usd_per_hour": 0.045}
    assert "runs std-0.5c-512m now" in rec["why"]
    check(rec, 0.8)
    # memory picks the shape too: 1.5 GiB at 80 % needs a memory-optimised 0.5-core shape, not 2 cores
    rec = recommend(ARRAYS, ALL, 0.8, Demand(cpu=(0.1, 0.2, 0.3), mem=(1.0, 1.5, 1.6)), None)
    assert rec["target"]["shape"] == "mem-0.5c-2048m"


def test_no_forecast_no_bounds_and_too_much_demand_names_the_largest() -> None:
    none = recommend(ARRAYS, ALL, 0.8, Demand(cpu=(math.nan,) * 3, mem=(math.nan,) * 3), "std-1c-1024m")
    assert all(none[b] is None for b in BOUNDS) and "no forecast yet" in none["why"]
    big = recommend(ARRAYS, family_mask(ARRAYS, ["local-std"]), 0.8, Demand(cpu=(1.0, 1.5, 9.0), mem=(0.1,) * 3),
                    None)
    assert big["upper_bound"]["shape"] == "std-2c-2048m" and "largest" in big["why"]


finite = st.floats(0, 4, allow_nan=False)
maybe = st.one_of(finite, st.just(math.nan))


@settings(max_examples=300, deadline=None)
@given(cpu=st.tuples(maybe, finite, maybe), mem=st.tuples(maybe, maybe, maybe), cap=st.floats(0.3, 1.0),
       families=st.sampled_from([None, ["local-std"], ["local-mem"]]))
def test_bounds_never_cross(cpu: tuple[float, float, float], mem: tuple[float, float, float], cap: float,
                            families: list[str] | None) -> None:
    """Whatever the interval (even a low above the median, NaN memory), the bounds are ordered by size."""
    rec = recommend(ARRAYS, family_mask(ARRAYS, families), cap, Demand(cpu=cpu, mem=mem), None)
    check(rec, cap)


# -- a real VM's demand through the live loop ------------------------------------------------------------------
class TraceSource:
    """Stands in for the metric backend: serves one real trace's CPU and memory, a sample per tick."""

    def __init__(self, cpu: np.ndarray, mem: np.ndarray) -> None:
        self.cpu, self.mem, self.i = cpu, mem, 0

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
    # the median and high are the forecast the decision sees (the instance's floored p50/p95)
    assert rec["demand"]["cpu_cores"]["point"] == pytest.approx(inst["forecast"]["cpu_p50"], abs=1e-3)
    assert rec["demand"]["cpu_cores"]["high"] == pytest.approx(inst["forecast"]["cpu_p95"], abs=1e-3)
    d = rec["demand"]["cpu_cores"]
    assert d["low"] <= d["point"] <= d["high"] and d["high"] > 0
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
        assert recs["web-0"]["demand"]["cpu_cores"]["point"] == pytest.approx(float(fc.cpu_p50[0]), abs=1e-4)
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
