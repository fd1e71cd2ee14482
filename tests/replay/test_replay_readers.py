"""Trace readers: the three layouts, and clear errors naming the file for everything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sculpt.domain.errors import ConfigError, NotFoundError
from sculpt.replay.readers import expand, read_trace

BB_HEADER = ("timestamp_s,cpu_cores,cpu_capacity_mhz,cpu_usage_mhz,cpu_usage_pct,mem_capacity_kb,mem_usage_kb,"
             "disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps\n")


def test_bitbrains_demand_is_mhz_over_mhz_per_core(write_csv) -> None:  # type: ignore[no-untyped-def]
    rows = ["100,4,10000,2500,25,8388608,2097152,0,0,0,0", "400,4,10000,5000,50,8388608,1048576,0,0,0,0"]
    p = write_csv("vm_1.csv.gz", BB_HEADER + "\n".join(rows) + "\n")
    tr = read_trace(p)
    assert tr.layout == "bitbrains" and tr.name == "vm_1"
    assert tr.cpu.tolist() == [1.0, 2.0]  # 2500 MHz / (10000 MHz / 4 cores)
    assert tr.mem.tolist() == [2.0, 1.0]  # KiB -> GiB
    assert (tr.provisioned_cpu, tr.provisioned_mem_gib) == (4.0, 8.0)
    assert tr.step_s == 300.0


def test_bitbrains_zero_cores_row_reuses_the_last_clock_rate(write_csv) -> None:  # type: ignore[no-untyped-def]
    rows = ["0,2,4000,1000,25,1048576,0,0,0,0,0", "300,0,0,1000,0,0,0,0,0,0,0"]
    tr = read_trace(write_csv("vm.csv", BB_HEADER + "\n".join(rows) + "\n"))
    assert tr.cpu.tolist() == [0.5, 0.5]
    assert np.isfinite(tr.cpu).all()


def test_nab_value_is_percent_of_the_reference_shape(write_csv) -> None:  # type: ignore[no-untyped-def]
    p = write_csv("nab.csv", "timestamp,value\n2014-02-14 14:30:00,50\n2014-02-14 14:35:00,25\n")
    assert read_trace(p).cpu.tolist() == [1.0, 0.5]  # default reference: 2 vCPU
    tr = read_trace(p, reference_shape_vcpu=8)
    assert tr.cpu.tolist() == [4.0, 2.0]
    assert tr.layout == "nab" and not tr.has_memory and tr.step_s == 300.0


def test_generic_with_and_without_memory(write_csv) -> None:  # type: ignore[no-untyped-def]
    a = read_trace(write_csv("a.csv", "timestamp,cpu_cores,mem_gib\n0,1.5,3\n60,0.5,2\n"))
    assert a.cpu.tolist() == [1.5, 0.5] and a.mem.tolist() == [3.0, 2.0] and a.step_s == 60.0
    b = read_trace(write_csv("b.csv", "timestamp,cpu_cores\n0,1\n60,2\n"))
    assert not b.has_memory


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("unknown.csv", "time,load\n0,1\n", "unknown layout"),
    ("empty.csv", "", "is empty"),
    ("header.csv", "timestamp,cpu_cores\n", "no samples"),
    ("dup.csv", "timestamp,cpu_cores\n0,1\n0,1\n", "only 1 distinct timestamp"),
    ("nan.csv", "timestamp,cpu_cores\n0,1\nnan,1\n", "row 3 has no timestamp"),
    ("bytes.csv", "timestamp,value\n0,251643\n300,38516\n", "not a CPU percentage"),
    ("bad.csv", "timestamp,cpu_cores\n0,1\n60,lots\n", "not a number"),
])
def test_bad_files_name_the_file_and_the_fix(write_csv, name: str, text: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    p = write_csv(name, text)
    with pytest.raises(ConfigError) as e:
        read_trace(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "To fix:" in msg and "\n" not in msg


def test_missing_file_and_directory_expansion(tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError):
        read_trace(tmp_path / "nope.csv")
    write_csv("a.csv", "timestamp,cpu_cores\n0,1\n60,2\n")
    write_csv("summary.csv", "vm,cores\n1,2\n")  # not a trace: skipped inside a directory
    assert [p.name for p in expand([tmp_path])] == ["a.csv"]
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no trace files"):
        expand([empty])


@pytest.mark.data
def test_real_bitbrains_file_matches_the_formula(bitbrains: Path) -> None:
    import gzip

    f = sorted(bitbrains.glob("vm_*.csv.gz"))[0]
    with gzip.open(f, "rt") as fh:
        fh.readline()
        first = fh.readline().split(",")
    cores, cap, use = float(first[1]), float(first[2]), float(first[3])
    tr = read_trace(f)
    assert tr.cpu[0] == pytest.approx(use / (cap / cores))
    assert tr.mem[0] == pytest.approx(float(first[6]) / 1024 / 1024)
    assert len(tr) > 20_000 and np.all(np.diff(tr.t) > 0)
