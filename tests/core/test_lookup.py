"""kadnode.core.lookup: the iterative lookup as a state machine, driven by hand.

Most tests look up target 0, so a contact's id is its XOR distance to the
target and "nearest first" reads as "smallest id first".
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from kadnode.core.lookup import CONVERGED_WIDTH, Lookup, LookupOutcome
from kadnode.core.messages import Contact, Kind

SELF = 1000  # the id of the node running the lookup; not in anyone's network below


def c(node_id: int, native: bool = False, host: str = "10.0.0.1") -> Contact:
    return Contact(node_id, host, 4000 + node_id, native)


def lookup(*seeds: int, k: int = 3, alpha: int = 2, want_value: bool = False) -> Lookup:
    return Lookup(0, [c(i) for i in seeds], k=k, alpha=alpha, self_id=SELF, want_value=want_value)


def ids(contacts: list[Contact]) -> list[int]:
    return [x.node_id for x in contacts]


# ---- the replica set --------------------------------------------------------------------


def test_the_replica_set_is_the_k_nearest_that_answered_or_failed() -> None:
    lk = lookup(1, 2, 3, 4, k=3, alpha=4)
    lk.next_requests()
    lk.answered_nodes(c(1), [])
    lk.failed_request(2)
    lk.answered_nodes(c(3), [])
    lk.answered_nodes(c(4), [])
    outcome = lk.outcome()
    assert outcome.replica_ids == (1, 2, 3) and not outcome.self_replica
    assert outcome.replica_set == 3


def test_the_asker_is_a_replica_when_it_is_among_the_k_nearest() -> None:
    lk = Lookup(0, [c(1), c(2000), c(3000)], k=3, alpha=3, self_id=SELF)
    lk.next_requests()
    for node_id in (1, 2000, 3000):
        lk.answered_nodes(c(node_id), [])
    outcome = lk.outcome()
    assert outcome.replica_ids == (1, SELF, 2000)  # 3000 is beyond the k = 3 nearest
    assert outcome.self_replica and ids(outcome.closest) == [1, 2000, 3000]


def test_an_asker_that_knows_nobody_is_its_own_replica_set() -> None:
    outcome = Lookup(0, [], k=3, alpha=3, self_id=SELF).outcome()
    assert outcome.replica_ids == (SELF,) and outcome.self_replica


# ---- order and concurrency ----------------------------------------------------------


def test_asks_the_nearest_seeds_first_and_at_most_alpha_at_once() -> None:
    lk = lookup(5, 3, 1, 4, 2, alpha=2)
    assert ids(lk.next_requests()) == [1, 2]
    assert lk.in_flight == 2
    assert lk.next_requests() == []  # both slots busy


def test_each_reply_frees_one_slot_for_the_next_nearest() -> None:
    lk = lookup(2, 3, 4, 5, k=4, alpha=2)
    lk.next_requests()
    lk.answered_nodes(c(3), [c(1)])  # a nearer node: still alpha at a time
    assert ids(lk.next_requests()) == [1]
    lk.failed_request(2)
    assert ids(lk.next_requests()) == [4]
    assert lk.in_flight == 2


def test_a_reply_with_nobody_nearer_widens_to_twice_alpha_among_the_k_nearest() -> None:
    """Kademlia 2.3: a round that finds nobody closer than the closest already
    seen goes on to the k closest not yet queried, here CONVERGED_WIDTH times
    alpha at once; a nearer node found later goes back to alpha at a time."""
    lk = lookup(4, 5, 6, 7, 8, 9, k=5, alpha=2)
    assert ids(lk.next_requests()) == [4, 5]
    lk.answered_nodes(c(5), [c(6), c(10)])  # nobody nearer than 4
    assert lk.converged
    assert CONVERGED_WIDTH * lk.alpha == 4
    assert ids(lk.next_requests()) == [6, 7, 8]  # 4 in flight, all of the 5 nearest
    lk.answered_nodes(c(6), [c(1)])  # a nearer one after all
    assert not lk.converged and ids(lk.next_requests()) == []  # 3 in flight: over alpha
    lk.answered_nodes(c(4), [])
    lk.answered_nodes(c(7), [])
    lk.answered_nodes(c(8), [])  # converged again, with 1 among the 5 nearest
    assert ids(lk.next_requests()) == [1]


def test_a_wide_lookup_asks_all_of_the_k_nearest_once_converged() -> None:
    lk = Lookup(0, [c(i) for i in range(4, 13)], k=8, alpha=2, self_id=SELF, wide=True)
    assert ids(lk.next_requests()) == [4, 5]
    lk.answered_nodes(c(5), [c(6), c(20)])  # nobody nearer than 4
    # the rest of the 8 nearest at once, not CONVERGED_WIDTH x alpha = 4 in flight
    assert ids(lk.next_requests()) == [6, 7, 8, 9, 10, 11]


def test_nearer_contacts_from_a_reply_are_asked_before_farther_seeds() -> None:
    lk = lookup(4, 5, 6, k=3, alpha=1)
    assert ids(lk.next_requests()) == [4]
    lk.answered_nodes(c(4), [c(2), c(9)])
    assert ids(lk.next_requests()) == [2]
    lk.answered_nodes(c(2), [c(1)])
    assert ids(lk.next_requests()) == [1]
    lk.answered_nodes(c(1), [])
    assert lk.outcome().hops == 3  # 1 was learned from 2, which was learned from seed 4


def test_only_the_k_nearest_candidates_are_ever_asked() -> None:
    lk = lookup(1, 2, 3, 4, 5, k=2, alpha=3)
    assert ids(lk.next_requests()) == [1, 2]  # alpha allows 3, but only 2 can be in the result


# ---- when it ends ----------------------------------------------------------------------


def test_finishes_exactly_when_the_k_nearest_have_answered() -> None:
    lk = lookup(1, 2, 3, 4, k=2, alpha=2)
    lk.next_requests()
    assert not lk.finished
    lk.answered_nodes(c(1), [])
    assert not lk.finished
    assert lk.next_requests() == []  # 3 and 4 cannot change the result while 2 may answer
    lk.answered_nodes(c(2), [c(3)])
    assert lk.finished
    assert lk.next_requests() == []
    assert lk.outcome() == LookupOutcome(
        target=0,
        closest=[c(1), c(2)],
        queried=2,
        answered=2,
        failed=0,
        hops=1,
        tokens={},
        replica_ids=(1, 2),  # SELF (1000) is farther than both: not a replica
        nearest_without_value=c(1),
    )


def test_with_enough_set_to_beta_it_ends_once_the_beta_nearest_have_answered() -> None:
    lk = Lookup(0, [c(i) for i in (1, 2, 3, 4, 5)], k=4, alpha=4, self_id=SELF, enough=2)
    assert ids(lk.next_requests()) == [1, 2, 3, 4]
    lk.answered_nodes(c(2), [])
    lk.answered_nodes(c(4), [])
    assert not lk.finished  # 1 is nearer and may answer
    lk.answered_nodes(c(1), [])
    assert lk.finished  # 3 is still in flight: it only named, not heard from
    outcome = lk.outcome()
    assert ids(outcome.closest) == [1, 2, 3, 4] and outcome.unheard == {3}
    assert outcome.replica_ids == (1, 2, 4, SELF)  # only who answered or failed, and itself


def test_a_lookup_for_a_node_ends_once_that_node_has_answered() -> None:
    seeds = [c(i) for i in (0, 1, 2, 3)]  # 0 is the node looked up
    found = Lookup(0, seeds, k=4, alpha=4, self_id=SELF, enough=3, until_found=True)
    plain = Lookup(0, seeds, k=4, alpha=4, self_id=SELF, enough=3)
    for lk in (found, plain):
        assert ids(lk.next_requests()) == [0, 1, 2, 3]
        lk.answered_nodes(c(1), [])
        assert not lk.finished
        lk.answered_nodes(c(0), [])
    assert found.finished and found.outcome().unheard == {2, 3}
    assert not plain.finished  # 2 must answer too


def test_a_reply_with_nearer_contacts_postpones_the_end() -> None:
    lk = lookup(3, 4, k=2, alpha=2)
    lk.next_requests()
    lk.answered_nodes(c(3), [c(1)])
    lk.answered_nodes(c(4), [])
    assert not lk.finished  # 1 is nearer than 4 and has not been asked
    assert ids(lk.next_requests()) == [1]
    lk.answered_nodes(c(1), [])
    assert lk.finished
    assert ids(lk.outcome().closest) == [1, 3]


def test_a_failed_candidate_is_replaced_by_the_next_nearest() -> None:
    lk = lookup(1, 2, 3, 4, k=2, alpha=2)
    lk.next_requests()
    lk.failed_request(1)
    assert ids(lk.next_requests()) == [3]
    lk.answered_nodes(c(2), [])
    assert not lk.finished
    lk.answered_nodes(c(3), [])
    assert lk.finished
    outcome = lk.outcome()
    assert ids(outcome.closest) == [2, 3]
    assert (outcome.queried, outcome.answered, outcome.failed) == (3, 2, 1)


def test_when_everyone_fails_the_lookup_ends_empty() -> None:
    lk = lookup(1, 2, k=2, alpha=3)
    lk.next_requests()
    lk.failed_request(2)
    assert not lk.finished
    lk.failed_request(1)
    assert lk.finished
    assert lk.outcome().closest == []
    assert lk.outcome().nearest_without_value is None


def test_a_lookup_without_seeds_is_finished_at_once() -> None:
    lk = lookup()
    assert lk.finished
    assert lk.next_requests() == []
    assert lk.outcome() == LookupOutcome(
        target=0,
        closest=[],
        queried=0,
        answered=0,
        failed=0,
        hops=0,
        tokens={},
        replica_ids=(SELF,),
        self_replica=True,
    )


def test_fewer_candidates_than_k_end_when_all_have_answered() -> None:
    lk = lookup(1, 2, k=5, alpha=1)
    assert ids(lk.next_requests()) == [1]
    lk.answered_nodes(c(1), [])
    assert ids(lk.next_requests()) == [2]
    lk.answered_nodes(c(2), [])
    assert lk.finished
    assert ids(lk.outcome().closest) == [1, 2]


# ---- replies that do not count --------------------------------------------------------


def test_replies_from_contacts_not_waited_on_are_ignored() -> None:
    lk = lookup(1, 2, 3, k=3, alpha=1)
    lk.next_requests()  # asks 1 only
    lk.answered_nodes(c(2), [c(0)])  # 2 was never asked
    lk.answered_nodes(c(7), [c(0)])  # 7 is not even a candidate
    lk.failed_request(3)
    lk.answered_value(c(3), "x", None)
    assert (lk.in_flight, lk.answered, lk.failed) == (1, 0, 0)
    assert lk.value is None
    lk.answered_nodes(c(1), [])
    lk.answered_nodes(c(1), [c(0)])  # a duplicate reply
    assert lk.answered == 1
    assert ids(lk.next_requests()) == [2, 3]  # 0 was never added; 1 converged (nobody nearer)


def test_a_late_reply_after_a_timeout_is_ignored() -> None:
    lk = lookup(1, 2, k=1, alpha=1)
    lk.next_requests()
    lk.failed_request(1)
    lk.answered_nodes(c(1), [])
    assert ids(lk.next_requests()) == [2]
    assert (lk.answered, lk.failed) == (0, 1)


# ---- who is asked -----------------------------------------------------------------------


def test_never_asks_itself() -> None:
    lk = Lookup(0, [c(SELF), c(5)], k=3, alpha=3, self_id=SELF)
    assert ids(lk.next_requests()) == [5]
    lk.answered_nodes(c(5), [c(SELF), c(SELF, host="10.9.9.9")])
    assert lk.next_requests() == []
    assert lk.finished
    assert ids(lk.outcome().closest) == [5]


def test_never_asks_itself_even_when_it_is_the_nearest() -> None:
    lk = Lookup(SELF, [c(SELF), c(SELF ^ 1), c(SELF ^ 2)], k=2, alpha=3, self_id=SELF)
    assert ids(lk.next_requests()) == [SELF ^ 1, SELF ^ 2]


def test_duplicate_contacts_are_asked_once() -> None:
    lk = Lookup(0, [c(1), c(1), c(1, host="10.0.0.2"), c(2)], k=3, alpha=3, self_id=SELF)
    assert lk.next_requests() == [c(1), c(2)]
    lk.answered_nodes(c(1), [c(1), c(2), c(1, host="10.0.0.3")])
    lk.answered_nodes(c(2), [c(1), c(2)])
    assert lk.finished
    assert lk.queried == 2
    assert lk.outcome().closest == [c(1), c(2)]


def test_the_first_address_heard_for_an_id_is_kept() -> None:
    lk = Lookup(0, [c(3)], k=3, alpha=1, self_id=SELF)
    lk.next_requests()
    lk.answered_nodes(c(3), [c(1, host="10.0.0.7"), c(1, host="10.6.6.6")])
    assert [x.host for x in lk.next_requests()] == ["10.0.0.7"]


def test_native_flags_are_learned_from_replies_and_responders() -> None:
    lk = Lookup(0, [c(1), c(2)], k=2, alpha=2, self_id=SELF)
    lk.next_requests()
    lk.answered_nodes(c(1, native=True), [c(2, native=True)])  # 1 spoke native itself
    lk.answered_nodes(c(2), [])
    closest = lk.outcome().closest
    assert closest == [c(1), c(2)]
    assert [x.native for x in closest] == [True, True]


def test_a_value_holder_that_speaks_native_is_known_as_native() -> None:
    # Read repair sends signed records and shared values to native contacts only.
    lk = Lookup(0, [c(1), c(2)], k=2, alpha=2, self_id=SELF)
    lk.next_requests()
    lk.answered_value(c(1, native=True), b"v", 60.0)
    lk.answered_nodes(c(2), [])
    assert [x.native for x in lk.outcome().closest] == [True, False]


# ---- FIND_VALUE --------------------------------------------------------------------------


def test_want_value_finishes_on_the_first_value() -> None:
    lk = lookup(1, 2, 3, k=3, alpha=3, want_value=True)
    lk.next_requests()
    lk.answered_nodes(c(1), [])
    lk.answered_value(c(3), b"v", 120.0)
    assert lk.finished  # 2 is still in flight: no matter
    assert lk.next_requests() == []
    outcome = lk.outcome()
    assert (outcome.value, outcome.value_from, outcome.ttl) == (b"v", c(3), 120.0)
    assert outcome.nearest_without_value == c(1)
    assert outcome.values_seen == [(c(3), b"v")]
    assert (outcome.queried, outcome.answered) == (3, 2)


def test_nearest_without_value_skips_the_holders() -> None:
    lk = lookup(1, 2, 3, k=3, alpha=2, want_value=True)
    lk.next_requests()
    lk.answered_nodes(c(2), [])
    lk.answered_value(c(1), 7, None)
    assert lk.outcome().nearest_without_value == c(2)  # 1 is nearer but had it

    lk = lookup(1, 2, k=2, alpha=2, want_value=True)
    lk.next_requests()
    lk.answered_value(c(1), 7, None)
    assert lk.outcome().nearest_without_value is None  # 2 never answered


def test_a_falsy_value_is_still_a_value() -> None:
    lk = lookup(1, 2, k=2, alpha=2, want_value=True)
    lk.next_requests()
    lk.answered_value(c(2), 0, None)
    assert lk.finished
    assert lk.outcome().value == 0
    assert lk.outcome().value_from == c(2)


def test_without_want_value_a_value_is_noted_but_the_lookup_goes_on() -> None:
    lk = lookup(1, 2, 3, k=3, alpha=1)
    lk.next_requests()
    lk.answered_value(c(1), "v", 5.0)
    assert not lk.finished
    assert ids(lk.next_requests()) == [2]
    assert lk.outcome().values_seen == [(c(1), "v")]


def test_without_a_value_find_value_runs_like_find_node() -> None:
    lk = lookup(2, 1, k=2, alpha=2, want_value=True)
    lk.next_requests()
    lk.answered_nodes(c(1), [])
    lk.answered_nodes(c(2), [])
    assert lk.finished
    outcome = lk.outcome()
    assert outcome.value is None
    assert ids(outcome.closest) == [1, 2]
    assert outcome.nearest_without_value == c(1)


# ---- random networks ------------------------------------------------------------------------

SPACE_BITS = 8  # small ids, so that buckets are crowded and the bucket limit bites


def kademlia_tables(network: list[int], k: int) -> dict[int, list[int]]:
    """Each node's true routing table: in each of its buckets, the k members
    nearest to it (all of them when the bucket has k or fewer)."""
    tables = {}
    for node in network:
        buckets: dict[int, list[int]] = {}
        for other in sorted((o for o in network if o != node), key=lambda o: o ^ node):
            bucket = buckets.setdefault((other ^ node).bit_length() - 1, [])
            if len(bucket) < k:
                bucket.append(other)
        tables[node] = [o for bucket in buckets.values() for o in bucket]
    return tables


def find_node(known: list[int], target: int, k: int) -> list[Contact]:
    return [c(i) for i in sorted(known, key=lambda i: i ^ target)[:k]]


Reply = Callable[[Contact], "list[Contact] | None"]


def drive(
    lk: Lookup, seeds: list[int], reply: Reply, rng: random.Random
) -> tuple[list[int], LookupOutcome]:
    """Run ``lk`` to the end, answering in-flight requests in random order;
    returns whom it asked and its outcome when it first finished (what a
    LookupRun hands on; replies still in flight then are answered after).

    ``reply(contact)`` is the contacts that node returns, or None if it is
    down. Along the way, check each batch of requests against what the
    lookup knew: nearest first, only among the k nearest that may still
    answer, never more than alpha at once (k once it has converged), nobody
    twice, never itself.
    """
    known = {i for i in seeds if i != SELF}
    failed: set[int] = set()
    asked: list[int] = []
    in_flight: list[Contact] = []
    first: LookupOutcome | None = None
    while True:
        if first is None and lk.finished:
            first = lk.outcome()
        new = ids(lk.next_requests())
        for node in new:
            nearer = {i for i in known if i ^ lk.target < node ^ lk.target}
            assert nearer <= set(asked) | set(new), "a nearer candidate was skipped"
            assert len(nearer - failed) < lk.k, "asked beyond the k nearest"
        asked += new
        in_flight += [c(i) for i in new]
        assert len(in_flight) == lk.in_flight <= (lk.k if lk.converged else lk.alpha)
        if not in_flight:
            break
        contact = in_flight.pop(rng.randrange(len(in_flight)))
        found = reply(contact)
        if found is None:
            failed.add(contact.node_id)
            lk.failed_request(contact.node_id)
        else:
            known |= {x.node_id for x in found if x.node_id != SELF}
            lk.answered_nodes(contact, found)
    assert lk.finished and first is not None
    assert len(asked) == len(set(asked)), "a contact was asked twice"
    assert SELF not in asked
    return asked, first


networks = st.lists(st.integers(0, 2**SPACE_BITS - 1), min_size=1, max_size=40, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    networks,
    st.integers(0, 2**SPACE_BITS - 1),
    st.integers(1, 4),
    st.integers(1, 3),
    st.data(),
    st.randoms(use_true_random=False),
)
def test_lookup_in_a_network_of_true_tables_finds_the_true_k_closest(
    network: list[int],
    target: int,
    k: int,
    alpha: int,
    data: st.DataObject,
    rng: random.Random,
) -> None:
    tables = kademlia_tables(network, k)
    seeds = data.draw(st.lists(st.sampled_from(network), min_size=1, max_size=k))
    enough = data.draw(st.integers(1, k))
    lk = Lookup(target, [c(i) for i in seeds], k=k, alpha=alpha, self_id=SELF, enough=enough)

    def reply(contact: Contact) -> list[Contact]:
        return find_node(tables[contact.node_id], target, k)

    asked, outcome = drive(lk, seeds, reply, rng)
    true_closest = sorted(network, key=lambda i: i ^ target)[:k]
    assert ids(outcome.closest)[:enough] == true_closest[:enough]
    assert not outcome.unheard & set(true_closest[:enough])
    if enough == k:
        assert ids(outcome.closest) == true_closest and not outcome.unheard
    assert outcome.queried <= len(asked) and outcome.failed == 0


@settings(max_examples=150, deadline=None)
@given(
    networks,
    st.integers(0, 2**SPACE_BITS - 1),
    st.integers(1, 4),
    st.integers(1, 3),
    st.data(),
    st.randoms(use_true_random=False),
)
def test_lookup_with_dead_nodes_returns_the_nearest_that_answered(
    network: list[int],
    target: int,
    k: int,
    alpha: int,
    data: st.DataObject,
    rng: random.Random,
) -> None:
    tables = kademlia_tables(network, k)
    dead = set(data.draw(st.lists(st.sampled_from(network), max_size=len(network))))
    seeds = data.draw(st.lists(st.sampled_from(network), min_size=1, max_size=2 * k))
    lk = Lookup(target, [c(i) for i in seeds], k=k, alpha=alpha, self_id=SELF)

    def reply(contact: Contact) -> list[Contact] | None:
        if contact.node_id in dead:
            return None
        return find_node(tables[contact.node_id], target, k)

    asked, _ = drive(lk, seeds, reply, rng)
    outcome = lk.outcome()  # after every reply: each request has answered or failed
    answered = [i for i in asked if i not in dead]
    # The result: the k nearest of those that answered, nearest first, no dead node.
    assert ids(outcome.closest) == sorted(answered, key=lambda i: i ^ target)[:k]
    assert outcome.failed == len(asked) - len(answered)
    assert outcome.answered == len(answered)
    # Everyone nearer than the k-th result was asked (and so failed or is in it).
    if len(outcome.closest) == k:
        kth = outcome.closest[-1].node_id ^ target
        heard_of = set(seeds) | {
            x.node_id for i in answered for x in find_node(tables[i], target, k)
        }
        assert all(i in asked for i in heard_of if i ^ target < kth)


def test_a_stalled_request_frees_its_slot_but_a_late_answer_still_counts() -> None:
    lk = lookup(1, 2, 3, k=3, alpha=1)
    assert ids(lk.next_requests()) == [1]
    lk.stalled(1)  # its soft timeout passed: ask the next one meanwhile
    assert ids(lk.next_requests()) == [2]
    lk.answered_nodes(c(2), [])
    assert ids(lk.next_requests()) == [3]
    lk.answered_nodes(c(3), [])
    assert not lk.finished  # node 1 may still answer, and it is the nearest
    lk.answered_nodes(c(1), [])
    assert lk.finished and ids(lk.outcome().closest) == [1, 2, 3]


def test_a_quorum_read_goes_on_to_the_replicas_a_value_holder_names() -> None:
    # Every contact we know holds the value; only they know the nearest node.
    lk = lookup(5, 6, k=3, alpha=2)
    lk.next_requests()
    lk.answered_value(c(5, native=True), "v", 60.0, None, [c(1, native=True)])
    lk.answered_value(c(6, native=True), "v", 60.0, None, [c(1, native=True)])
    assert ids(lk.next_requests()) == [1]
    lk.answered_value(c(1, native=True), "old", 60.0)
    outcome = lk.outcome()
    assert lk.finished and outcome.replica_ids == (1, 5, 6)
    assert [v for _, v in outcome.values_seen] == ["v", "v", "old"]


def test_a_value_reply_naming_no_one_adds_no_one() -> None:
    lk = lookup(5, 6, k=3, alpha=2)
    lk.next_requests()
    lk.answered_value(c(5, native=True), "v", 60.0)
    lk.answered_value(c(6, native=True), "v", 60.0)
    assert lk.next_requests() == [] and lk.finished
    assert lk.outcome().replica_ids == (5, 6, SELF)  # too few known: the asker is one


def test_a_reply_with_another_kind_still_names_the_replicas_beside_it() -> None:
    lk = lookup(5, k=3, alpha=2)
    lk.next_requests()
    lk.answered_other_kind(c(5, native=True), Kind.SHARED, None, [c(1, native=True)])
    assert ids(lk.next_requests()) == [1] and lk.outcome().other_kind == Kind.SHARED
