"""Trace readers: turn recorded demand (Bitbrains, NAB, a generic CSV) into one ``Trace`` value per file.

A replay needs, per instance, the time of each sample, the CPU cores and memory GiB it used, and — when the
trace knows it — the shape it was provisioned with. Three layouts are recognised by their header:

- **Bitbrains** (GWA-T-12): ``timestamp_s, cpu_cores, cpu_capacity_mhz, cpu_usage_mhz, ..., mem_capacity_kb,
  mem_usage_kb``. Demand in cores = ``cpu_usage_mhz / (cpu_capacity_mhz / cpu_cores)``; memory =
  ``mem_usage_kb`` (KiB). Provisioned = the largest ``cpu_cores`` / ``mem_capacity_kb`` the VM had.
- **NAB** (``timestamp,value``): value is CPU % of a reference shape (``reference_shape``, default
  ``m5.large``: 2 vCPU — NAB does not record instance types; 2 vCPU is the smallest general-purpose size),
  so demand in cores = value / 100 · vCPU(reference). No memory.
- **generic**: ``timestamp`` (UNIX seconds or ISO 8601) + ``cpu_cores`` used [+ ``mem_gib`` used].

Files may be gzip-compressed (``.gz``). Unknown layouts, empty files and time going backwards raise
``ConfigError`` naming the file. Directories expand to the trace files inside them (other CSVs, like
Bitbrains' summaries, are skipped).

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "t.csv")
>>> _ = open(p, "w").write("timestamp,cpu_cores,mem_gib\\n0,1.5,2\\n300,0.5,2\\n")
>>> tr = read_trace(p)
>>> tr.layout, len(tr), tr.step_s, float(tr.cpu.max())
('generic', 2, 300.0, 1.5)
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sculpt.domain.errors import ConfigError, NotFoundError

KIB_PER_GIB = 1024.0 * 1024.0
DEFAULT_REFERENCE_SHAPE = "m5.large"  # 2 vCPU: NAB's CPU % is read as a share of this shape
DEFAULT_REFERENCE_VCPU = 2.0

BITBRAINS_COLUMNS = ("timestamp_s", "cpu_cores", "cpu_capacity_mhz", "cpu_usage_mhz", "mem_capacity_kb", "mem_usage_kb")


@dataclass(frozen=True)
class Trace:
    """One instance's recorded demand. ``mem`` is NaN where not measured; ``step_s`` the nominal step."""

    name: str
    path: str
    layout: str
    t: np.ndarray  # seconds since the epoch, strictly increasing
    cpu: np.ndarray  # CPU cores used
    mem: np.ndarray  # memory GiB used (NaN: unknown)
    step_s: float
    provisioned_cpu: float | None = None
    provisioned_mem_gib: float | None = None

    def __len__(self) -> int:
        return len(self.t)

    @property
    def hours(self) -> float:
        """Replayed time: every sample stands for one nominal step (gaps in the record are not billed)."""
        return len(self.t) * self.step_s / 3600.0

    @property
    def has_memory(self) -> bool:
        return bool(np.isfinite(self.mem).any())


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _layout(header: list[str]) -> str | None:
    cols = {c.strip().lower() for c in header}
    if all(c in cols for c in BITBRAINS_COLUMNS):
        return "bitbrains"
    if "timestamp" in cols and "cpu_cores" in cols:
        return "generic"
    if cols == {"timestamp", "value"}:
        return "nab"
    return None


def sniff_layout(path: str | Path) -> str | None:
    """The layout of ``path`` from its header, or ``None`` when it is not a trace sculpt can read."""
    p = Path(path)
    try:
        with _open_text(p) as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error):
        return None
    return _layout(header) if header else None


def _parse_time(values: list[str], path: Path) -> np.ndarray:
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            d = datetime.fromisoformat(v.strip())
        except ValueError:
            raise ConfigError(f"{path}: row {i + 2}: '{v}' is not a timestamp",
                              "write UNIX seconds or ISO 8601 (2014-02-14 14:30:00)") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        out[i] = d.timestamp()
    return out


def _columns(header: list[str], body: str, path: Path) -> dict[str, np.ndarray]:
    """Columns by lower-case name: a fast numeric parse, else a row-by-row one (ISO times, blanks)."""
    names = [h.strip().lower() for h in header]
    try:
        a = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2, dtype=np.float64)
        if a.shape[1] == len(names):
            return {n: a[:, i] for i, n in enumerate(names)}
    except ValueError:
        pass
    rows = [r for r in csv.reader(io.StringIO(body)) if r]
    out: dict[str, np.ndarray] = {}
    for i, n in enumerate(names):
        vals = [r[i].strip() if i < len(r) else "" for r in rows]
        if n in ("timestamp", "timestamp_s"):
            out[n] = _parse_time(vals, path)
            continue
        try:
            out[n] = np.array([float(v) if v != "" else math.nan for v in vals], dtype=np.float64)
        except ValueError:
            out[n] = np.full(len(vals), math.nan)
            if n in ("cpu_cores", "value", "mem_gib", "cpu_usage_mhz", "mem_usage_kb", "cpu_capacity_mhz"):
                raise ConfigError(f"{path}: column '{n}' has a value that is not a number",
                                  "fix or drop the bad rows") from None
    return out


def read_trace(path: str | Path, *, reference_shape_vcpu: float = DEFAULT_REFERENCE_VCPU) -> Trace:
    """Read one trace file (any known layout). ``reference_shape_vcpu`` scales NAB's CPU %."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"trace {p} does not exist", "pass an existing file or directory")
    try:
        with _open_text(p) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ConfigError(f"{p} cannot be read as CSV ({type(e).__name__})", "pass a CSV or gzip CSV trace") from None
    first_nl = text.find("\n")
    header_line = text if first_nl < 0 else text[:first_nl]
    header = next(csv.reader([header_line]), []) if header_line.strip() else []
    if not header:
        raise ConfigError(f"{p} is empty", "pass a trace with a header row and samples")
    layout = _layout(header)
    if layout is None:
        raise ConfigError(
            f"{p} has an unknown layout (columns: {', '.join(h.strip() for h in header[:8])})",
            "use Bitbrains columns, NAB 'timestamp,value' or a generic 'timestamp,cpu_cores[,mem_gib]' CSV")
    body = "" if first_nl < 0 else text[first_nl + 1:]
    if not body.strip():
        raise ConfigError(f"{p} has a header but no samples", "pass a trace with at least two rows")
    cols = _columns(header, body, p)
    ts_col = "timestamp_s" if layout == "bitbrains" else "timestamp"
    t = cols[ts_col]
    n = len(t)
    prov_cpu: float | None = None
    prov_mem: float | None = None
    if layout == "bitbrains":
        cores, cap, use = cols["cpu_cores"], cols["cpu_capacity_mhz"], cols["cpu_usage_mhz"]
        mem_cap = cols["mem_capacity_kb"]
        mem = cols["mem_usage_kb"] / KIB_PER_GIB
        with np.errstate(divide="ignore", invalid="ignore"):
            mhz_per_core = np.where((cores > 0) & (cap > 0), cap / np.where(cores > 0, cores, 1.0), np.nan)
            cpu = use / _fill(mhz_per_core)
        prov_cpu = float(np.nanmax(cores)) if np.isfinite(cores).any() else None
        prov_mem = float(np.nanmax(mem_cap)) / KIB_PER_GIB if np.isfinite(mem_cap).any() else None
        if prov_cpu is not None and prov_cpu <= 0:
            prov_cpu = None
        if prov_mem is not None and prov_mem <= 0:
            prov_mem = None
    elif layout == "nab":
        cpu = cols["value"] / 100.0 * reference_shape_vcpu
        mem = np.full(n, math.nan)
    else:
        cpu = cols["cpu_cores"]
        mem = cols["mem_gib"] if "mem_gib" in cols else np.full(n, math.nan)
    if len(t) < 2:
        raise ConfigError(f"{p} has only {len(t)} sample", "pass a trace with at least two rows")
    dt = np.diff(t)
    if not np.all(np.isfinite(t)) or (dt <= 0).any():
        bad = int(np.argmax(~(dt > 0))) + 3 if (dt <= 0).any() else 2
        raise ConfigError(f"{p}: time does not increase at row {bad}", "sort the trace by time and drop duplicates")
    cpu = np.clip(_fill(cpu), 0.0, None)
    if np.isfinite(mem).any():
        mem = np.clip(_fill(mem), 0.0, None)
    return Trace(name=_stem(p), path=str(p), layout=layout, t=t, cpu=cpu, mem=mem, step_s=float(np.median(dt)),
                 provisioned_cpu=prov_cpu, provisioned_mem_gib=prov_mem)


def _fill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaN/inf (then back-fill the head); all-NaN becomes zeros."""
    x = np.asarray(x, dtype=np.float64).copy()
    ok = np.isfinite(x)
    if ok.all():
        return x
    if not ok.any():
        return np.zeros_like(x)
    pos = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(pos, out=pos)
    first = int(np.argmax(ok))
    pos[:first] = first
    return x[pos]


def _stem(p: Path) -> str:
    name = p.name
    for suf in (".gz", ".csv"):
        name = name.removesuffix(suf)
    return name


def expand(paths: list[str] | list[Path]) -> list[Path]:
    """Files named, plus the trace files inside directories (sorted); errors name what is missing."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise NotFoundError(f"trace {p} does not exist", "pass existing trace files or directories")
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and (f.name.endswith(".csv") or f.name.endswith(".csv.gz"))
                           and sniff_layout(f) is not None)
            if not found:
                raise ConfigError(f"directory {p} holds no trace files sculpt can read",
                                  "put Bitbrains, NAB or generic CSV traces in it")
            out.extend(found)
        else:
            out.append(p)
    return out


def read_traces(paths: list[str] | list[Path], *, reference_shape_vcpu: float = DEFAULT_REFERENCE_VCPU) -> list[Trace]:
    return [read_trace(p, reference_shape_vcpu=reference_shape_vcpu) for p in expand(paths)]
