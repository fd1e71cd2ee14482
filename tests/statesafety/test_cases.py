"""Issue 11's nine state-safety cases, each with the sequence the issue gives, on a real local stack under
~150 req/s of mixed PUT/GET through the LB (every acknowledged PUT recorded, every key read back at the end).

All commands are ``sculpt`` subprocesses (see ``harness.py``); ``lb.pause_lease_s`` is 3 s so the waits "past
the lease" stay short. What "nothing lost" means is in :mod:`sculpt.cli.chaos`: every read returns the key's
last acknowledged value (or a later write whose answer never came), never an older one or 404, and no
unacknowledged write shows up over a later acknowledged one.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from sculpt.cli.chaos import applied_fleet, check_reads, outage_after, previous_succeeded
from tests.statesafety.harness import (
    BOUND_S,
    LEASE_S,
    SHAPES,
    SIGKILL,
    SIGTERM,
    Live,
    kinds,
    no_traceback,
    other,
    pending,
    serving_instances,
)

pytestmark = pytest.mark.e2e

LiveFactory = Callable[..., Live]


def _instances(lv: Live) -> list[dict[str, Any]]:
    return list((lv.status() or {}).get("instances") or [])


# -- 1. rollback across a blue/green morph ---------------------------------------------------------------------

def test_1_rollback_to_1_after_a_blue_green_morph_keeps_every_key(live: LiveFactory) -> None:
    """up -> PUT keys -> morph --shape std-1c-1024m --strategy blue-green -> rollback --to 1: every key kept."""
    lv = live(seed=11)
    assert lv.version == 1
    m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green")
    assert m.returncode == 0, m.line()
    r = lv.sculpt("rollback", "--json", "--to", "1")
    assert r.returncode == 0, r.line()
    assert (r.json() or {}).get("result") == "succeeded", r.stdout
    lv.assert_kept("rollback --to 1 across a blue/green morph")
    assert serving_instances(lv.status()) == [(SHAPES[0], "local-a")]


def test_1_plain_rollback_goes_to_the_previous_user_visible_version_and_leaves_no_idle_instance(
        live: LiveFactory) -> None:
    """up -> morph (blue/green) -> rollback: back to the `up` version, no weight-0 instance left, nothing lost."""
    lv = live(seed=12)
    m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green")
    assert m.returncode == 0, m.line()
    r = lv.sculpt("rollback", "--json")
    assert r.returncode == 0, r.line()
    assert (r.json() or {}).get("rolled_back_to") == lv.version, (
        f"plain rollback went to {(r.json() or {}).get('rolled_back_to')}, not to the `up` version {lv.version} "
        f"(history kinds {kinds(lv.history())})")
    insts = _instances(lv)
    idle = [i["id"] for i in insts if not i.get("weight")]
    assert not idle, f"idle weight-0 instance(s) left: {idle}"
    assert serving_instances(lv.status()) == [(SHAPES[0], "local-a")]
    assert lv.stack.demo_pids() == {i["pid"] for i in insts}, "a demo app runs outside the fleet"
    lv.assert_kept("plain rollback after a blue/green morph")


# -- 2. the controller dies at SHIFT and nobody comes back for longer than the lease -------------------------

WRITES_RESUME_S = 20.0
"""How long cases 2 and 3 wait for writes to be served again after the controller died (past any lease or
LB auto-resume, so the dangerous moment - green has taken writes - is reached whatever the implementation)."""

def _past_the_lease(lv: Live, since: float) -> None:
    """Wait past the pause lease, and until writes are served again (by whatever released the pause: the
    agent's recovery, or an LB auto-resume onto green), plus a second of writes: then green may have taken
    writes and whatever recovers next must not lose them."""
    time.sleep(max(0.0, since + LEASE_S + 1.0 - time.perf_counter()))
    lv.load.wait_serving(since, WRITES_RESUME_S)
    time.sleep(0.5)


@pytest.mark.parametrize("fleet", ["one-replica", "two-replica-hash"])
def test_2_controller_killed_at_shift_then_status_after_the_lease_loses_nothing(live: LiveFactory,
                                                                                 fleet: str) -> None:
    """morph --strategy blue-green --fault crash-at:SHIFT, wait past the lease, `sculpt status`: nothing lost."""
    kw: dict[str, Any] = {"replicas": 2, "routing": "hash"} if fleet == "two-replica-hash" else {}
    lv = live(seed=21, **kw)
    m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green", "--fault", "crash-at:SHIFT")
    assert m.returncode == -SIGKILL, m.line()  # really SIGKILLed
    _past_the_lease(lv, m.ended)
    st = lv.sculpt("status", "--json")
    no_traceback(st)
    assert st.returncode == 0, st.line()
    lv.assert_kept(f"crash-at:SHIFT on a {fleet} fleet, status once the pause was released")


# -- 3. the agent dies after the shift ----------------------------------------------------------------------

@pytest.mark.parametrize("controller", ["killed-at-shift", "running"])
def test_3_agent_killed_after_the_shift_loses_nothing(live: LiveFactory, controller: str) -> None:
    """Traffic has reached green after the shift (the controller died at SHIFT and the pause was released, or
    the controller is past RESUME), then kill -9 of the agent: after the lease and a `sculpt status` every
    acknowledged write is there."""
    lv = live(seed=31)
    if controller == "killed-at-shift":
        m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green", "--fault", "crash-at:SHIFT")
        assert m.returncode == -SIGKILL, m.line()
        _past_the_lease(lv, m.ended)
        pid = lv.stack.agent_pid()
        assert pid and lv.stack.kill_agent(pid) == pid
    else:
        pid = lv.stack.agent_pid()
        assert pid
        run = lv.stack.start("morph", "--json", "--shape", "std-1c-1024m", "--strategy", "blue-green")
        assert run.wait_for("RESUME done"), "".join(run.err)
        assert lv.stack.kill_agent(pid) == pid
        m = lv.stack.record(run.finish())
        no_traceback(m)
    time.sleep(1.0)  # (the agent's supervisor may restart it meanwhile; either way the next command recovers)
    st = lv.sculpt("status", "--json")
    no_traceback(st)
    assert st.returncode == 0, st.line()
    lv.assert_kept(f"agent killed after the shift (controller {controller})")


# -- 4. `up` that must replace an instance ------------------------------------------------------------------

DEMO_COMMAND = [sys.executable, "-m", "sculpt.demoapp", "--host", "127.0.0.1", "--port", "{port}",
                "--data-dir", "{data_dir}", "--instance-id", "{instance_id}", "--fsync", "always"]


def test_4_up_with_a_changed_app_env_command_or_health_path_loses_nothing(live: LiveFactory) -> None:
    """Under load: `up` after changing app.env, then app.command, then app.health_path: 0 lost each time."""
    lv = live(seed=41)
    found = []
    for field, value in (("env", {"STATE_SAFETY": "1"}), ("command", DEMO_COMMAND), ("health_path", "/metrics")):
        lv.stack.write_spec(app={field: value})
        u = lv.stack.up()
        no_traceback(u)
        if u.returncode != 0:
            found.append(f"up after changing app.{field}: {u.line()}")
        # the changed instance serves and holds every write before the next change
        probes = lv.load.read_back()
        bad = [v for v in check_reads(lv.load.snapshot(), probes) if v.source == "readback"]
        if bad:
            found.append(f"after `up` changing app.{field}: {len(bad)} acknowledged key(s) lost, e.g. {bad[0]}")
    v = lv.verdict()
    if not v.ok:
        found.append(v.summary())
    assert not found, "\n".join(found)
    insts = _instances(lv)
    assert lv.stack.demo_pids() == {i["pid"] for i in insts}, "an old instance was left running"
    cmdlines = [p["cmdline"] for p in lv.stack.processes() if "sculpt.demoapp" in p["cmdline"]]
    assert cmdlines and all("--fsync always" in c for c in cmdlines), cmdlines


def test_4_up_with_a_shape_change_without_live_resize_loses_nothing(live: LiveFactory) -> None:
    """SCULPT_ENFORCEMENT=affinity+rlimit (no cgroups: the instance must be replaced): `up` with another
    shape under load keeps every acknowledged write."""
    lv = live(seed=42, env={"SCULPT_ENFORCEMENT": "affinity+rlimit"})
    assert all(i.get("enforcement") == "affinity+rlimit" for i in _instances(lv))
    lv.stack.write_spec(shape="std-1c-1024m")
    u = lv.stack.up()
    no_traceback(u)
    assert u.returncode == 0, u.line()
    lv.assert_kept("up changing the shape without live resize")
    assert serving_instances(lv.status()) == [("std-1c-1024m", "local-a")]
    assert lv.stack.demo_pids() == {i["pid"] for i in _instances(lv)}, "an old instance was left running"


# -- 5. a controller that dies (or hangs) under the pause ---------------------------------------------------

PAUSE_RECOVERED_S = LEASE_S + 3.0
"""The lease plus a few seconds in which the agent notices the dead pause owner, runs the recovery and
resumes the LB: writes are counted in the 2 s after it (a liveness window, not a speed target)."""


def test_5_controller_killed_under_the_pause_writes_recover_without_any_sculpt_command(live: LiveFactory) -> None:
    """morph --fault crash-at:PAUSE_FINAL_DELTA and then no sculpt command at all: once the lease and a few
    seconds of recovery have passed, writes succeed again (counted over a 2 s window)."""
    lv = live(seed=51)
    m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green", "--fault", "crash-at:PAUSE_FINAL_DELTA")
    assert m.returncode == -SIGKILL, m.line()
    window = (m.ended + PAUSE_RECOVERED_S, m.ended + PAUSE_RECOVERED_S + 2.0)
    lv.wait_until(window[1])
    lv.wait_answered(30.0)  # requests held or backlogged at the LB answer (or time out) first
    writes = [r for r in lv.records_between(*window) if r.method == "PUT"]
    failed = [r for r in writes if not (r.error is None and 200 <= r.status < 300)]
    codes = sorted({r.status for r in failed})
    assert writes and not failed, (
        f"{len(failed)} of {len(writes)} writes failed (codes {codes}) {PAUSE_RECOVERED_S:.0f}-"
        f"{PAUSE_RECOVERED_S + 2:.0f}s after the "
        f"controller died under the pause (lease {LEASE_S:.0f}s), with no sculpt command run")
    stats = lv.stack.lb_stats()
    assert stats is not None and stats.get("paused") is False, stats
    lv.assert_kept("controller killed under the pause")


def test_5_a_hung_step_does_not_keep_the_lb_paused_for_the_whole_step_timeout(live: LiveFactory) -> None:
    """morph --fault step-timeout:SHIFT --step-timeout 15: requests are served again long before the hung
    step's 15 s deadline (the controller bounds its own pause below the lease)."""
    step_timeout = 15.0
    lv = live(seed=52)
    m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green", "--fault", "step-timeout:SHIFT",
                 "--step-timeout", str(step_timeout))
    no_traceback(m)
    assert m.returncode in (0, 1), m.line()
    worst = outage_after(lv.load.snapshot(), m.started, m.ended, method="PUT")
    assert worst < step_timeout, (
        f"no write succeeded for {worst:.1f}s during a morph whose SHIFT hung until --step-timeout "
        f"{step_timeout:.0f}s: the LB stayed paused for the whole step timeout")
    stats = lv.stack.lb_stats()
    assert stats is not None and stats.get("paused") is False, stats
    lv.assert_kept("a hung SHIFT")


# -- 6. the agent dies ---------------------------------------------------------------------------------------

def test_6_agent_killed_requests_keep_being_served_status_tells_the_truth_down_stops_everything(
        live: LiveFactory) -> None:
    lv = live(seed=61)
    before = {i["pid"] for i in _instances(lv)}
    pid = lv.stack.agent_pid()
    assert pid and lv.stack.kill_agent(pid) == pid
    killed_at = time.perf_counter()
    served = lv.load.wait_serving(killed_at, BOUND_S)
    assert served is not None, f"no PUT and GET succeeded within {BOUND_S:.0f}s of kill -9 of the agent"
    st = lv.sculpt("status", "--json")
    no_traceback(st)
    out = st.json() or {}
    assert st.returncode == 0 and out.get("instances"), f"status after the agent died: {st.line()}"
    running = lv.stack.demo_pids()
    assert {i["pid"] for i in out["instances"]} == running, (out["instances"], running)
    assert running == before, "the instances were replaced (or restarted) because the agent died"
    agent = out.get("agent_pid")
    if agent is not None:
        import psutil

        assert agent != pid and psutil.pid_exists(int(agent)), f"status names agent {agent}, which is not running"
    lv.assert_kept("kill -9 of the agent")
    d = lv.stack.down()
    assert d.returncode == 0, d.line()
    deadline = time.monotonic() + 5.0
    while lv.stack.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lv.stack.processes() == [], "processes of the stack left after `sculpt down`"


# -- 7. SIGTERM at random moments ----------------------------------------------------------------------------

def test_7_sigterm_at_random_moments_leaves_no_open_transaction_and_no_paused_lb(live: LiveFactory) -> None:
    """SIGTERM to `sculpt morph` / `sculpt rollback` at random moments (seeded): no traceback, the LB is not
    left paused, no version stays pending, and the next command works."""
    lv = live(seed=71)
    rng = random.Random(7)
    shape = SHAPES[0]
    found: list[str] = []
    for i, verb in enumerate(["morph", "rollback", "morph", "rollback"]):
        delay = rng.uniform(0.4, 1.6)
        if verb == "morph":
            r = lv.stack.signal_after(delay, "morph", "--json", "--shape", other(shape), "--strategy",
                                      "blue-green", sig=SIGTERM)
        else:
            r = lv.stack.signal_after(delay, "rollback", "--json", sig=SIGTERM)
        if r.traceback:
            found.append(f"#{i} traceback: {r.line()}")
        stats = lv.stack.lb_stats()
        if not stats or stats.get("paused") is not False:
            found.append(f"#{i} the LB is left paused after {r.line()}: {stats and stats.get('paused')}")
        nxt = lv.sculpt("history", "--json")  # the next command
        versions = nxt.json() or []
        if nxt.returncode != 0 or nxt.traceback:
            found.append(f"#{i} the next command failed after {r.line()}: {nxt.line()}")
        elif pending(versions):
            found.append(f"#{i} version(s) {pending(versions)} left pending after {r.line()}")
        cur = applied_fleet(versions)
        shape = cur[0][0] if cur else shape
    last = lv.morph("--shape", other(shape), "--strategy", "blue-green")
    if last.returncode != 0:
        found.append(f"a morph after the SIGTERMs failed: {last.line()}")
    v = lv.verdict()
    if not v.ok:
        found.append(v.summary())
    assert not found, "\n".join(found)


# -- 8. `up` keeps what morphs chose; `sculpt preview` --------------------------------------------------------

def test_8_up_with_an_unchanged_spec_keeps_the_morphs_shape_and_preview_says_so(live: LiveFactory) -> None:
    lv = live(seed=81)
    m = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green")
    assert m.returncode == 0, m.line()
    h0 = len(lv.history())
    p0 = lv.sculpt("preview")
    h1 = len(lv.history())
    u = lv.stack.up()
    assert u.returncode == 0, u.line()
    after_up = serving_instances(lv.status())
    lv.stack.write_spec(app={"env": {"PREVIEW": "1"}})
    n2 = len(lv.history())
    p3 = lv.sculpt("preview")
    n3 = len(lv.history())
    assert after_up == [("std-1c-1024m", "local-a")], (
        f"`sculpt up` with an unchanged spec reverted the morph: now {after_up}; up said: {u.stderr.strip()}")
    assert p0.returncode == 0, f"preview of an unchanged spec after a morph: exit {p0.returncode}: {p0.stdout}"
    assert (h1, n3) == (h0, n2), "preview wrote a version"
    assert p3.returncode == 3, f"preview after a spec change: exit {p3.returncode}: {p3.stdout}{p3.stderr}"
    assert serving_instances(lv.status()) == [("std-1c-1024m", "local-a")]
    lv.assert_kept("up after a morph")


# -- 9. history ---------------------------------------------------------------------------------------------

def _migrations_counted(text: str) -> int:
    got = re.search(r"(\d+) migration\(s\) in the last 24 h", text)
    assert got, text
    return int(got.group(1))


def test_9_history_kinds_and_the_daily_migration_count(live: LiveFactory) -> None:
    """up, morph, morph, rollback, down -> kinds [up morph morph rollback down]; after the two morphs both
    `plan --json` and `policy check --json` count 2 migrations in the last 24 h."""
    lv = live(seed=91)
    for shape in ("std-1c-1024m", SHAPES[0]):
        m = lv.morph("--shape", shape, "--strategy", "blue-green")
        assert m.returncode == 0, m.line()
    plan = lv.sculpt("plan", "--json", "--sample", "0.2", "--model", "last-value")  # (no torch to load)
    assert plan.returncode in (0, 2), plan.line()
    pol = lv.sculpt("policy check", "--json")
    assert pol.returncode in (0, 2), pol.line()
    rule = "max-migrations-per-day"
    plan_msg = next(r["message"] for r in (plan.json() or {}).get("policy", []) if r["rule"] == rule)
    pol_msg = next(r["message"] for r in (pol.json() or []) if r["rule"] == rule)
    counted = {"plan": _migrations_counted(plan_msg), "policy check": _migrations_counted(pol_msg)}
    versions = lv.history()
    want_prev = previous_succeeded(versions)
    r = lv.sculpt("rollback", "--json")
    assert r.returncode == 0, r.line()
    lv.assert_kept("two morphs and a rollback")
    d = lv.stack.down()
    assert d.returncode == 0, d.line()
    assert kinds(lv.history()) == ["up", "morph", "morph", "rollback", "down"]
    assert (r.json() or {}).get("rolled_back_to") == want_prev == 2
    assert counted == {"plan": 2, "policy check": 2}, counted


def _new_versions(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = {v["version"] for v in before}
    return [v for v in after if v["version"] not in seen]


def test_9_no_version_stays_pending_after_a_kill_and_reasons_survive(live: LiveFactory) -> None:
    """kill -9 of an `up`, of a morph (crash-at:SYNC_STATE), a crash during a rollback (--fault
    shift-fails,crash-at:ROLLBACK) and a SIGTERM'd morph: once any sculpt command ran, nothing is pending; the
    shift failure's reason survives the crash during its rollback; the SIGTERM'd morph says SIGTERM."""
    lv = live(seed=92)
    found: list[str] = []

    # an `up` replacing the instance, killed -9 while it applies; then `status`
    lv.stack.write_spec(app={"env": {"GEN": "1"}})
    r = lv.stack.signal_after(0.15, "up", "--json", marker="applying", sig=SIGKILL)
    lv.sculpt("status", "--json")
    if pending(lv.history()):
        found.append(f"up killed ({r.line()}), then status: version(s) {pending(lv.history())} still pending")

    # a morph killed at SYNC_STATE; then `history`
    r = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green", "--fault", "crash-at:SYNC_STATE")
    if r.returncode != -SIGKILL:
        found.append(f"crash-at:SYNC_STATE did not kill the morph: {r.line()}")
    lv.sculpt("history", "--json")
    if pending(lv.history()):
        found.append(f"morph killed at SYNC_STATE, then history: version(s) {pending(lv.history())} still pending")

    # the shift fails, and the controller dies during the rollback; then `status`
    before = lv.history()
    r = lv.morph("--shape", "std-1c-1024m", "--strategy", "blue-green", "--fault", "shift-fails,crash-at:ROLLBACK")
    if r.returncode != -SIGKILL:
        found.append(f"crash-at:ROLLBACK did not kill the morph: {r.line()}")
    lv.sculpt("status", "--json")
    new = _new_versions(before, lv.history())
    msgs = [str(v.get("message")) for v in new]
    if not any("injected fault: shift" in m for m in msgs):
        found.append(f"the shift failure's reason is gone after the crash during ROLLBACK: {msgs}")
    if pending(lv.history()):
        found.append(f"after the crash during ROLLBACK and a status: {pending(lv.history())} still pending")

    # SIGTERM to a morph: the reason names SIGTERM, not Ctrl-C
    before = lv.history()
    r = lv.stack.signal_after(0.0, "morph", "--json", "--shape", "std-1c-1024m", "--strategy", "blue-green",
                              "--fault", "step-timeout", "--step-timeout", "30", marker="SYNC_STATE ...", sig=SIGTERM)
    no_traceback(r)
    if r.returncode != 130:
        found.append(f"SIGTERM'd morph: exit {r.returncode}, not 130: {r.line()}")
    msgs = [str(v.get("message")) for v in _new_versions(before, lv.history())]
    said = r.stderr + " ".join(msgs)
    if "Ctrl-C" in said or "SIGTERM" not in said:
        found.append(f"a SIGTERM'd morph's reason should say SIGTERM, not Ctrl-C: stderr {r.stderr.strip()[-300:]!r}, "
                     f"history {msgs}")

    v = lv.verdict()
    if not v.ok:
        found.append(v.summary())
    assert not found, "\n".join(found)
