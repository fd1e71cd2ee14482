"""Benchmark (not a test): the sculptor loop's overhead per tick, excluding model time, for a fleet of N
instances, with the metric source, agent and orchestrator replaced by the test doubles of fakes.py.

    python -m tests.sculptor.bench_loop [--instances 10] [--ticks 500] [--model river]

Prints one JSON object: p50/p95/mean overhead (tick time minus time spent in the model), total and model
time per tick, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from tests.sculptor.fakes import service, spec


def bench(instances: int = 10, ticks: int = 500, model: str = "river", warmup: int = 100) -> dict[str, float]:
    sp = spec(replicas={"min": 1, "max": instances, "desired": instances})
    svc, fleet, source, act, clock = service(model=model, n=instances, sp=sp, mode="recommend")
    over, total, mod = [], [], []
    for k in range(warmup + ticks):
        clock.advance(60.0)
        source.cpu = 0.2 + 0.1 * math.sin(k / 30.0)
        t0 = time.perf_counter()
        r = svc.tick()
        dt = (time.perf_counter() - t0) * 1000.0
        if k >= warmup:
            over.append(dt - r.model_ms)
            total.append(dt)
            mod.append(r.model_ms)
    return {"instances": instances, "ticks": ticks, "model": model,
            "overhead_ms_p50": round(float(np.median(over)), 3),
            "overhead_ms_p95": round(float(np.percentile(over, 95)), 3),
            "overhead_ms_mean": round(float(np.mean(over)), 3),
            "tick_ms_p50": round(float(np.median(total)), 3), "model_ms_p50": round(float(np.median(mod)), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--instances", type=int, default=10)
    p.add_argument("--ticks", type=int, default=500)
    p.add_argument("--model", default="river")
    a = p.parse_args()
    print(json.dumps(bench(a.instances, a.ticks, a.model)))


if __name__ == "__main__":
    main()
