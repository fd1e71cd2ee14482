"""The hindsight oracle: hand-computed optima on small traces, brute-force optimality, and agreement with the
simulated cloud's billing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sculpt.providers.sim import SimCloud
from sculpt.replay.oracle import oracle

# tiny catalog: s1, s2, s4 at $1/$2/$4 an hour; 1-hour steps; a move boots for one step (d = 1)


def run(catalog, cpu: list[float]):  # type: ignore[no-untyped-def]
    a = catalog.arrays("r")
    c = np.array(cpu, dtype=np.float64)[:, None]
    return a, oracle(a, c, np.full_like(c, np.nan), np.ones_like(c, dtype=bool), np.array([1.0]), np.array([1]))


def names(a, shapes):  # type: ignore[no-untyped-def]
    return [str(a.names[i]) for i in shapes[:, 0]]


def test_step_up(catalog) -> None:  # type: ignore[no-untyped-def]
    # 10 h at 0.5 cores then 10 h at 1.5: s1 for 10 h ($10), boot s2 during hour 9 ($2), s2 for 10 h ($20)
    a, r = run(catalog, [0.5] * 10 + [1.5] * 10)
    assert r.cost[0] == pytest.approx(32.0)
    assert names(a, r.shapes) == ["s1"] * 10 + ["s2"] * 10
    assert r.switch_cost[:, 0].tolist() == [0.0] * 9 + [2.0] + [0.0] * 10


def test_spike(catalog) -> None:  # type: ignore[no-untyped-def]
    # one hour at 1.5 in 20: up and down again ($19 + $2 + boots $2 + $1) beats s2 throughout ($40)
    cpu = [0.5] * 20
    cpu[10] = 1.5
    a, r = run(catalog, cpu)
    assert r.cost[0] == pytest.approx(24.0)
    assert names(a, r.shapes)[9:12] == ["s1", "s2", "s1"]


def test_daily_cycle_short_and_long(catalog) -> None:  # type: ignore[no-untyped-def]
    # 2 h low / 2 h high: moving costs $3 a cycle to save $2 -> stay on s2 (after the free first choice)
    _, short = run(catalog, [0.5, 0.5, 1.5, 1.5] * 5)
    assert short.cost[0] == pytest.approx(40.0)
    # 6 h low / 6 h high: moving saves $6 for $3 of boots each cycle -> follow the cycle
    a, long = run(catalog, ([0.5] * 6 + [1.5] * 6) * 3)
    assert long.cost[0] == pytest.approx(3 * (6 + 12) + 2 * 3 + 2)  # 3 cycles, 2 downs ($1) + 3 ups ($2)
    assert names(a, long.shapes)[:12] == ["s1"] * 6 + ["s2"] * 6


def brute_force(prices: list[float], caps: list[float], cpu: list[float], d: int) -> float:
    best = float("inf")
    for seq in itertools.product(range(len(prices)), repeat=len(cpu)):
        if any(caps[s] < c for s, c in zip(seq, cpu, strict=True)):
            continue
        cost = sum(prices[s] for s in seq)
        ok = True
        for i in range(1, len(seq)):
            if seq[i] != seq[i - 1]:
                if i < d + 1:
                    ok = False
                    break
                cost += d * prices[seq[i]]
        if ok:
            best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_oracle_is_optimal_against_brute_force(catalog, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    cpu = rng.choice([0.3, 0.9, 1.4, 1.9, 3.5], size=8).tolist()
    _, r = run(catalog, cpu)
    assert r.cost[0] == pytest.approx(brute_force([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], cpu, 1))


def test_oracle_schedule_billed_by_the_simulator_costs_the_same(catalog) -> None:  # type: ignore[no-untyped-def]
    cpu = [0.5] * 6 + [1.5] * 6 + [3.0] * 3 + [0.2] * 9
    a, r = run(catalog, cpu)
    sim = SimCloud(a, initial=r.shapes[0], step_s=np.array([3600.0]), migration_s=3600.0)
    served = []
    for k in range(len(cpu)):
        served.append(int(sim.step(np.array([True]))[0]))
        nxt = k + 1 + 1  # a request after step k serves from step k + d + 1
        if nxt < len(cpu) and r.shapes[nxt, 0] != r.shapes[nxt - 1, 0]:
            assert sim.resize(np.array([0]), r.shapes[nxt:nxt + 1, 0]).all()
    assert served == r.shapes[:, 0].tolist()
    assert sim.cost[0] == pytest.approx(r.cost[0])


def test_sim_refuses_moves_in_flight_and_injects_seeded_capacity_errors(catalog) -> None:  # type: ignore[no-untyped-def]
    a = catalog.arrays("r")
    sim = SimCloud(a, initial=np.zeros(2, dtype=np.int64), step_s=np.array([3600.0, 3600.0]), migration_s=3600.0)
    sim.step(np.array([True, True]))
    assert sim.resize(np.array([0]), np.array([1])).tolist() == [True]
    assert sim.resize(np.array([0]), np.array([2])).tolist() == [False]  # already moving
    assert sim.resize(np.array([1]), np.array([0])).tolist() == [False]  # already there
    outcomes = []
    for _ in range(2):
        s = SimCloud(a, initial=np.zeros(50, dtype=np.int64), step_s=np.full(50, 3600.0), capacity_error_rate=0.5,
                     seed=7)
        outcomes.append(s.resize(np.arange(50), np.ones(50, dtype=np.int64)).tolist())
    assert outcomes[0] == outcomes[1] and 0 < sum(outcomes[0]) < 50
