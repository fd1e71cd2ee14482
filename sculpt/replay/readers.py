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

Files may be gzip-compressed (``.gz``). Unknown layouts and empty files raise ``ConfigError`` naming the
file. Real recordings are repaired, not refused: rows out of time order are sorted and rows sharing a
timestamp collapse into one holding the maximum demand (collector restarts, overlapping monthly exports);
the trace's ``warning`` then says so in one line. Gaps stay as they are: every sample stands for one
nominal step, so a gap is not billed. A NAB file whose values are not a percentage (bytes, counts) is
refused with ``NotPercentError``. Directories expand to the trace files inside them (other CSVs, like
Bitbrains' summaries, are skipped); ``load_traces`` skips refused files inside directories with a warning.

>>> import tempfile
>>> p = Path(tempfile.mkdtemp()) / "t.csv"
>>> _ = p.write_text("timestamp,cpu_cores,mem_gib\\n0,1.5,2\\n300,0.5,2\\n")
>>> tr = read_trace(p)
>>> tr.layout, len(tr), tr.step_s, float(tr.cpu.max())
('generic', 2, 300.0, 1.5)
>>> _ = p.write_text("timestamp,cpu_cores\\n300,0.5\\n0,1\\n0,2\\n")
>>> tr = read_trace(p)
>>> tr.t.tolist(), tr.cpu.tolist(), tr.warning.endswith("1 row out of time order sorted, 1 duplicate timestamp collapsed (maximum demand kept)")
([0.0, 300.0], [2.0, 0.5], True)
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sculpt.domain.errors import ConfigError, NotFoundError

KIB_PER_GIB = 1024.0 * 1024.0
DEFAULT_REFERENCE_SHAPE = "m5.large"  # 2 vCPU: NAB's CPU % is read as a share of this shape
DEFAULT_REFERENCE_VCPU = 2.0
PCT_TOLERANCE = 1.0  # percentage points a NAB value may stray outside [0, 100] (rounding) and still be a CPU %

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
    warning: str | None = None  # what was repaired on reading (one line), None when nothing was

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
    """Read one trace file (any known layout). ``reference_shape_vcpu`` scales NAB's CPU %.

    Rows out of order are sorted, duplicate timestamps collapse to their maximum demand (``Trace.warning``
    says how many); ``NotPercentError`` when a NAB file's values are not a percentage."""
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
    if not np.isfinite(t).all():
        bad = int(np.argmax(~np.isfinite(t))) + 2
        raise ConfigError(f"{p}: row {bad} has no timestamp", "give every row a timestamp (UNIX s or ISO 8601)")
    unsorted = int((np.diff(t) < 0).sum())
    if unsorted:  # sort every column by time first, so derived values (clock rates filled forward) follow time
        order = np.argsort(t, kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
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
        _check_percent(cols["value"], p)
        cpu = cols["value"] / 100.0 * reference_shape_vcpu
        mem = np.full(n, math.nan)
    else:
        cpu = cols["cpu_cores"]
        mem = cols["mem_gib"] if "mem_gib" in cols else np.full(n, math.nan)
    cpu = np.clip(_fill(cpu), 0.0, None)
    if np.isfinite(mem).any():
        mem = np.clip(_fill(mem), 0.0, None)
    t, cpu, mem, dups = _collapse(t, cpu, mem)
    if len(t) < 2:
        raise ConfigError(f"{p} has only {len(t)} distinct timestamp(s)", "pass a trace with at least two samples")
    repaired = [s for s in (_count(unsorted, "row", "out of time order sorted"),
                            _count(dups, "duplicate timestamp", "collapsed (maximum demand kept)")) if s]
    warning = f"{p}: {', '.join(repaired)}" if repaired else None
    return Trace(name=_stem(p), path=str(p), layout=layout, t=t, cpu=cpu, mem=mem,
                 step_s=float(np.median(np.diff(t))), provisioned_cpu=prov_cpu, provisioned_mem_gib=prov_mem,
                 warning=warning)


class NotPercentError(ConfigError):
    """A NAB-layout file (``timestamp,value``) whose values cannot be a CPU percentage (bytes, counts)."""


def _check_percent(v: np.ndarray, p: Path) -> None:
    fin = v[np.isfinite(v)]
    if not len(fin):
        return
    lo, hi = float(fin.min()), float(fin.max())
    if hi > 100.0 + PCT_TOLERANCE or lo < -PCT_TOLERANCE:
        what = f"up to {hi:,.6g}" if hi > 100.0 + PCT_TOLERANCE else f"down to {lo:,.6g}"
        raise NotPercentError(f"{p}: NAB values run {what}: not a CPU percentage (bytes or counts?)",
                              "replay only CPU-utilisation series, or write cores in the generic "
                              "'timestamp,cpu_cores' layout")


def _collapse(t: np.ndarray, cpu: np.ndarray, mem: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Rows sharing a timestamp (``t`` sorted) become one with the maximum CPU and memory; returns the count merged."""
    keep = np.concatenate([[True], np.diff(t) > 0])
    if keep.all():
        return t, cpu, mem, 0
    starts = np.flatnonzero(keep)
    with np.errstate(invalid="ignore"):
        m = np.fmax.reduceat(mem, starts)
    return t[starts], np.fmax.reduceat(cpu, starts), m, int(len(t) - len(starts))


def _count(k: int, noun: str, what: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'} {what}" if k else ""


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


@dataclass(frozen=True)
class Loaded:
    """Traces read for a replay, and one line per file repaired or skipped (print them as warnings)."""

    traces: list[Trace]
    warnings: list[str]
    skipped: list[str]  # paths of files inside directories that were refused


def load_traces(paths: list[str] | list[Path], *, reference_shape_vcpu: float = DEFAULT_REFERENCE_VCPU,
                on_file: Callable[[], None] | None = None,
                exclude: Callable[[Path], str | None] | None = None) -> Loaded:
    """``read_traces`` for a replay: a file named explicitly that is refused is an error; one found inside a
    directory (a NAB folder mixing CPU % with byte counts) is skipped with its one-line reason as a warning.
    ``exclude`` may skip files found in directories before reading them (it returns the reason, or None).
    ``on_file`` is called after each file (progress)."""
    named = {Path(p) for p in paths if not Path(p).is_dir()}
    traces: list[Trace] = []
    warnings: list[str] = []
    skipped: list[str] = []
    for f in expand(paths):
        why = exclude(f) if exclude is not None and f not in named else None
        if why is not None:
            warnings.append(f"skipped {f}: {why}")
            skipped.append(str(f))
            continue
        try:
            tr = read_trace(f, reference_shape_vcpu=reference_shape_vcpu)
        except NotPercentError as e:
            if f in named:
                raise
            warnings.append(f"skipped {e.message}")
            skipped.append(str(f))
            continue
        finally:
            if on_file is not None:
                on_file()
        traces.append(tr)
        if tr.warning:
            warnings.append(tr.warning)
    if not traces:
        raise ConfigError(f"no trace of {', '.join(str(p) for p in paths)} can be replayed "
                          f"({len(skipped)} skipped)", "pass CPU traces: Bitbrains, NAB CPU % or generic")
    return Loaded(traces=traces, warnings=warnings, skipped=skipped)
