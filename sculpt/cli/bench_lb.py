"""``sculpt bench lb``: what the local load balancer costs — direct vs through-LB latency and throughput.

Why it exists: the morph protocol puts the LB in every request's path, so its overhead must stay small
(targets: < 1 ms added p50, >= 70 % of direct throughput). This starts one demo-app process and one LB
process (as the agent hosts it: a separate process from the client), then drives each with the same
closed-loop keep-alive client (one thread, ``selectors``, N connections, raw HTTP/1.1) and compares.
Each side also gets its CPU per answer (``app_cpu_us``, ``lb_cpu_us``: user + system microseconds in the
N-connection runs), which other load on a shared machine moves far less than req/s does, and
``throughput_ratio_paired`` is the median of the round-by-round ratios. Benchmarks print figures and write
JSON; they assert nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer


def closed_loop(host: str, port: int, path: str, connections: int, duration_s: float,
                warmup_s: float = 0.3) -> dict[str, float]:
    """Keep ``connections`` requests outstanding (one per connection) for ``duration_s``.

    Returns ``{"p50_ms", "p99_ms", "rps", "requests", "errors", "answered"}``; the warm-up is not counted
    (``answered``: every answer, the warm-up's too, for per-request CPU figures).
    """
    import selectors
    import socket
    import time

    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    bufs: dict[socket.socket, bytearray] = {}  # bytes received, per connection
    sent_at: dict[socket.socket, float] = {}  # when its outstanding request was sent
    for _ in range(connections):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s], sent_at[s] = bytearray(), time.perf_counter()
        s.send(req)
    lat: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    t_count = t_start + warmup_s
    t_end = t_count + duration_s
    counted = answered = 0
    try:
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            for key, _ in sel.select(timeout=0.5):
                s = cast(socket.socket, key.fileobj)  # the registered object: one of our sockets
                buf = bufs[s]
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed a keep-alive connection")
                buf += chunk
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                i = buf.find(b"Content-Length:", 0, end)
                n = int(buf[i + 15:buf.find(b"\r\n", i)]) if i >= 0 else 0
                if len(buf) < end + 4 + n:
                    continue
                t = time.perf_counter()
                answered += 1
                if buf[9:10] != b"2":
                    errors += 1
                if t >= t_count:
                    lat.append(t - sent_at[s])
                    counted += 1
                del buf[:end + 4 + n]
                sent_at[s] = time.perf_counter()
                s.send(req)
    finally:
        for s in bufs:
            sel.unregister(s)
            s.close()
        sel.close()
    lat.sort()
    elapsed = min(time.perf_counter(), t_end) - t_count
    return {"p50_ms": round(lat[len(lat) // 2] * 1000, 4) if lat else float("nan"),
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 4) if lat else float("nan"),
            "rps": round(counted / elapsed, 1), "requests": counted, "errors": errors, "answered": answered}


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 when unknown or gone)."""
    import psutil

    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def _compare(app_port: int, lb_port: int, path: str, connections: int, duration_s: float,
             rounds: int = 1, pids: dict[str, int] | None = None) -> dict[str, object]:
    """Latency at 1 connection and throughput at ``connections``, direct and through the LB.

    Direct and LB runs alternate for ``rounds`` rounds and each figure is the median over rounds, so a
    burst of load from something else on the machine hits both sides alike. With ``pids`` (``app``, ``lb``)
    the throughput runs also measure each process's CPU per answer, a figure that other load on the
    machine moves much less than req/s.
    """
    import statistics

    pids = pids or {}
    runs: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {"direct": [], "lb": []}
    cpu: dict[str, list[dict[str, float]]] = {"direct": [], "lb": []}
    for r in range(rounds):
        for name, port in (("direct", app_port), ("lb", lb_port)):
            typer.echo(f"measuring {name} GET {path} (round {r + 1}/{rounds}) ...", err=True)
            lat = closed_loop("127.0.0.1", port, path, 1, duration_s)
            before = {k: _cpu_s(pids.get(k)) for k in ("app", "lb")}
            thr = closed_loop("127.0.0.1", port, path, connections, duration_s)
            n = max(1.0, thr["answered"])
            cpu[name].append({k: (_cpu_s(pids.get(k)) - before[k]) / n * 1e6 for k in ("app", "lb")})
            runs[name].append((lat, thr))
    out: dict[str, object] = {"path": path, "connections": connections, "duration_s": duration_s,
                              "rounds": rounds}
    for name, rs in runs.items():
        out[name] = {"p50_ms": round(statistics.median(lat["p50_ms"] for lat, _ in rs), 4),
                     "p99_ms": round(statistics.median(lat["p99_ms"] for lat, _ in rs), 4),
                     "rps": round(statistics.median(thr["rps"] for _, thr in rs), 1),
                     "rps_1conn": round(statistics.median(lat["rps"] for lat, _ in rs), 1),
                     "errors": int(sum(lat["errors"] + thr["errors"] for lat, thr in rs))}
    direct, lb = out["direct"], out["lb"]
    assert isinstance(direct, dict) and isinstance(lb, dict)
    if pids:   # CPU microseconds per answer: the app's on both sides, the LB's through it
        direct["app_cpu_us"] = round(statistics.median(c["app"] for c in cpu["direct"]), 1)
        lb["app_cpu_us"] = round(statistics.median(c["app"] for c in cpu["lb"]), 1)
        lb["lb_cpu_us"] = round(statistics.median(c["lb"] for c in cpu["lb"]), 1)
    pairs = [lb_thr["rps"] / d_thr["rps"] for (_, d_thr), (_, lb_thr) in zip(runs["direct"], runs["lb"], strict=True)
             if d_thr["rps"]]
    added_p50_ms: float = round(lb["p50_ms"] - direct["p50_ms"], 4)
    throughput_ratio: float = round(lb["rps"] / direct["rps"], 3) if direct["rps"] else 0.0
    out["added_p50_ms"] = added_p50_ms
    out["throughput_ratio"] = throughput_ratio
    out["throughput_ratio_paired"] = round(statistics.median(pairs), 3) if pairs else 0.0   # round by round
    out["targets_met"] = added_p50_ms < 1.0 and throughput_ratio >= 0.7
    return out


def run_bench(duration_s: float, connections: int, path: str, work_path: str | None,
              rounds: int = 3) -> dict[str, object]:
    """Start the app and the LB as processes, compare direct vs LB on ``path`` (and on ``work_path``, a
    request that makes the app do real work), stop everything."""
    import subprocess
    import sys
    import tempfile
    import time

    procs: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], port_file: Path) -> int:
        p = subprocess.Popen([sys.executable, *args, "--port-file", str(port_file)])
        procs.append(p)
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[1]} did not start")
            time.sleep(0.02)
        return int(port_file.read_text())

    import os

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sculpt-bench-lb-") as tmp:
        d = Path(tmp)
        try:
            app_port = spawn(["-m", "sculpt.demoapp", "--port", "0", "--data-dir", str(d / "data"),
                              "--instance-id", "bench"], d / "app.port")
            lb_port = spawn(["-m", "sculpt.providers.local.lb", "--backend", f"app=127.0.0.1:{app_port}"],
                            d / "lb.port")
            import http.client

            c = http.client.HTTPConnection("127.0.0.1", app_port, timeout=5)
            c.request("PUT", "/kv/bench", body=b"x" * 100)
            c.getresponse().read()
            c.close()
            pids = {"app": procs[0].pid, "lb": procs[1].pid}
            out = _compare(app_port, lb_port, path, connections, duration_s, rounds, pids)
            if work_path:
                out["with_work"] = _compare(app_port, lb_port, work_path, connections, duration_s, rounds, pids)
            # other work on the machine skews both sides: say how busy it was
            out["load_avg_1m"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                                  "cores": os.cpu_count()}
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return out


def bench_lb(
    json_out: Annotated[bool, typer.Option("--json", help="print machine-readable JSON")] = False,
    duration: Annotated[float, typer.Option(help="seconds per measurement")] = 2.0,
    rounds: Annotated[int, typer.Option(help="alternating direct/LB rounds; figures are medians")] = 3,
    connections: Annotated[int, typer.Option(help="concurrent keep-alive connections for throughput")] = 16,
    path: Annotated[str, typer.Option(help="request path (the app's cheapest: a kv read)")] = "/kv/bench",
    work_path: Annotated[str, typer.Option(help="second comparison with app work per request ('' skips)")
                         ] = "/work?ms=1",
    out: Annotated[Path | None, typer.Option(help="also write the JSON here")] = None,
) -> None:
    """Direct vs through-LB p50 latency (1 connection) and throughput (N connections), closed loop."""
    res = run_bench(duration, connections, path, work_path or None, max(1, rounds))
    if out is not None:
        out.write_text(json.dumps(res, indent=2))
    if json_out:
        typer.echo(json.dumps(res, indent=2))
        return
    la = res["load_avg_1m"]
    assert isinstance(la, dict)
    typer.echo(f"machine load (1 min avg) {la['before']} -> {la['after']} on {la['cores']} cores")
    typer.echo(f"{'':8} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>10}   (p50 at 1 connection, req/s at "
               f"{res['connections']} connections, closed loop, median of {res['rounds']} rounds)")
    for part in (res, res.get("with_work")):
        if not isinstance(part, dict):
            continue
        typer.echo(f"GET {part['path']}")
        for name in ("direct", "lb"):
            r = part[name]
            typer.echo(f"  {name:6} {r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} {r['rps']:>10.0f}")
        typer.echo(f"  added p50 {part['added_p50_ms']:.3f} ms (target < 1), throughput ratio "
                   f"{part['throughput_ratio']:.2f} (target >= 0.70): {'met' if part['targets_met'] else 'NOT met'}"
                   f"; round by round {part['throughput_ratio_paired']:.2f}")
        if "lb_cpu_us" in part["lb"]:
            typer.echo(f"  CPU per answer: app {part['direct']['app_cpu_us']:.0f} us direct; through the LB "
                       f"app {part['lb']['app_cpu_us']:.0f} us + LB {part['lb']['lb_cpu_us']:.0f} us")
