"""The one consistent-hash ring (``sculpt.domain.ring``) — the one the load balancer routes by, the morph
planner plans key moves with, and the fake platform routes its clients by — proved with Hypothesis.

"One owner per key" is a property of *this* ring: each key has one owner, a member that takes traffic;
changing one member moves only keys onto or off that member; a member that is down hands its keys to
exactly the member that would own them were it gone. The load balancer, ``FakePlatform`` and the planner
agree on every owner because they call the same code, which the cross-checks below make sure of.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sculpt.domain import Fleet
from sculpt.domain.ring import build_ring, hash_point, owner_of
from sculpt.domain.spec import parse_spec
from sculpt.migrate.fake import FakePlatform
from sculpt.providers.local.lb import Backend, LoadBalancer

IDS = st.sampled_from([f"u{i}" for i in range(8)])
MEMBERS = st.dictionaries(IDS, st.integers(0, 60), max_size=6).map(lambda d: tuple(d.items()))
KEYS = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=40, unique=True)


@settings(max_examples=100, deadline=None)
@given(members=MEMBERS, keys=KEYS)
def test_each_key_has_one_owner_and_it_takes_traffic(members: tuple[tuple[str, int], ...], keys: list[str]) -> None:
    ring = build_ring(members)
    serving = {m for m, w in members if w > 0}
    for k in keys:
        o = ring.owner(k)
        assert (o is None) == (not serving)
        assert o is None or o in serving
        assert build_ring(reversed(members)).owner(k) == o  # member order does not matter


@settings(max_examples=100, deadline=None)
@given(members=MEMBERS, changed=IDS, weight=st.integers(0, 60), keys=KEYS)
def test_changing_one_member_moves_only_keys_onto_or_off_it(members: tuple[tuple[str, int], ...], changed: str,
                                                            weight: int, keys: list[str]) -> None:
    before = build_ring(members)
    after = build_ring((*((m, w) for m, w in members if m != changed), (changed, weight)))
    for k in keys:
        a, b = before.owner(k), after.owner(k)
        if a != b:
            assert changed in (a, b), (k, a, b)


@settings(max_examples=100, deadline=None)
@given(members=MEMBERS, keys=KEYS, down=st.sets(IDS, max_size=3))
def test_a_member_that_is_down_hands_its_keys_to_whoever_owns_them_without_it(
        members: tuple[tuple[str, int], ...], keys: list[str], down: set[str]) -> None:
    ring = build_ring(members)
    without = build_ring((m, w) for m, w in members if m not in down)
    healthy = {m: m not in down for m, _ in members}
    for k in keys:
        assert ring.owner(k, exclude=down) == without.owner(k)
        assert ring.owner(k, healthy=healthy) == without.owner(k)
        if ring.owner(k) not in down:
            assert ring.owner(k, exclude=down) == ring.owner(k)  # keys of members that are up stay put


def test_weights_are_shares_of_the_key_space() -> None:
    ring = build_ring([("a", 100), ("b", 300)])
    owners = [ring.owner(f"key-{i}") for i in range(4000)]
    assert 0.18 < owners.count("a") / len(owners) < 0.32  # a quarter, give or take the ring's unevenness


def test_the_ring_layout_is_pinned() -> None:
    """The points are a wire format: an agent and a controller of different versions must agree on them."""
    assert hash_point("a") == 4681665781835383343
    ring = build_ring([("a", 100), ("b", 100), ("c", 50)])
    assert [ring.owner(f"k{i}") for i in range(8)] == ["b", "c", "a", "b", "a", "a", "c", "a"]


@settings(max_examples=60, deadline=None)
@given(weights=st.lists(st.integers(0, 120), min_size=1, max_size=4), keys=KEYS,
       down=st.sets(st.integers(0, 3), max_size=2))
def test_the_load_balancer_and_the_fake_route_every_key_like_the_ring(weights: list[int], keys: list[str],
                                                                     down: set[int]) -> None:
    members = [(f"web-{i}", w) for i, w in enumerate(weights)]
    lb = LoadBalancer(routing="hash")  # not started: routing is a pure function of backends and health
    lb.set_backends([Backend(m, "127.0.0.1", 1, w) for m, w in members])
    spec = parse_spec({"fleet": "web", "shape": "std-1c-1024m", "region": "local-a",
                       "replicas": {"min": 0, "max": 5, "desired": 1}, "lb": {"routing": "hash"}})
    fleet = Fleet.from_spec(spec)
    fleet = fleet.with_slots([fleet.slots[0].model_copy(update={"id": m, "weight": w}) for m, w in members])
    fake = FakePlatform(fleet, keyed=True, unhealthy_slots=[f"web-{i}" for i in down])
    lb._healthy = {m: i not in down for i, (m, _) in enumerate(members)}
    ring = build_ring(members)
    for k in keys:
        want = ring.owner(k, exclude={f"web-{i}" for i in down})
        assert lb.owner(k) == want
        got = fake.route(k)
        assert (got.slot_id if got is not None else None) == want
        if any(w > 0 for w in weights):
            assert fake.owner(k, members) == owner_of(k, members) == ring.owner(k)
