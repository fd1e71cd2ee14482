"""The demo app as users run it: a real ``python -m sculpt.demoapp`` process spoken to over real sockets."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from sculpt.demoapp.server import spawn

pytestmark = pytest.mark.e2e

Spawn = Callable[..., tuple[Popen[bytes], int]]


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Spawn]:
    procs: list[Popen[bytes]] = []

    def start(name: str = "a", data_dir: Path | None = None, *extra: str) -> tuple[Popen[bytes], int]:
        proc, port = spawn(data_dir or tmp_path / name, name, extra_args=list(extra))
        procs.append(proc)
        return proc, port

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_kv_round_trip_over_one_keep_alive_connection(start_app: Spawn) -> None:
    _, port = start_app()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        seqs = []
        raw = b"\x00\xff bytes \xe2\x82\xac"
        for key, value in (("a", b"hello"), ("b", raw), ("a", b"again")):
            c.request("PUT", f"/kv/{key}", body=value)
            r = c.getresponse()
            assert r.status == 200
            seqs.append(json.loads(r.read())["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        for key, want in (("a", b"again"), ("b", raw)):
            c.request("GET", f"/kv/{key}")
            r = c.getresponse()
            assert (r.status, r.read()) == (200, want)
        c.request("GET", "/kv/never")
        r = c.getresponse()
        assert r.status == 404
        r.read()
        c.request("DELETE", "/kv/a")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["seq"] > seqs[-1]
        c.request("GET", "/kv/a")
        r = c.getresponse()
        assert r.status == 404
        assert r.getheader("X-Served-By") == "a"
        r.read()
    finally:
        c.close()
    assert call(port, "GET", "/healthz") == (200, b"ok\n")


def test_checkpoint_delta_and_restore_between_two_processes(start_app: Spawn) -> None:
    _, blue = start_app("blue")
    _, green = start_app("green")
    for i in range(5):
        assert call(blue, "PUT", f"/kv/k{i}", f"v{i}".encode())[0] == 200
    status, body = call(blue, "GET", "/checkpoint")
    full = json.loads(body)
    assert status == 200 and full["items"] == {f"k{i}": f"v{i}" for i in range(5)}
    status, body = call(green, "POST", "/restore", json.dumps(full).encode())
    assert status == 200 and json.loads(body) == {"seq": full["seq"], "keys": 5}

    # writes after the checkpoint, then the final delta
    call(blue, "PUT", "/kv/k1", b"changed")
    call(blue, "PUT", "/kv/new", b"n")
    call(blue, "DELETE", "/kv/k4")
    delta = json.loads(call(blue, "GET", f"/checkpoint?since={full['seq']}")[1])
    assert delta["items"] == {"k1": "changed", "new": "n"}
    assert delta["deleted"] == ["k4"]
    status, body = call(green, "POST", "/restore", json.dumps(delta).encode())
    assert status == 200 and json.loads(body)["keys"] == 5
    blue_now = json.loads(call(blue, "GET", "/checkpoint")[1])
    green_now = json.loads(call(green, "GET", "/checkpoint")[1])
    assert green_now["items"] == blue_now["items"]
    assert green_now["seq"] >= blue_now["seq"]
    # green carries on numbering after blue's last write
    assert json.loads(call(green, "PUT", "/kv/after", b"x")[1])["seq"] > blue_now["seq"]
    assert call(green, "POST", "/restore", b"not json")[0] == 400


def test_readonly_mode_refuses_writes_but_serves_reads(start_app: Spawn) -> None:
    _, port = start_app()
    call(port, "PUT", "/kv/a", b"1")
    status, body = call(port, "POST", "/admin/readonly?on=1")
    assert status == 200 and json.loads(body)["readonly"] is True
    assert call(port, "PUT", "/kv/a", b"2")[0] == 503
    assert call(port, "DELETE", "/kv/a")[0] == 503
    assert call(port, "GET", "/kv/a") == (200, b"1")
    call(port, "POST", "/admin/readonly?on=0")
    assert call(port, "PUT", "/kv/a", b"3")[0] == 200
    assert call(port, "GET", "/kv/a") == (200, b"3")


def test_acknowledged_writes_survive_kill_9_and_restart(start_app: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, port = start_app("a", data)
    acked = {}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(200):
        c.request("PUT", f"/kv/k{i % 50}", body=f"value-{i}".encode())
        r = c.getresponse()
        if r.status == 200:
            acked[f"k{i % 50}"] = f"value-{i}"
        r.read()
    c.close()
    last_seq = json.loads(call(port, "GET", "/checkpoint")[1])["seq"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, port2 = start_app("a2", data)
    after = json.loads(call(port2, "GET", "/checkpoint")[1])
    assert after["items"] == acked
    assert after["seq"] == last_seq == 200
    assert json.loads(call(port2, "PUT", "/kv/next", b"x")[1])["seq"] == 201


def test_torn_last_wal_line_is_ignored(start_app: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wal.log").write_text('{"s":1,"k":"a","v":"x"}\n{"s":2,"k":"b","v":"y"}\n{"s":3,"k":"c","v')
    _, port = start_app("a", data)
    assert json.loads(call(port, "GET", "/checkpoint")[1]) == {"seq": 2, "items": {"a": "x", "b": "y"},
                                                              "deleted": []}


def parse_prometheus(text: str) -> dict[str, float]:
    """Sample -> value, read by ``prometheus_client``'s parser (it raises on a malformed line); the key is
    the sample name with its labels sorted (``name{a="1",b="2"}``). Every family must hold samples."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        assert fam.samples, f"family {fam.name} has no samples"
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def test_metrics_parse_and_count_requests(start_app: Spawn) -> None:
    _, port = start_app()
    for i in range(7):
        call(port, "PUT", f"/kv/k{i}", b"x")
    call(port, "GET", "/kv/missing")
    status, body = call(port, "GET", "/work?ms=30")
    assert status == 200 and json.loads(body)["cpu_ms"] >= 30
    status, text = call(port, "GET", "/metrics")
    assert status == 200
    m = parse_prometheus(text.decode())
    assert m['demoapp_requests_total{code="200",endpoint="kv"}'] == 7
    assert m['demoapp_requests_total{code="404",endpoint="kv"}'] == 1
    assert m['demoapp_requests_total{code="200",endpoint="work"}'] == 1
    assert m['demoapp_info{instance_id="a"}'] == 1
    assert m["demoapp_keys"] == 7 and m["demoapp_seq"] == 7
    assert m["demoapp_in_flight"] == 1  # this scrape
    assert m["process_cpu_seconds_total"] >= 0.03
    assert m["process_resident_memory_bytes"] > 1e6
    buckets = [v for k, v in m.items() if k.startswith("demoapp_request_duration_seconds_bucket")]
    assert buckets == sorted(buckets)
    assert buckets[-1] == m["demoapp_request_duration_seconds_count"] == 9


def test_sigterm_finishes_in_flight_work_then_exits_0(start_app: Spawn) -> None:
    proc, port = start_app()
    result: list[tuple[int, bytes]] = []
    t = threading.Thread(target=lambda: result.append(call(port, "GET", "/work?ms=400")))
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:   # wait until the work request is being served
        if parse_prometheus(call(port, "GET", "/metrics")[1].decode())["demoapp_in_flight"] >= 2:
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    t.join(timeout=10)
    assert result and result[0][0] == 200
    with pytest.raises(OSError):
        call(port, "GET", "/healthz")


def test_bad_requests_are_answered_not_crashed(start_app: Spawn) -> None:
    _, port = start_app()
    assert call(port, "GET", "/work?ms=abc")[0] == 400
    assert call(port, "GET", "/work?ms=999999")[0] == 400
    assert call(port, "GET", "/checkpoint?since=x")[0] == 400
    assert call(port, "GET", "/nope")[0] == 404
    assert call(port, "POST", "/admin/readonly?on=maybe")[0] == 400
    assert call(port, "GET", "/healthz")[0] == 200


def test_a_long_wal_is_compacted_on_restart_keeping_state_and_deltas(start_app: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, port = start_app("a", data)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(1500):
        c.request("PUT", f"/kv/k{i % 10}", body=str(i).encode())
        c.getresponse().read()
    c.request("DELETE", "/kv/k0")
    c.getresponse().read()
    c.close()
    before = json.loads(call(port, "GET", "/checkpoint")[1])
    delta_before = json.loads(call(port, "GET", "/checkpoint?since=1495")[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, port2 = start_app("a2", data)
    assert len((data / "wal.log").read_bytes().splitlines()) <= 11
    assert json.loads(call(port2, "GET", "/checkpoint")[1]) == before
    assert json.loads(call(port2, "GET", "/checkpoint?since=1495")[1]) == delta_before
    assert delta_before["deleted"] == ["k0"] and set(delta_before["items"]) == {"k5", "k6", "k7", "k8", "k9"}


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_other_fsync_policies_keep_acknowledged_writes_across_kill_9(
        start_app: Spawn, tmp_path: Path, fsync: str) -> None:
    data = tmp_path / "data"
    proc, port = start_app("a", data, "--fsync", fsync)
    for i in range(20):
        assert call(port, "PUT", f"/kv/k{i}", f"v{i}".encode())[0] == 200
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, port2 = start_app("b", data, "--fsync", fsync)
    assert json.loads(call(port2, "GET", "/checkpoint")[1])["items"] == {f"k{i}": f"v{i}" for i in range(20)}
