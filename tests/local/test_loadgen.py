"""The load generator against real demo apps behind the real load balancer."""

from __future__ import annotations

import doctest
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sculpt.demoapp.loadgen as loadgen_mod
from sculpt.demoapp.loadgen import LoadGen, rate_shape_from_trace, schedule, verify
from sculpt.demoapp.server import spawn
from sculpt.domain.errors import ConfigError, NotFoundError
from sculpt.providers.local.lb import Backend, LoadBalancer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, int]]]:
    """Two demo apps behind a hash-routing LB (a key always lives on one app): (LB url, app ports)."""
    root = tmp_path_factory.mktemp("fleet")
    procs = {n: spawn(root / n, n) for n in ("a", "b")}
    lb = LoadBalancer(routing="hash")
    lb.set_backends([Backend(n, "127.0.0.1", p) for n, (_, p) in procs.items()])
    host, port = lb.start()
    yield f"http://{host}:{port}", {n: p for n, (_, p) in procs.items()}
    lb.stop()
    for p, _ in procs.values():
        p.terminate()
        p.wait()


@pytest.mark.e2e
def test_200_rps_mixed_through_the_lb_without_failures_or_lost_writes(fleet: tuple[str, dict[str, int]]) -> None:
    url, _ = fleet
    res = LoadGen(url, rate_rps=250, write_ratio=0.5, keys=300, duration_s=2.0, seed=1).run()
    assert res.offered == 500                  # the whole schedule was issued ...
    assert res.requests == 500                 # ... and answered
    assert res.failed == 0 and res.errors == {}
    assert res.reads + res.writes == 500 and res.writes > 150 and res.reads > 150
    assert len(res.acked_writes) > 100
    assert res.stale_reads == 0
    assert 0 < res.p50_ms <= res.p95_ms <= res.p99_ms
    assert verify(url, res) == 0


@pytest.mark.e2e
def test_verify_counts_a_write_lost_behind_the_generators_back(fleet: tuple[str, dict[str, int]]) -> None:
    url, ports = fleet
    res = LoadGen(url, rate_rps=200, write_ratio=1.0, keys=20, duration_s=0.3, seed=2).run()
    assert res.failed == 0 and res.acked_writes
    victim = next(iter(res.acked_writes))
    for port in ports.values():                # clobber the key wherever it lives
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("DELETE", f"/kv/{victim}")
        c.getresponse().read()
        c.close()
    assert verify(url, res) == 1


@pytest.mark.e2e
def test_every_request_fails_when_nothing_is_healthy() -> None:
    lb = LoadBalancer()
    lb.start()
    try:
        host, port = lb.address
        res = LoadGen(f"http://{host}:{port}", rate_rps=100, duration_s=0.2, seed=3).run()
        assert res.requests == res.offered == 20
        assert res.failed == 20 and res.codes == {"502": 20} and not res.acked_writes
    finally:
        lb.stop()


@pytest.mark.e2e
def test_start_and_stop_in_the_background(fleet: tuple[str, dict[str, int]]) -> None:
    url, _ = fleet
    gen = LoadGen(url, rate_rps=200, duration_s=60.0, seed=4)
    gen.start()
    while gen.sent < 40:
        gen._stop.wait(0.01)
    res = gen.stop()
    assert 40 <= res.offered < 200 * 60
    assert res.requests == res.offered and res.failed == 0


@pytest.mark.e2e
def test_cli_prints_json_and_verifies(fleet: tuple[str, dict[str, int]]) -> None:
    url, _ = fleet
    out = subprocess.run([sys.executable, "-m", "sculpt.demoapp.loadgen", url, "--rate", "100", "--duration",
                          "0.5", "--verify", "--json", "--seed", "5"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["requests"] == 50 and data["failed"] == 0 and data["lost_writes"] == 0
    assert {"acked_writes", "p50_ms", "p95_ms", "p99_ms", "duration_s", "achieved_rps"} <= set(data)


def test_schedule_follows_the_rate_shape() -> None:
    offs = schedule(0, 3.0, [10, 0, 20])
    assert len(offs) == 30
    assert sum(1 for t in offs if t < 1) == 10 and sum(1 for t in offs if 1 <= t < 2) == 0
    assert offs == sorted(offs)
    assert len(schedule(123, 2.0, None)) == 246


def test_rate_shape_from_a_generic_csv(tmp_path: Path) -> None:
    vals = [1.0, 2.0, 3.0, 4.0, 0.0, 0.0]
    p = tmp_path / "t.csv"
    p.write_text("timestamp,cpu_cores\n" + "".join(f"{i},{v}\n" for i, v in enumerate(vals)))
    shape = rate_shape_from_trace(p, steps=3, peak_rps=100, min_rps=2)
    means = [sum(vals[i:i + 2]) / 2 for i in range(0, 6, 2)]
    assert shape == [round(max(2, m * 100 / max(means)), 3) for m in means]
    assert shape[1] == 100 and shape[2] == 2
    assert rate_shape_from_trace(p, steps=12, peak_rps=10, min_rps=0)[:2] == [2.5, 2.5]   # stretched


def test_rate_shape_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="To fix"):
        rate_shape_from_trace(tmp_path / "missing.csv", 10, 100)
    p = tmp_path / "odd.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="column"):
        rate_shape_from_trace(p, 10, 100)


@pytest.mark.data
def test_rate_shape_from_real_traces(bitbrains: Path, shared_data: Path) -> None:
    bb = rate_shape_from_trace(bitbrains / "vm_102.csv.gz", steps=48, peak_rps=400, rows=288)
    nab_file = sorted((shared_data / "traces" / "nab").glob("*.csv"))[0]
    nab = rate_shape_from_trace(nab_file, steps=30, peak_rps=250)
    for shape, steps, peak in ((bb, 48, 400), (nab, 30, 250)):
        assert len(shape) == steps and max(shape) == peak and min(shape) >= 1
        assert len(set(shape)) > 3                  # a shape, not a constant


def test_doctests() -> None:
    for mod in (loadgen_mod,):
        failed, attempted = doctest.testmod(mod)
        assert attempted > 0 and failed == 0


@pytest.mark.e2e
def test_blue_green_handover_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """The morph's data path, done by hand: bulk copy, pause, final delta, shift, resume — under load."""
    import json as _json

    def call(port: int, method: str, path: str, body: bytes | None = None) -> bytes:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request(method, path, body=body)
            r = c.getresponse()
            data = r.read()
            assert r.status == 200, (path, r.status, data)
            return data
        finally:
            c.close()

    blue_p, blue = spawn(tmp_path / "blue", "blue")
    green_p, green = spawn(tmp_path / "green", "green")
    lb = LoadBalancer(pause_max_ms=5000)
    lb.set_backends([Backend("blue", "127.0.0.1", blue, 100), Backend("green", "127.0.0.1", green, 0)])
    host, port = lb.start()
    url = f"http://{host}:{port}"
    try:
        gen = LoadGen(url, rate_rps=200, write_ratio=0.6, keys=200, duration_s=2.5, seed=7)
        gen.start()
        while gen.sent < 150:
            gen._stop.wait(0.01)
        bulk = _json.loads(call(blue, "GET", "/checkpoint"))
        call(green, "POST", "/restore", _json.dumps(bulk).encode())
        lb.pause()
        assert lb.wait_idle("blue", 5.0)
        call(blue, "POST", "/admin/readonly?on=1")
        delta = call(blue, "GET", f"/checkpoint?since={bulk['seq']}")
        call(green, "POST", "/restore", delta)
        lb.set_backends([Backend("blue", "127.0.0.1", blue, 0), Backend("green", "127.0.0.1", green, 100)])
        lb.resume()
        res = gen.wait(60)
        assert res is not None
        assert res.requests == res.offered == 500
        assert res.failed == 0 and res.stale_reads == 0
        assert verify(url, res) == 0
        st = lb.stats()["backends"]
        assert st["blue"]["requests"] > 0 and st["green"]["requests"] > 0
    finally:
        lb.stop()
        for p in (blue_p, green_p):
            p.terminate()
            p.wait()
