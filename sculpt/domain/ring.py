"""The weighted consistent-hash ring: which member a key belongs to, the one algorithm sculpt routes by.

Why it exists: the local load balancer routes ``lb.routing: hash`` requests by it, the morph planner asks
it which keys change owner when a slot is replaced (``sculpt.migrate.local``), and the in-memory fake
platform routes its simulated clients by it. One implementation means the keys the planner copies are the
keys the load balancer will send to the new owner, and the properties the tests prove hold for the
algorithm production runs.

A member with weight ``w`` gets ``w`` points on a 64-bit ring, point ``i`` at ``hash_point(f"{id}#{i}")``;
a key belongs to the member of the first point clockwise from ``hash_point(key)``. Points depend only on
(id, i), so adding, removing or re-weighting one member moves only keys onto or off that member's points.
Members with weight 0 have no points (they take no traffic). At routing time a member that is down (or
excluded for a retry) is skipped: the key goes to the next member clockwise.

>>> ring = build_ring([("a", 100), ("b", 100), ("c", 0)])
>>> ring.owner("user-42") in ("a", "b"), ring.members
(True, 2)
>>> first = ring.owner("user-42")
>>> ring.owner("user-42", exclude={first}) in ({"a", "b"} - {first})
True
>>> ring.owner("user-42", healthy={"a": False, "b": False}) is None
True
>>> build_ring([]).owner("anything") is None
True
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from functools import lru_cache

Member = tuple[str, int]
"""A ring member: (id, weight)."""


def hash_point(text: str) -> int:
    """A stable 64-bit point on the ring (same across processes and Python versions).

    >>> hash_point("a") == hash_point("a"), 0 <= hash_point("b") < 2**64
    (True, True)
    >>> hash_point("a")
    4681665781835383343
    """
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class HashRing:
    """Sorted ring points and, for each, the member that owns it (see the module docstring)."""

    points: tuple[int, ...]
    owners: tuple[str, ...]
    members: int
    """How many distinct members have points."""

    def owner(self, key: str, exclude: Set[str] = frozenset(), healthy: Mapping[str, bool] | None = None) -> str | None:
        """The member ``key`` goes to: the first one clockwise from its hash that is not in ``exclude`` and,
        when ``healthy`` is given, is marked healthy there (missing: not healthy). ``None``: no such member.

        >>> ring = build_ring([("a", 3), ("b", 3)])
        >>> [ring.owner(k) for k in ("x", "y", "z")] == [ring.owner(k) for k in ("x", "y", "z")]
        True
        """
        points, owners = self.points, self.owners
        n = len(points)
        if not n:
            return None
        i = bisect.bisect_left(points, hash_point(key))
        seen: set[str] = set()
        for j in range(n):
            o = owners[(i + j) % n]
            if o in seen:
                continue
            if (healthy is None or healthy.get(o, False)) and o not in exclude:
                return o
            seen.add(o)
            if len(seen) >= self.members:
                break
        return None


def build_ring(members: Iterable[Member]) -> HashRing:
    """The ring of ``members`` (id, weight): ``weight`` points each, members with weight <= 0 left out.

    >>> r = build_ring([("a", 2), ("b", 1)])
    >>> len(r.points), sorted(set(r.owners)), list(r.points) == sorted(r.points)
    (3, ['a', 'b'], True)
    """
    pts = sorted((hash_point(f"{mid}#{i}"), mid) for mid, w in members if w > 0 for i in range(w))
    return HashRing(tuple(p for p, _ in pts), tuple(o for _, o in pts), len({o for _, o in pts}))


@lru_cache(maxsize=256)
def ring_of(members: tuple[Member, ...]) -> HashRing:
    """``build_ring`` memoised for callers that ask about the same few rings key after key."""
    return build_ring(members)


def owner_of(key: str, members: Iterable[Member]) -> str | None:
    """The member that owns ``key`` on the ring of ``members`` with every member up.

    >>> owner_of("k", [("a", 100)])
    'a'
    >>> owner_of("k", [("a", 0)]) is None
    True
    """
    return ring_of(tuple(members)).owner(key)
