"""kadnode.core.routing: k-bucket invariants under any operation stream, then the
eviction, failure and refresh rules with exact values. A fake clock throughout."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kadnode.config import RTO_ALPHA, RTO_BETA
from kadnode.core.addresses import Exempt
from kadnode.core.ids import ID_BITS, ID_MAX, log_distance
from kadnode.core.messages import Contact
from kadnode.core.routing import RoutingTable, rtt_update

GOOD_FOR = 100.0


# Bucket mechanics: the per-subnet admission limits (tests/core/test_admission.py)
# are lifted for the 10/8 the peers below live in.
MECHANICS = Exempt(["10.0.0.0/8"])


def table(owner: int = 0, k: int = 2, cache: int = 3, stale_limit: int = 3) -> RoutingTable:
    return RoutingTable(
        owner,
        k=k,
        replacement_cache=cache,
        stale_limit=stale_limit,
        good_for=GOOD_FOR,
        now=0.0,
        exempt=MECHANICS,
    )


def peer(node_id: int, host: str = "10.0.0.1", native: bool = False) -> Contact:
    return Contact(node_id, host, 4000 + node_id % 1000, native)


def ids_of(contacts: list[Contact]) -> list[int]:
    return [c.node_id for c in contacts]


# ---- invariants under random operation streams --------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    who: int  # index into the scenario's id pool
    address: int
    dt: float


@dataclass(frozen=True, slots=True)
class Failed:
    who: int


@dataclass(frozen=True, slots=True)
class Removed:
    who: int


@dataclass(frozen=True, slots=True)
class Query:
    target: int
    n: int
    exclude: int | None  # index into the id pool


@st.composite
def scenarios(draw: st.DrawFn, addresses_per_id: int) -> tuple:
    owner = draw(st.integers(0, ID_MAX))
    # Ids a few bits from the owner crowd the low buckets (one of them may be
    # the owner itself); a few far ones land in high buckets.
    near = st.integers(0, 15).map(lambda d: owner ^ d)
    far = st.integers(0, ID_MAX)
    pool = draw(st.lists(near, min_size=1, max_size=10, unique=True))
    pool += [i for i in draw(st.lists(far, max_size=3)) if i not in pool]
    who = st.integers(0, len(pool) - 1)
    seen = st.builds(
        Seen, who, st.integers(0, addresses_per_id - 1), st.sampled_from([0.0, 1.0, 30.0, GOOD_FOR])
    )
    ops = st.one_of(
        seen,
        seen,  # twice: sightings are what fill buckets and caches
        st.builds(Failed, who),
        st.builds(Removed, who),
        st.builds(Query, st.one_of(near, far), st.integers(0, 6), st.one_of(st.none(), who)),
    )
    params = dict(
        k=draw(st.integers(1, 4)),
        cache=draw(st.integers(0, 3)),
        stale_limit=draw(st.integers(1, 3)),
    )
    return owner, pool, params, draw(st.lists(ops, min_size=10, max_size=40))


def check_invariants(t: RoutingTable, owner: int, k: int) -> None:
    contacts = t.contacts()
    ids = ids_of(contacts)
    assert len(ids) == len(set(ids)) == len(t), "an id is in the table twice"
    assert owner not in t
    per_bucket = Counter(log_distance(owner, i) for i in ids)
    assert all(n <= k for n in per_bucket.values())
    for c in contacts:
        assert t.bucket_index(c.node_id) == log_distance(owner, c.node_id)
        assert t.get(c.node_id).contact == c
    addrs = [c.addr for c in contacts]
    assert len(addrs) == len(set(addrs)), "two ids at one address"


def brute_force_closest(t: RoutingTable, target: int, n: int, exclude: int | None) -> list[int]:
    everyone = sorted(ids_of(t.contacts()), key=lambda i: i ^ target)
    return [i for i in everyone if i != exclude][:n]


def run_scenario(scenario: tuple) -> None:
    owner, pool, params, ops = scenario
    t = RoutingTable(
        owner,
        good_for=GOOD_FOR,
        now=0.0,
        replacement_cache=params["cache"],
        k=params["k"],
        stale_limit=params["stale_limit"],
        exempt=MECHANICS,
    )
    now = 0.0
    for op in ops:
        if isinstance(op, Seen):
            now += op.dt
            contact = Contact(pool[op.who], f"10.0.{op.who}.{op.address}", 4000)
            bucket = t.bucket_index(contact.node_id)
            to_ping = t.seen(contact, now)
            if contact.node_id == owner:
                assert to_ping is None
            elif contact.node_id not in t:  # only a full bucket turns anyone away
                assert Counter(t.bucket_index(i) for i in ids_of(t.contacts()))[bucket] == t.k
            if to_ping is not None:  # ping-before-evict: an old or failing member of that bucket
                entry = t.get(to_ping.node_id)
                assert entry is not None and entry.contact == to_ping
                assert t.bucket_index(to_ping.node_id) == bucket
                assert entry.failures > 0 or now - entry.last_seen >= GOOD_FOR
        elif isinstance(op, Failed):
            before = t.get(pool[op.who])
            failures = before.failures if before else None
            dropped = t.failed(pool[op.who])
            assert dropped == (failures is not None and failures + 1 >= t.stale_limit)
            if dropped:
                assert pool[op.who] not in t
        elif isinstance(op, Removed):
            t.remove(pool[op.who])
            assert pool[op.who] not in t
        else:
            exclude = None if op.exclude is None else pool[op.exclude]
            got = ids_of(t.closest(op.target, op.n, exclude))
            assert got == brute_force_closest(t, op.target, op.n, exclude)
            # A reply's contacts, in any order: the same ones.
            unordered = ids_of(t.closest(op.target, op.n, exclude, ordered=False))
            assert sorted(unordered) == sorted(got)
        check_invariants(t, owner, t.k)
        nearest = brute_force_closest(t, owner, t.k, None)
        assert t.radius() == (nearest[-1] ^ owner if len(nearest) == t.k else None)
    for target in (owner, *pool):
        assert ids_of(t.closest(target, 8)) == brute_force_closest(t, target, 8, None)


INVARIANTS = settings(max_examples=100, deadline=None)


@INVARIANTS
@given(scenarios(addresses_per_id=1))
def test_table_invariants_hold_for_any_operation_stream(scenario: tuple) -> None:
    run_scenario(scenario)


@INVARIANTS
@given(scenarios(addresses_per_id=2))
@example(  # a regression example: the shortest stream that once broke the invariants
    (
        0,
        [4, 5, 6],
        {"k": 2, "cache": 3, "stale_limit": 1},
        [Seen(0, 0, 0.0), Seen(1, 0, 0.0), Seen(2, 0, 1.0), Seen(2, 1, 1.0), Failed(0), Failed(1)],
    )
)
def test_table_invariants_hold_when_ids_change_address(scenario: tuple) -> None:
    run_scenario(scenario)


# ---- closest ------------------------------------------------------------------------


def test_closest_is_exact_sorted_and_honours_exclude() -> None:
    t = table(owner=0, k=8)
    for i in range(1, 13):
        t.seen(peer(i), 0.0)
    # XOR distances to 5: 5->0 4->1 7->2 6->3 1->4 3->6 2->7 12->9 9->12 8->13 11->14 10->15
    assert ids_of(t.closest(5, 4)) == [5, 4, 7, 6]
    assert ids_of(t.closest(5, 4, exclude=5)) == [4, 7, 6, 1]
    assert ids_of(t.closest(5, 20)) == [5, 4, 7, 6, 1, 3, 2, 12, 9, 8, 11, 10]
    assert ids_of(t.closest(0, 3)) == [1, 2, 3]  # the owner's own id as target
    assert ids_of(t.closest(ID_MAX, 2)) == [12, 11]
    assert t.closest(5, 0) == []
    assert table().closest(5, 3) == []


def test_unordered_closest_has_the_same_contacts_and_skips_only_whole_buckets_sorting() -> None:
    t = table(owner=0, k=8)
    for i in (15, 14, 13, 12, 11, 10, 9, 8):  # one bucket (ids 8..15), farthest from 8 first
        t.seen(peer(i), 0.0)
    assert ids_of(t.closest(8, 3, ordered=False)) == [8, 9, 10]  # part of a bucket: sorted
    whole = ids_of(t.closest(8, 8, ordered=False))
    assert whole == [15, 14, 13, 12, 11, 10, 9, 8]  # the whole bucket, as it is held
    assert ids_of(t.closest(8, 8)) == sorted(whole)


# ---- ping-before-evict and the replacement cache -------------------------------------


def test_new_contacts_fill_a_bucket_up_to_k() -> None:
    t = table(k=2)
    assert t.seen(peer(4), 0.0) is None
    assert t.seen(peer(5), 1.0) is None
    assert sorted(t.contacts(), key=lambda c: c.node_id) == [peer(4), peer(5)]
    assert len(t) == 2 and 4 in t and 5 in t


def test_full_bucket_asks_for_no_ping_while_its_oldest_is_good() -> None:
    t = table(k=2)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 1.0)
    assert t.seen(peer(6), GOOD_FOR - 0.5) is None  # 4 was heard 99.5 s ago: still good
    assert 6 not in t
    assert len(t) == 2


def test_full_bucket_returns_its_least_recently_seen_contact_once_not_good() -> None:
    t = table(k=2)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 50.0)
    assert t.seen(peer(6), GOOD_FOR) == peer(4)  # good_for elapsed: ping 4 before evicting
    t.seen(peer(4), GOOD_FOR)  # 4 answered the ping: now 5 is the oldest
    assert t.seen(peer(7), 149.5) is None  # 5 was heard 99.5 s ago
    assert t.seen(peer(7), 150.0) == peer(5)
    assert 6 not in t and 7 not in t


def test_full_bucket_returns_an_oldest_contact_that_has_failed_even_if_recent() -> None:
    t = table(k=2)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 1.0)
    t.failed(4)
    assert t.seen(peer(6), 2.0) == peer(4)


def test_a_full_far_bucket_does_not_affect_a_near_one() -> None:
    t = table(k=1)
    t.seen(peer(4), 0.0)  # bucket 2
    assert t.seen(peer(8), 500.0) is None  # bucket 3 has room
    assert t.seen(peer(2), 500.0) is None  # bucket 1 has room
    assert t.seen(peer(5), 500.0) == peer(4)
    assert ids_of(t.closest(0, 5)) == [2, 4, 8]


# ---- failures -------------------------------------------------------------------------


def test_a_contact_survives_stale_limit_minus_one_failures() -> None:
    t = table(stale_limit=3)
    t.seen(peer(4), 0.0)
    assert t.failed(4) is False
    assert t.failed(4) is False
    assert 4 in t
    assert t.get(4).failures == 2
    assert t.failed(4) is True
    assert 4 not in t
    assert len(t) == 0
    assert t.failed(4) is False  # unknown ids are ignored


def test_hearing_from_a_contact_resets_its_failure_count() -> None:
    t = table(stale_limit=3)
    t.seen(peer(4), 0.0)
    t.failed(4)
    t.failed(4)
    t.seen(peer(4), 1.0)
    assert t.get(4).failures == 0
    assert t.failed(4) is False
    assert t.failed(4) is False
    assert 4 in t


def test_dropped_contact_is_replaced_by_the_newest_cached_one() -> None:
    t = table(k=2, cache=3, stale_limit=2)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 1.0)
    for newcomer in (6, 7):
        t.seen(peer(newcomer), 2.0)  # bucket full: both cached
    assert 6 not in t and 7 not in t
    t.failed(4)
    assert t.failed(4) is True
    assert sorted(ids_of(t.contacts())) == [5, 7]  # the most recently cached moves in
    t.failed(5)
    t.failed(5)
    assert sorted(ids_of(t.contacts())) == [6, 7]
    t.failed(6)
    t.failed(6)
    assert ids_of(t.contacts()) == [7]  # cache empty: the bucket shrinks


def test_a_promoted_replacement_is_pinged_before_the_next_newcomer_is_turned_away() -> None:
    t = table(k=2, cache=3, stale_limit=1)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 0.0)
    t.seen(peer(6), 50.0)  # bucket full: cached
    t.seen(peer(5), 60.0)
    assert t.failed(4)  # 6 moves in
    assert sorted(ids_of(t.contacts())) == [5, 6]
    # 6 has answered nothing since it was cached: it is not good, and the next
    # newcomer has it pinged, though its bucket was touched 10 s ago.
    assert t.seen(peer(7), 70.0) == peer(6)
    t.seen(peer(6), 70.0)  # it answered the ping
    assert t.seen(peer(8), 71.0) is None  # 5 is the oldest now, and good


@pytest.mark.parametrize(
    ("cache", "newcomers", "promoted"),
    [
        # A contact cached again becomes the newest replacement; 5 was cached once, not twice.
        pytest.param(3, (5, 6, 5), (5, 6), id="cached-again-is-newest"),
        # The cache keeps only the newest entries; 5 fell out of the cache of 2.
        pytest.param(2, (5, 6, 7), (7, 6), id="only-the-newest-are-kept"),
    ],
)
def test_the_replacement_cache_promotes_newest_first(
    cache: int, newcomers: tuple[int, ...], promoted: tuple[int, int]
) -> None:
    t = table(k=1, cache=cache, stale_limit=1)
    t.seen(peer(4), 0.0)
    for newcomer in newcomers:
        t.seen(peer(newcomer), 1.0)
    first, second = promoted
    assert t.failed(4)
    assert ids_of(t.contacts()) == [first]
    assert t.failed(first)
    assert ids_of(t.contacts()) == [second]
    assert t.failed(second)
    assert ids_of(t.contacts()) == []  # the cache is empty: nothing else was kept


def test_without_a_replacement_cache_a_dropped_contact_leaves_a_gap() -> None:
    t = table(k=1, cache=0, stale_limit=1)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 1.0)
    assert t.failed(4)
    assert len(t) == 0
    assert t.seen(peer(5), 2.0) is None
    assert ids_of(t.contacts()) == [5]


def test_an_id_cached_under_two_addresses_is_promoted_only_once() -> None:
    t = table(k=2, cache=3, stale_limit=1)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 0.0)
    t.seen(peer(6, host="10.0.0.1"), 1.0)  # cached
    t.seen(peer(6, host="10.0.0.2"), 2.0)  # cached again, under its new address
    t.failed(4)  # 6 @ 10.0.0.2 moves in
    t.failed(5)  # 6 @ 10.0.0.1 must not move in beside it
    assert ids_of(t.contacts()) == [6]
    assert len(t) == 1
    assert t.get(6).contact.host == "10.0.0.2"


# ---- same id, another address ------------------------------------------------------------


def test_a_healthy_entry_keeps_its_address_when_its_id_shows_up_elsewhere() -> None:
    t = table()
    t.seen(peer(4, host="10.0.0.1"), 0.0)
    assert t.seen(peer(4, host="10.6.6.6"), 5.0) is None
    entry = t.get(4)
    assert entry.contact.host == "10.0.0.1"
    assert entry.last_seen == 0.0  # the claim is not a sign of life either
    assert len(t) == 1


def test_an_entry_that_has_failed_takes_the_new_address() -> None:
    t = table()
    t.seen(peer(4, host="10.0.0.1"), 0.0)
    t.failed(4)
    assert t.seen(peer(4, host="10.0.0.2"), 5.0) is None
    entry = t.get(4)
    assert entry.contact == peer(4, host="10.0.0.2")
    assert entry.failures == 0
    assert entry.last_seen == 5.0
    assert len(t) == 1


def test_a_native_sighting_upgrades_the_entry_and_a_plain_one_does_not_downgrade_it() -> None:
    t = table()
    t.seen(peer(4), 0.0)
    t.seen(peer(4, native=True), 1.0)
    assert t.get(4).contact.native
    t.seen(peer(4, native=False), 2.0)
    assert t.get(4).contact.native
    assert t.get(4).last_seen == 2.0


def test_the_owner_is_never_added() -> None:
    t = table(owner=77)
    assert t.seen(peer(77), 0.0) is None
    assert 77 not in t
    assert len(t) == 0
    assert t.failed(77) is False


# ---- refresh ------------------------------------------------------------------------------


def test_stale_buckets_start_at_the_nearest_occupied_bucket() -> None:
    t = table(owner=0)
    assert t.stale_buckets(1000.0, 100.0) == []  # empty table: nothing to refresh
    t.seen(peer(8), 0.0)  # bucket 3
    t.seen(peer(32), 50.0)  # bucket 5
    assert t.stale_buckets(99.0, 100.0) == []
    assert t.stale_buckets(100.0, 100.0) == [3, 4, *range(6, ID_BITS)]
    t.touch(4, 90.0)
    assert t.stale_buckets(100.0, 100.0) == [3, *range(6, ID_BITS)]
    assert t.stale_buckets(150.0, 100.0) == [3, 5, *range(6, ID_BITS)]


def test_touch_ignores_indexes_outside_the_table() -> None:
    t = table(owner=0)
    t.seen(peer(1), 0.0)
    t.touch(-1, 500.0)
    t.touch(ID_BITS, 500.0)
    assert t.stale_buckets(100.0, 100.0) == list(range(ID_BITS))


def test_a_sighting_refreshes_its_bucket_even_when_the_bucket_is_full() -> None:
    t = table(owner=0, k=1)
    t.seen(peer(4), 0.0)
    t.seen(peer(5), 80.0)  # cached, but bucket 2 was still active
    assert 2 not in t.stale_buckets(100.0, 100.0)


# ---- RTT (RFC 6298 section 2) --------------------------------------------------------------


def test_rtt_update_first_sample() -> None:
    assert rtt_update(None, 0.0, 0.5, RTO_ALPHA, RTO_BETA) == (0.5, 0.25)


def test_rtt_update_later_samples() -> None:
    # RTTVAR = 3/4 * 0.25 + 1/4 * |0.5 - 1.5| = 0.4375, then SRTT = 7/8 * 0.5 + 1/8 * 1.5
    assert rtt_update(0.5, 0.25, 1.5, RTO_ALPHA, RTO_BETA) == (0.625, 0.4375)
    # A steady RTT decays the variation by 3/4 and keeps SRTT.
    assert rtt_update(1.0, 0.5, 1.0, RTO_ALPHA, RTO_BETA) == (1.0, 0.375)


def test_record_rtt_updates_the_entry_and_ignores_strangers() -> None:
    t = table()
    t.seen(peer(4), 0.0)
    t.record_rtt(4, 0.5, RTO_ALPHA, RTO_BETA)
    t.record_rtt(4, 1.5, RTO_ALPHA, RTO_BETA)
    entry = t.get(4)
    assert (entry.srtt, entry.rttvar) == (0.625, 0.4375)
    t.record_rtt(9, 1.0, RTO_ALPHA, RTO_BETA)
    assert t.get(9) is None
