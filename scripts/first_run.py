"""The first run (what ``make demo`` does): a local fleet end to end, in a temporary directory.

Steps: ``sculpt init``, ``sculpt up``, a few requests through the load balancer (PUT then GET), ``status``,
change the spec's shape and ``up`` again, ``history``, ``rollback``, ``down``. Each step is printed; the
script exits non-zero at the first failure, and always runs ``sculpt down`` so no process is left behind.

Run: ``.venv/bin/python scripts/first_run.py [--keep]`` (``--keep`` keeps the temp dir for a look).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SCULPT = [sys.executable, "-m", "sculpt.cli.main"]


class StepFailed(Exception):
    pass


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def sculpt(*args: str, cwd: Path, env: dict[str, str], want_json: bool = False) -> Any:
    """Run one CLI verb, echoing what it prints; raise StepFailed on a non-zero exit."""
    cmd = [*SCULPT, *args] + (["--json"] if want_json else [])
    print("$ sculpt " + " ".join(args) + (" --json" if want_json else ""), flush=True)
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if out.stderr.strip():
        print(out.stderr.rstrip(), file=sys.stderr, flush=True)
    if out.returncode != 0:
        raise StepFailed(f"`sculpt {' '.join(args)}` exited with {out.returncode}")
    if want_json:
        data = json.loads(out.stdout)
        print(json.dumps(data, indent=2)[:1500])
        return data
    print(out.stdout.rstrip())
    return out.stdout


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            code, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            code, text = e.code, e.read().decode()
    except OSError as e:
        raise StepFailed(f"{method} {url} failed: {e}") from None
    print(f"  {method} {url} -> {code} {text[:80]}")
    return code, text


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise StepFailed(what)


def journey(work: Path, env: dict[str, str]) -> None:
    spec = work / "sculpt.yaml"
    step("write a fleet spec")
    sculpt("init", cwd=work, env=env)

    step("start the fleet (the agent, the load balancer and one demo-app instance)")
    t0 = time.monotonic()
    up = sculpt("up", "--message", "first", cwd=work, env=env, want_json=True)
    print(f"  up took {time.monotonic() - t0:.2f}s")
    lb = up["lb"]["address"]

    step(f"requests through the load balancer at http://{lb}")
    code, _ = request("PUT", f"http://{lb}/kv/greeting", b"hello")
    expect(200 <= code < 300, f"PUT returned {code}")
    code, text = request("GET", f"http://{lb}/kv/greeting")
    expect(code == 200 and text == "hello", f"GET returned {code} {text!r}")
    for _ in range(3):
        request("GET", f"http://{lb}/work?ms=5")

    step("status")
    sculpt("status", cwd=work, env=env)

    step("change the shape in sculpt.yaml and apply it (a live resize where cgroups allow, else a replacement)")
    text = spec.read_text()
    spec.write_text(text.replace("shape: std-0.5c-512m", "shape: std-1c-1024m", 1))
    sculpt("up", "--message", "a bigger shape", cwd=work, env=env)
    st = sculpt("status", cwd=work, env=env, want_json=True)
    expect(st["instances"][0]["shape"] == "std-1c-1024m", "the shape did not change")
    code, text = request("GET", f"http://{lb}/kv/greeting")
    expect(code == 200 and text == "hello", "the data did not survive the shape change")

    step("history")
    sculpt("history", cwd=work, env=env)

    step("roll back to the previous version (a new version with the old fleet)")
    sculpt("rollback", cwd=work, env=env)
    st = sculpt("status", cwd=work, env=env, want_json=True)
    expect(st["instances"][0]["shape"] == "std-0.5c-512m", "the rollback did not restore the shape")
    sculpt("history", cwd=work, env=env)


def main(argv: list[str] | None = None) -> int:
    keep = "--keep" in (argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="sculpt-first-run-"))
    env = {**os.environ, "SCULPT_HOME": str(work / "home")}
    env.pop("SCULPT_SPEC", None)
    print(f"sculpt first run in {work} (SCULPT_HOME={env['SCULPT_HOME']})")
    failed: str | None = None
    try:
        journey(work, env)
    except (StepFailed, subprocess.TimeoutExpired, ValueError, KeyError) as e:
        failed = str(e)
    finally:
        step("stop everything")
        try:
            sculpt("down", cwd=work, env=env)
        except StepFailed as e:
            failed = failed or str(e)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(f"\nFAILED: {failed}", file=sys.stderr)
        return 1
    print("\nfirst run OK: the fleet came up, served requests, changed shape, rolled back and went down.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
