"""State sync: move an application's state from the instances that own it to the ones that will.

Why it exists: a blue/green morph is only safe if green holds every acknowledged write before it takes
traffic. Four strategies (``app.state_sync.strategy``):

- ``http``: full checkpoint from blue → restore into green while blue serves (the bulk), then, while the
  load balancer holds new requests and blue is read-only, the delta since that checkpoint.
- ``command``: the user's ``checkpoint_command`` on blue and ``restore_command`` on green, once while blue
  serves and once more under the pause. Placeholders: ``{url}`` (instance base URL), ``{data_dir}``,
  ``{file}`` (a scratch file the two commands share), ``{since}`` (0 for a full copy).
- ``volume``: on a platform that moves the data volume itself (``Platform.moves_volume``: AWS, where the
  shift's stack update stops blue, detaches its EBS volume and attaches it to green), nothing is copied: the
  state travels with the volume, and back with it in a rollback. That costs an outage: a volume attaches to
  one instance at a time and an ALB cannot hold requests, so requests fail from blue's stop until green's
  app is up (a warning says so when such a morph starts). Elsewhere (the local provider), blue's data
  directory is copied to green's before green starts (green boots from it, as from an attached snapshot)
  and the writes after the copy move as an HTTP delta under the pause.
- ``none``: stateless application.

With consistent-hash routing (``lb.routing: hash``) over several replicas, only the keys whose owner
changes move, each to its new owner: a key owned by ``s`` before the shift and by ``d != s`` after it goes
from ``s`` to ``d``. The pure helper :func:`moving_keys` says which.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sculpt.domain.errors import ConfigError, ProviderError
from sculpt.domain.spec import StateSync
from sculpt.migrate.port import Checkpoint, SyncPort

log = logging.getLogger("sculpt.migrate.sync")

Ring = tuple[tuple[str, int], ...]
"""Hash-ring members: (slot id, weight) of every slot that takes traffic."""
Owner = Callable[[str, Ring], str]


def moving_keys(keys: Iterable[str], source: str, before: Ring, after: Ring, owner: Owner) -> dict[str, set[str]]:
    """Keys that ``source`` owns under ``before`` and another slot owns under ``after``, by new owner.

    >>> own = lambda k, ring: ring[int(k) % len(ring)][0]
    >>> moved = moving_keys(["0", "1", "2", "3"], "a", (("a", 100), ("b", 100)), (("c", 100), ("b", 100)), own)
    >>> {dest: sorted(keys) for dest, keys in moved.items()}
    {'c': ['0', '2']}
    """
    out: dict[str, set[str]] = {}
    for k in keys:
        if owner(k, before) != source:
            continue
        dest = owner(k, after)
        if dest != source:
            out.setdefault(dest, set()).add(k)
    return out


@dataclass
class StateHandover:
    """One replica's handover: which slots serve before and after the shift, and how far each was copied.

    ``pairs`` maps each retiring blue slot to its green; ``before``/``after`` are the serving slots (the
    hash ring members) on either side of the shift; ``seqs`` is each source's seq at its last copy.
    """

    pairs: dict[str, str]
    before: Ring
    after: Ring
    keyed: bool
    seqs: dict[str, int] = field(default_factory=dict)

    def reversed(self) -> StateHandover:
        return StateHandover({g: b for b, g in self.pairs.items()}, self.after, self.before, self.keyed)

    def to_json(self) -> dict[str, object]:
        return {"pairs": self.pairs, "before": list(self.before), "after": list(self.after), "keyed": self.keyed,
                "seqs": self.seqs}

    @staticmethod
    def from_json(d: dict[str, object]) -> StateHandover:
        def ring(v: object) -> Ring:
            return tuple((str(m[0]), int(m[1])) for m in v)  # type: ignore[attr-defined]

        return StateHandover(dict(d["pairs"]), ring(d["before"]), ring(d["after"]),  # type: ignore[call-overload]
                             bool(d["keyed"]), {str(k): int(v) for k, v in dict(d.get("seqs") or {}).items()})  # type: ignore[call-overload]

    def sources(self) -> list[str]:
        """Slots whose state may have to move: every ring member when keyed, else the retiring blues."""
        return [sid for sid, _ in self.before] if self.keyed else list(self.pairs)

    def after_ids(self) -> list[str]:
        return [sid for sid, _ in self.after]


class Syncer:
    """Runs one strategy against a platform. Stateless apart from the handover it is given."""

    def __init__(self, platform: SyncPort, config: StateSync, *, command_timeout_s: float = 60.0) -> None:
        self.p = platform
        self.cfg = config
        self.command_timeout_s = command_timeout_s

    @property
    def strategy(self) -> str:
        return self.cfg.strategy

    def _volume_moves(self) -> bool:
        """``volume`` on a platform that moves the volume itself: no copy, no delta, no reverse copy."""
        return self.strategy == "volume" and self.p.moves_volume()

    def check(self, keyed: bool, replicas: int) -> None:
        """Refuse combinations that cannot keep one writer per key."""
        if keyed and self.strategy in ("command", "volume") and replicas > 1:
            raise ConfigError(
                f"state_sync '{self.strategy}' moves whole instances, but lb.routing: hash moves key ranges",
                "use app.state_sync.strategy: http for a hash-routed fleet",
            )
        if self.strategy == "command" and not (self.cfg.checkpoint_command and self.cfg.restore_command):
            raise ConfigError("state_sync 'command' needs checkpoint_command and restore_command",
                              "set both under app.state_sync in sculpt.yaml")

    # -- steps -------------------------------------------------------------------------------------------
    def before_provision(self, h: StateHandover) -> None:
        """``volume``: seed each green's data directory from its blue's before green starts (or, where the
        platform moves the volume itself, say that the handover is an outage and copy nothing)."""
        if self.strategy != "volume":
            return
        if self._volume_moves():
            for blue, green in h.pairs.items():
                log.warning("state_sync 'volume': the shift moves the data volume from %s to %s; it attaches to "
                            "one instance at a time and the load balancer cannot hold requests, so requests "
                            "fail from %s's stop until %s's app is healthy", blue, green, blue, green)
            return
        for blue, green in h.pairs.items():
            src, dst = self.p.data_dir(blue), self.p.data_dir(green)
            if src is None or dst is None:
                raise ConfigError("state_sync 'volume' needs instances with data directories",
                                  "use strategy http or command for this provider")
            h.seqs[blue] = self.p.checkpoint(blue, since=2**62).seq  # seq now; later writes go in the delta
            if src.exists():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.tmp", "*.lock", "*.pid"))

    def presync(self, h: StateHandover) -> int:
        """The bulk copy while blue serves. Returns the number of keys moved."""
        if self.strategy in ("none", "volume"):
            return 0
        if self.strategy == "command":
            for blue, green in h.pairs.items():
                self._commands(blue, green, since=0)
            return 0
        return self._http(h, full=True)

    def final_delta(self, h: StateHandover) -> int:
        """What changed since the bulk copy; called while traffic is held and sources are idle."""
        if self.strategy == "none" or self._volume_moves():
            return 0
        if self.strategy == "command":
            for blue, green in h.pairs.items():
                self._commands(blue, green, since=0)
            return 0
        return self._http(h, full=False)

    def reverse(self, h: StateHandover) -> int:
        """Rollback after the shift: copy what green(s) took back to the slots that owned it before (a
        moved volume goes back with the re-applied version instead)."""
        if self.strategy == "none" or self._volume_moves():
            return 0
        back = h.reversed()
        if self.strategy == "command":
            for green, blue in back.pairs.items():
                self._commands(green, blue, since=0)
            return 0
        return self._http(back, full=True)

    # -- transports ---------------------------------------------------------------------------------------
    def _http(self, h: StateHandover, *, full: bool) -> int:
        moved = 0
        for src in h.sources():
            since = 0 if full else h.seqs.get(src, 0)
            cp = self.p.checkpoint(src, since=since)
            if h.keyed:
                keys = set(cp.items) | set(cp.deleted)
                routes = moving_keys(keys, src, h.before, h.after, self.p.owner)
            else:
                routes = {h.pairs[src]: set(cp.items) | set(cp.deleted)}
            for dest, ks in sorted(routes.items()):
                part = cp.only(ks) if h.keyed else cp
                if not part.items and not part.deleted:
                    continue
                self.p.restore(dest, part)
                moved += len(part.items) + len(part.deleted)
            h.seqs[src] = cp.seq
        return moved

    def _commands(self, src: str, dst: str, since: int) -> None:
        with tempfile.TemporaryDirectory(prefix="sculpt-sync-") as tmp:
            scratch = Path(tmp) / "state"
            self._run(self.cfg.checkpoint_command or "", src, scratch, since)
            self._run(self.cfg.restore_command or "", dst, scratch, since)

    def _run(self, template: str, slot: str, scratch: Path, since: int) -> None:
        url = self.p.instance_url(slot) or ""
        ddir = self.p.data_dir(slot)
        cmd = (template.replace("{url}", shlex.quote(url))
               .replace("{data_dir}", shlex.quote(str(ddir or "")))
               .replace("{file}", shlex.quote(str(scratch)))
               .replace("{since}", str(since)))
        try:
            done = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=self.command_timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ProviderError(f"state sync command timed out after {self.command_timeout_s:g}s: {cmd}",
                                "make the command finish faster") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise ProviderError(f"state sync command failed (exit {done.returncode}) on {slot}: {last[0]}",
                                "run the command by hand to see why")


def checkpoint_json(cp: Checkpoint) -> str:
    return json.dumps(cp.to_json(), separators=(",", ":"))
