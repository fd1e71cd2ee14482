"""The judges the state-safety tests rely on, on made-up timelines (no processes): what counts as a lost
write, a reverted one, an outage, and a history that matches the commands."""

from __future__ import annotations

from sculpt.cli.chaos import (
    Probe,
    Ran,
    check_reads,
    kinds_mismatch,
    longest_outage,
    outage_after,
    previous_succeeded,
)
from sculpt.demoapp.loadgen import RequestRecord


def put(i: int, key: str, t: float, status: int = 200, done: float | None = None) -> RequestRecord:
    return RequestRecord(i, t, t + 0.01 if done is None else done, "PUT", key, f"v0-{i}-{key}", status,
                         None if status else "ConnectionResetError")


def get(i: int, key: str, t: float, value: str | None, status: int = 200) -> RequestRecord:
    return RequestRecord(i, t, t + 0.01, "GET", key, None, status if value is not None or status != 200 else 404,
                         None, (value or "").encode())


def test_a_read_must_return_the_last_acknowledged_value_or_a_later_write_in_doubt() -> None:
    w1, w2, w3 = put(1, "k", 1.0), put(2, "k", 2.0), put(3, "k", 3.0, status=0)  # w3's answer never came
    ok = [w1, w2, w3, get(4, "k", 4.0, w2.value), get(5, "k", 5.0, w3.value)]
    assert check_reads(ok) == []
    stale = check_reads([w1, w2, get(4, "k", 4.0, w1.value)])
    assert [(v.kind, v.got, v.want) for v in stale] == [("lost", w1.value, w2.value)]
    gone = check_reads([w1, get(2, "k", 2.0, None, 404)])
    assert [v.kind for v in gone] == ["lost"]
    assert check_reads([get(1, "k", 1.0, None, 404)]) == []  # nothing acknowledged yet: 404 is right


def test_an_unacknowledged_write_showing_over_a_later_acknowledged_one_is_reverted() -> None:
    w1, w2 = put(1, "k", 1.0, status=503), put(2, "k", 2.0)
    bad = check_reads([w1, w2, get(3, "k", 3.0, w1.value)])
    assert [v.kind for v in bad] == ["reverted"]
    assert [v.kind for v in check_reads([w2, get(3, "k", 3.0, "v9-9-k")])] == ["unknown"]


def test_a_read_back_beside_the_load_allows_writes_in_flight_but_not_older_ones() -> None:
    w1, w2 = put(1, "k", 1.0), put(2, "k", 2.0, done=2.5)  # w2 in flight while the probe runs
    assert check_reads([w1, w2], [Probe("k", 2.1, 2.2, 200, w2.value)]) == []
    assert check_reads([w1, w2], [Probe("k", 2.1, 2.2, 200, w1.value)]) == []
    late = check_reads([w1, w2], [Probe("k", 3.0, 3.1, 200, w1.value)])
    assert [(v.kind, v.source) for v in late] == [("lost", "readback")]
    assert check_reads([w1], [Probe("k", 3.0, 3.1, 503, None)]) == []  # no answer: not a data verdict


def test_outages_are_the_longest_stretches_without_a_successful_answer() -> None:
    recs = [get(i, "k", t, None, 404) for i, t in enumerate([0.0, 0.1, 0.2, 2.0, 2.1])]
    recs.append(put(9, "k", 1.0, status=503))  # a failed answer does not end an outage
    assert longest_outage(recs, 0.0, 2.2) == 1.8
    assert outage_after(recs, 0.5, 2.2) == 1.51  # counted from the event at 0.5 to the answer at 2.01
    assert outage_after(recs, 2.05, 2.5) == 0.39
    assert outage_after(recs, 3.0, 2.0) == 0.0
    assert outage_after(recs, 0.0, 2.2, method="PUT") == 2.2


def ran(verb: str, rc: int = 0, **kw: object) -> Ran:
    return Ran(verb, [], rc, "", "", 0.0, 1.0, **kw)  # type: ignore[arg-type]


def test_history_kinds_must_follow_the_commands() -> None:
    cmds = [ran("up"), ran("status"), ran("morph"), ran("morph", -9), ran("up", unchanged=True), ran("down")]
    v = [{"kind": k} for k in ("up", "morph", "morph", "down")]
    assert kinds_mismatch(cmds, v) is None  # the killed morph wrote one, the unchanged up none
    assert kinds_mismatch(cmds, [{"kind": k} for k in ("up", "morph", "up", "down")]) is None
    assert kinds_mismatch(cmds, [{"kind": k} for k in ("up", "up", "up", "down")]) is not None
    assert kinds_mismatch(cmds, [{"kind": k} for k in ("up", "down")]) is not None  # the good morph wrote none
    assert kinds_mismatch([ran("up"), ran("up")], [{"kind": "up"}]) is not None


def test_plain_rollback_target_is_the_succeeded_version_before_the_current_one() -> None:
    vs = [{"version": 1, "result": "succeeded", "kind": "up"}, {"version": 2, "result": "succeeded", "kind": "morph"},
          {"version": 3, "result": "failed", "kind": "morph"}]
    assert previous_succeeded(vs) == 1
    assert previous_succeeded(vs[:1]) is None
