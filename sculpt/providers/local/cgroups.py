"""Enforce an instance's shape on a local process, as strictly as this machine allows.

Three modes, detected once and reported plainly as ``enforcement``:

* ``cgroup-v1`` — a ``cpu`` and a ``memory`` group per instance (``cpu.cfs_quota_us``/``cpu.cfs_period_us``,
  ``memory.limit_in_bytes``); limits of a running process change live (the seed's "hot-add").
* ``cgroup-v2`` — one group per instance (``cpu.max``, ``memory.max``); also live.
* ``affinity+rlimit`` — no writable cgroups (most laptops): the process is pinned to ``ceil(vcpu)`` cores and
  its address space capped with ``RLIMIT_AS`` (memory limit plus a fixed allowance, because address space
  is not resident memory). Limits apply at start only: no live resize.

Groups are created *under the agent's own cgroup* (``<mount>/<own path>/sculpt/<stack>/<instance>``), so
whatever accounts for the agent keeps accounting for its instances, and two state directories running a
stack of the same name never share a group (the stack directory carries a short hash of the state dir).

``SCULPT_ENFORCEMENT=affinity+rlimit`` forces the fallback (tests, or users who do not want cgroups).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from sculpt.domain.errors import ProviderError

Mode = Literal["cgroup-v1", "cgroup-v2", "affinity+rlimit"]
MODES: tuple[Mode, ...] = ("cgroup-v1", "cgroup-v2", "affinity+rlimit")

CFS_PERIOD_US = 100_000
MIB = 1024 * 1024
# RLIMIT_AS caps virtual address space, which an interpreter reserves far beyond what it touches.
RLIMIT_AS_ALLOWANCE_MB = 1024

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """What a shape grants one instance: CPU cores (may be fractional) and memory in MiB."""

    cpu: float
    mem_mb: int

    @classmethod
    def of(cls, vcpu: float, memory_gib: float) -> Limits:
        return cls(cpu=float(vcpu), mem_mb=int(round(memory_gib * 1024)))

    def cfs_quota_us(self, period_us: int = CFS_PERIOD_US) -> int:
        """CFS quota for ``cpu`` cores (at least 1 ms, the kernel's minimum)."""
        return max(1000, int(round(self.cpu * period_us)))


class Enforcer(Protocol):
    """Puts a process under limits, changes them, and cleans up after it."""

    mode: Mode
    live_resize: bool

    def attach(self, pid: int, name: str, limits: Limits) -> None:
        """Limit ``pid`` (just started) to ``limits`` in a group called ``name``."""
        ...

    def adopt(self, pid: int, name: str, limits: Limits) -> None:
        """Take over ``pid``, started (and limited) by an earlier agent, as group ``name``."""
        ...

    def dirs(self) -> list[Path]:
        """The stack's group directories (recorded, so ``sculpt down`` can remove them without an agent)."""
        ...

    def resize(self, name: str, limits: Limits) -> None:
        """Change the limits of a running group (``ProviderError`` where impossible)."""
        ...

    def release(self, name: str) -> None:
        """Remove the group of a stopped process (idempotent)."""
        ...

    def cleanup(self) -> None:
        """Remove the stack's (empty) groups: on agent start and shutdown."""
        ...

    def read(self, name: str) -> dict[str, float | int | None]:
        """The limits the kernel really holds for ``name`` (for status and tests)."""
        ...


def _own_path(controller: str) -> str:
    """This process's cgroup path for ``controller`` (v1), or the unified path (``controller == ''``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ctrls = parts[1].split(",") if parts[1] else [""]
        if controller in ctrls:
            return parts[2] or "/"
    return "/"


def group_dir_name(stack: str, state_dir: str | Path) -> str:
    """``<stack>-<8 hex of the state dir>``: one directory per (state dir, stack)."""
    digest = hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:8]
    return f"{stack}-{digest}"


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        if e.errno == errno.EBUSY and path.name.startswith("memory."):
            raise ProviderError(f"cannot lower the memory limit to {int(value) // MIB} MiB: the instance uses more "
                                "than that now", "pick a larger shape, or use --strategy blue-green",
                                retryable=False) from None
        raise ProviderError(f"cannot write {value.strip()} to {path}: {e.strerror}",
                            "check that the cgroup is writable, or set SCULPT_ENFORCEMENT=affinity+rlimit") from None


def remove_dirs(dirs: list[Path]) -> list[Path]:
    """Remove recorded group directories (and the shared ``sculpt`` parent when empty); return those that
    are still there (a process still in them)."""
    for d in dirs:
        _rmdir_tree(d)
        with contextlib.suppress(OSError):
            d.parent.rmdir()
    return [d for d in dirs if d.is_dir()]


def _rmdir_tree(d: Path) -> None:
    """Remove a cgroup directory and its (empty) children, deepest first; ignore busy ones."""
    if not d.is_dir():
        return
    for child in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        d.rmdir()


class CgroupV1:
    """Separate ``cpu`` and ``memory`` hierarchies (cgroup v1)."""

    mode: Mode = "cgroup-v1"
    live_resize = True

    def __init__(self, stack_dir: str, root: Path = CGROUP_ROOT) -> None:
        self.cpu_base = root / "cpu" / _own_path("cpu").lstrip("/") / "sculpt" / stack_dir
        self.mem_base = root / "memory" / _own_path("memory").lstrip("/") / "sculpt" / stack_dir

    @classmethod
    def usable(cls, root: Path = CGROUP_ROOT) -> bool:
        cpu, mem = root / "cpu", root / "memory"
        if not (cpu / "cpu.cfs_quota_us").exists() or not (mem / "memory.limit_in_bytes").exists():
            return False
        return _probe(cpu / _own_path("cpu").lstrip("/")) and _probe(mem / _own_path("memory").lstrip("/"))

    def _dirs(self, name: str) -> tuple[Path, Path]:
        return self.cpu_base / name, self.mem_base / name

    def dirs(self) -> list[Path]:
        return [self.cpu_base, self.mem_base]

    def adopt(self, pid: int, name: str, limits: Limits) -> None:
        self.attach(pid, name, limits)  # idempotent: same group, same limits, the pid stays where it is

    def attach(self, pid: int, name: str, limits: Limits) -> None:
        cpu, mem = self._dirs(name)
        for d in (cpu, mem):
            d.mkdir(parents=True, exist_ok=True)
        self.resize(name, limits)
        _write(cpu / "cgroup.procs", str(pid))
        _write(mem / "cgroup.procs", str(pid))

    def resize(self, name: str, limits: Limits) -> None:
        cpu, mem = self._dirs(name)
        if not cpu.is_dir() or not mem.is_dir():
            raise ProviderError(f"no cgroup for instance '{name}'", "re-apply the fleet with `sculpt up`")
        _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(limits.cfs_quota_us()))
        _write(mem / "memory.limit_in_bytes", str(limits.mem_mb * MIB))

    def read(self, name: str) -> dict[str, float | int | None]:
        cpu, mem = self._dirs(name)
        try:
            quota = int((cpu / "cpu.cfs_quota_us").read_text())
            period = int((cpu / "cpu.cfs_period_us").read_text())
            limit = int((mem / "memory.limit_in_bytes").read_text())
        except (OSError, ValueError):
            return {"cpu": None, "mem_mb": None, "quota_us": None, "period_us": None}
        return {"cpu": quota / period if quota > 0 else None, "mem_mb": limit // MIB,
                "quota_us": quota, "period_us": period}

    def release(self, name: str) -> None:
        for d in self._dirs(name):
            _rmdir_tree(d)

    def cleanup(self) -> None:
        for base in (self.cpu_base, self.mem_base):
            _rmdir_tree(base)
            with contextlib.suppress(OSError):
                base.parent.rmdir()  # the shared "sculpt" dir, when no other stack uses it


class CgroupV2:
    """The unified hierarchy (cgroup v2) with the ``cpu`` and ``memory`` controllers delegated to us."""

    mode: Mode = "cgroup-v2"
    live_resize = True

    def __init__(self, stack_dir: str, root: Path = CGROUP_ROOT) -> None:
        self.unified = _unified_mount(root)
        self.base = self.unified / _own_path("").lstrip("/") / "sculpt" / stack_dir

    @classmethod
    def usable(cls, root: Path = CGROUP_ROOT) -> bool:
        """True only if a child group really gets the ``cpu`` and ``memory`` controllers (v2's "no internal
        processes" rule can forbid enabling them under a group that holds processes, e.g. our own)."""
        uni = _unified_mount(root)
        own = uni / _own_path("").lstrip("/")
        try:
            ctrls = (own / "cgroup.controllers").read_text().split()
        except OSError:
            return False
        if not {"cpu", "memory"} <= set(ctrls):
            return False
        with contextlib.suppress(OSError):
            (own / "cgroup.subtree_control").write_text("+cpu +memory")
        probe = own / f"sculpt-probe-{os.getpid()}"
        try:
            probe.mkdir(exist_ok=True)
            got = set((probe / "cgroup.controllers").read_text().split())
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()
        return {"cpu", "memory"} <= got

    def dirs(self) -> list[Path]:
        return [self.base]

    def adopt(self, pid: int, name: str, limits: Limits) -> None:
        self.attach(pid, name, limits)

    def attach(self, pid: int, name: str, limits: Limits) -> None:
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        # enable the controllers down the path (sculpt/, sculpt/<stack>/)
        for parent in (self.base.parent.parent, self.base.parent, self.base):
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+cpu +memory")
        self.resize(name, limits)
        _write(d / "cgroup.procs", str(pid))

    def resize(self, name: str, limits: Limits) -> None:
        d = self.base / name
        if not d.is_dir():
            raise ProviderError(f"no cgroup for instance '{name}'", "re-apply the fleet with `sculpt up`")
        _write(d / "cpu.max", f"{limits.cfs_quota_us()} {CFS_PERIOD_US}")
        _write(d / "memory.max", str(limits.mem_mb * MIB))

    def read(self, name: str) -> dict[str, float | int | None]:
        d = self.base / name
        try:
            quota_s, period_s = (d / "cpu.max").read_text().split()
            mem_s = (d / "memory.max").read_text().strip()
        except (OSError, ValueError):
            return {"cpu": None, "mem_mb": None, "quota_us": None, "period_us": None}
        quota = None if quota_s == "max" else int(quota_s)
        return {"cpu": quota / int(period_s) if quota else None,
                "mem_mb": None if mem_s == "max" else int(mem_s) // MIB,
                "quota_us": quota, "period_us": int(period_s)}

    def release(self, name: str) -> None:
        _rmdir_tree(self.base / name)

    def cleanup(self) -> None:
        _rmdir_tree(self.base)
        with contextlib.suppress(OSError):
            self.base.parent.rmdir()


class AffinityRlimit:
    """No writable cgroups: pin to ``ceil(cpu)`` cores and cap the address space. Start-time only."""

    mode: Mode = "affinity+rlimit"
    live_resize = False

    def __init__(self) -> None:
        self._limits: dict[str, Limits] = {}
        self._next = 0

    def attach(self, pid: int, name: str, limits: Limits) -> None:
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = list(range(os.cpu_count() or 1))
        n = max(1, min(len(cpus), math.ceil(limits.cpu)))
        chosen = {cpus[(self._next + i) % len(cpus)] for i in range(n)}
        self._next = (self._next + n) % len(cpus)
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(pid, chosen)
        cap = (limits.mem_mb + RLIMIT_AS_ALLOWANCE_MB) * MIB
        with contextlib.suppress(AttributeError, OSError, ValueError):
            resource.prlimit(pid, resource.RLIMIT_AS, (cap, cap))
        self._limits[name] = limits

    def adopt(self, pid: int, name: str, limits: Limits) -> None:
        self._limits[name] = limits  # pinned and capped when it started; nothing to redo

    def dirs(self) -> list[Path]:
        return []

    def resize(self, name: str, limits: Limits) -> None:
        raise ProviderError("in-place resize needs writable cgroups", "use --strategy blue-green",
                            retryable=False)

    def read(self, name: str) -> dict[str, float | int | None]:
        lim = self._limits.get(name)
        return {"cpu": float(math.ceil(lim.cpu)) if lim else None, "mem_mb": lim.mem_mb if lim else None,
                "quota_us": None, "period_us": None}

    def release(self, name: str) -> None:
        self._limits.pop(name, None)

    def cleanup(self) -> None:
        self._limits.clear()


def _unified_mount(root: Path) -> Path:
    """``/sys/fs/cgroup`` on a pure v2 system, ``/sys/fs/cgroup/unified`` on a hybrid one."""
    if (root / "cgroup.controllers").exists():
        return root
    return root / "unified"


def _probe(parent: Path) -> bool:
    """Can we create (and remove) a group under ``parent``?"""
    probe = parent / f"sculpt-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except FileExistsError:
        pass
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.rmdir()
    return True


def detect_mode(root: Path = CGROUP_ROOT) -> Mode:
    """The strongest enforcement this process can use (``SCULPT_ENFORCEMENT`` overrides)."""
    forced = os.environ.get("SCULPT_ENFORCEMENT", "").strip()
    if forced:
        if forced not in MODES:
            from sculpt.domain.errors import ConfigError

            raise ConfigError(f"SCULPT_ENFORCEMENT='{forced}' is not a mode", f"use one of: {', '.join(MODES)}")
        return forced
    if CgroupV2.usable(root) and not (root / "cpu" / "cpu.cfs_quota_us").exists():
        return "cgroup-v2"
    if CgroupV1.usable(root):
        return "cgroup-v1"
    if CgroupV2.usable(root):
        return "cgroup-v2"
    return "affinity+rlimit"


def make_enforcer(stack: str, state_dir: str | Path, mode: Mode | None = None,
                  root: Path = CGROUP_ROOT) -> Enforcer:
    """The enforcer for ``stack`` in ``state_dir`` (``mode`` defaults to ``detect_mode()``)."""
    m = mode or detect_mode(root)
    name = group_dir_name(stack, state_dir)
    if m == "cgroup-v1":
        return CgroupV1(name, root)
    if m == "cgroup-v2":
        return CgroupV2(name, root)
    return AffinityRlimit()
