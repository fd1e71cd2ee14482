"""Real traces are repaired, not refused: rows sorted, duplicate timestamps collapsed to their maximum demand,
one warning line per repaired file, gaps left unbilled; a NAB file that is not a CPU % is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sculpt.domain.errors import ConfigError
from sculpt.replay.harness import ReplayConfig, run_replay
from sculpt.replay.readers import NotPercentError, load_traces, read_trace

BB_HEADER = ("timestamp_s,cpu_cores,cpu_capacity_mhz,cpu_usage_mhz,cpu_usage_pct,mem_capacity_kb,mem_usage_kb,"
             "disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps\n")

ROWS = st.lists(st.tuples(st.integers(0, 40), st.floats(0, 8, allow_nan=False), st.floats(0, 16, allow_nan=False)),
                min_size=1, max_size=60)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS)
def test_any_row_order_and_duplicates_read_as_the_max_per_timestamp(tmp_path: Path, rows) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "fuzz.csv"
    p.write_text("timestamp,cpu_cores,mem_gib\n" + "".join(f"{t * 300},{c!r},{m!r}\n" for t, c, m in rows))
    distinct = sorted({t for t, _, _ in rows})
    if len(distinct) < 2:
        with pytest.raises(ConfigError, match="distinct timestamp"):
            read_trace(p)
        return
    tr = read_trace(p)
    assert tr.t.tolist() == [300.0 * t for t in distinct]
    assert np.all(np.diff(tr.t) > 0)
    assert tr.cpu.tolist() == [max(c for u, c, _ in rows if u == t) for t in distinct]
    assert tr.mem.tolist() == [max(m for u, _, m in rows if u == t) for t in distinct]
    times = [t for t, _, _ in rows]
    repaired = times != sorted(set(times))
    assert (tr.warning is not None) == repaired
    if tr.warning is not None:
        assert str(p) in tr.warning and "\n" not in tr.warning


def test_the_warning_counts_what_was_repaired(write_csv) -> None:  # type: ignore[no-untyped-def]
    p = write_csv("restart.csv", "timestamp,cpu_cores\n0,1\n300,2\n300,3\n600,1\n300,0.5\n900,1\n")
    tr = read_trace(p)
    assert tr.t.tolist() == [0.0, 300.0, 600.0, 900.0] and tr.cpu.tolist() == [1.0, 3.0, 1.0, 1.0]
    assert tr.warning == f"{p}: 1 row out of time order sorted, 2 duplicate timestamps collapsed (maximum demand kept)"
    clean = read_trace(write_csv("clean.csv", "timestamp,cpu_cores\n0,1\n300,2\n"))
    assert clean.warning is None


def test_bitbrains_rows_are_sorted_before_clock_rates_are_filled(write_csv) -> None:  # type: ignore[no-untyped-def]
    # the zero-capacity row at t=600 reuses the clock rate of t=300 (2000 MHz/core), not of the row above it
    rows = ["600,0,0,1000,0,0,0,0,0,0,0", "0,4,4000,1000,0,1048576,0,0,0,0,0", "300,2,4000,1000,0,1048576,0,0,0,0,0"]
    tr = read_trace(write_csv("vm.csv", BB_HEADER + "\n".join(rows) + "\n"))
    assert tr.t.tolist() == [0.0, 300.0, 600.0]
    assert tr.cpu.tolist() == [1.0, 0.5, 0.5]


def test_duplicates_keep_the_largest_memory_even_when_one_row_has_none(write_csv) -> None:  # type: ignore[no-untyped-def]
    tr = read_trace(write_csv("m.csv", "timestamp,cpu_cores,mem_gib\n0,1,\n0,0.5,3\n300,1,2\n"))
    assert tr.mem.tolist() == [3.0, 2.0] and tr.cpu.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(("values", "ok"), [
    ([0.0, 99.9], True), ([0.0, 100.6], True),  # rounding above 100 is still a percentage
    ([0.0, 656.0], False), ([38516.6, 245126000.0], False), ([-5.0, 10.0], False),
])
def test_nab_values_must_be_a_percentage(write_csv, values: list[float], ok: bool) -> None:  # type: ignore[no-untyped-def]
    p = write_csv("ec2_x.csv", "timestamp,value\n" + "".join(f"{300 * i},{v}\n" for i, v in enumerate(values)))
    if ok:
        assert read_trace(p).cpu.max() == pytest.approx(max(values) / 100 * 2)
        return
    with pytest.raises(NotPercentError) as e:
        read_trace(p)
    msg = str(e.value)
    assert str(p) in msg and "not a CPU percentage" in msg and "To fix:" in msg and "\n" not in msg


def test_a_directory_skips_refused_files_with_one_warning_each(tmp_path: Path) -> None:
    d = tmp_path / "nab"
    d.mkdir()
    (d / "cpu.csv").write_text("timestamp,value\n0,10\n300,20\n")
    (d / "net.csv").write_text("timestamp,value\n0,251643\n0,8\n300,38516\n")  # bytes, with a duplicate too
    (d / "dup.csv").write_text("timestamp,value\n300,30\n0,10\n300,40\n")
    loaded = load_traces([d])
    assert [t.name for t in loaded.traces] == ["cpu", "dup"]
    assert loaded.skipped == [str(d / "net.csv")]
    assert len(loaded.warnings) == 2 and all("\n" not in w for w in loaded.warnings)
    skip, repair = sorted(loaded.warnings, key=lambda w: "skipped" not in w)
    assert skip.startswith(f"skipped {d / 'net.csv'}") and "not a CPU percentage" in skip
    assert str(d / "dup.csv") in repair and "collapsed" in repair
    with pytest.raises(NotPercentError, match="net.csv"):  # named explicitly: refused
        load_traces([d / "net.csv"])
    only_bytes = tmp_path / "bytes"
    only_bytes.mkdir()
    (only_bytes / "net.csv").write_text("timestamp,value\n0,251643\n300,38516\n")
    with pytest.raises(ConfigError, match="1 skipped"):
        load_traces([only_bytes])


def test_gaps_are_not_billed(catalog, trace) -> None:  # type: ignore[no-untyped-def]
    """A day-long hole in the record: every sample is one nominal step, so the hole costs nothing."""
    import dataclasses

    tr = trace([0.5] * 10, step_s=3600.0)
    gap = dataclasses.replace(tr, t=np.concatenate([tr.t[:5], tr.t[5:] + 86400.0]))
    r = run_replay([gap], catalog, ReplayConfig(region="r", families=(), policies=("static", "oracle")))
    assert gap.hours == 10.0
    assert float(r.scores["static"].cost_usd[0]) == pytest.approx(10 * 1.0)  # s1 at $1/h, ten steps
