"""kadnode.core.vclock: the lattice laws of merge, happens-before as a strict partial
order, sibling reconciliation, bounds, and the strict wire form."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadnode.config import (
    MAX_CLOCK_ENTRIES,
    MAX_CONTEXT_ENTRIES,
    MAX_COUNTER_STEP,
    MAX_DATAGRAM,
    MAX_SIBLINGS,
    MAX_VALUE_BYTES,
)
from kadnode.core.codec import HEADER
from kadnode.core.ids import ID_MAX, to_bytes
from kadnode.core.vclock import (
    MAX_COUNTER,
    ClockFull,
    Order,
    TooManySiblings,
    VectorClock,
    Versioned,
    context,
    counter_jump,
    from_wire,
    lww_newer,
    reconcile,
    to_wire,
    write,
)
from kadnode.core.wire import pack
from kadnode.errors import DecodeError, LocalProtocolError

PROPERTY = settings(max_examples=200, deadline=None)

A, B, C = 0xA, 0xB, 0xC  # writer ids

# Few writers and small counters, so random clocks are often comparable.
writers = st.integers(0, 5) | st.sampled_from([ID_MAX, 2**159])
clocks = st.dictionaries(writers, st.integers(1, 4), max_size=6).map(VectorClock.of)

MIRROR = {
    Order.BEFORE: Order.AFTER,
    Order.AFTER: Order.BEFORE,
    Order.EQUAL: Order.EQUAL,
    Order.CONCURRENT: Order.CONCURRENT,
}


def clock(**counters: int) -> VectorClock:
    return VectorClock.of({int(w, 16): n for w, n in counters.items()})


# ---- clocks -------------------------------------------------------------------


def test_increment_counts_writes_per_writer():
    c = VectorClock().increment(A).increment(B).increment(A)
    assert c.entries == ((A, 2), (B, 1))
    assert c.get(A) == 2 and c.get(C) == 0


def test_compare_examples():
    assert clock(a=1).compare(clock(a=2)) is Order.BEFORE
    assert clock(a=2).compare(clock(a=1)) is Order.AFTER
    assert clock(a=1, b=1).compare(clock(a=1, b=1)) is Order.EQUAL
    assert clock(a=1).compare(clock(b=1)) is Order.CONCURRENT
    assert clock(a=2, b=1).compare(clock(a=1, b=2)) is Order.CONCURRENT
    assert VectorClock().compare(clock(a=1)) is Order.BEFORE
    assert clock(a=1, b=1).descends(clock(a=1))
    assert clock(a=1).descends(clock(a=1))
    assert not clock(a=1).descends(clock(b=1))


@pytest.mark.parametrize(
    "entries",
    [((B, 1), (A, 1)), ((A, 1), (A, 2)), ((A, 0),), ((A, -1),), ((-1, 1),), ((2**160, 1),)],
)
def test_a_clock_must_be_sorted_distinct_and_positive(entries):
    with pytest.raises(LocalProtocolError):
        VectorClock(entries)


@PROPERTY
@given(clocks, clocks)
def test_merge_is_commutative(a, b):
    assert a.merge(b) == b.merge(a)


@PROPERTY
@given(clocks, clocks, clocks)
def test_merge_is_associative(a, b, c):
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@PROPERTY
@given(clocks)
def test_merge_is_idempotent(a):
    assert a.merge(a) == a


@PROPERTY
@given(clocks, clocks)
def test_merge_descends_both_and_is_the_least_such(a, b):
    m = a.merge(b)
    assert m.descends(a) and m.descends(b)
    # compare agrees with merge: a <= b exactly when merging b changes nothing.
    assert (a.compare(b) in (Order.BEFORE, Order.EQUAL)) == (m == b)
    assert (a.compare(b) is Order.EQUAL) == (a == b)


@PROPERTY
@given(clocks, clocks)
def test_compare_mirrors(a, b):
    assert b.compare(a) is MIRROR[a.compare(b)]


@PROPERTY
@given(clocks, writers)
def test_increment_happens_after(a, w):
    assert a.increment(w).compare(a) is Order.AFTER


# ---- happens-before (BEFORE) is a strict partial order ---------------------------


def before(a: VectorClock, b: VectorClock) -> bool:
    return a.compare(b) is Order.BEFORE


@PROPERTY
@given(clocks)
def test_before_is_irreflexive(a):
    assert not before(a, a)


@PROPERTY
@given(clocks, clocks)
def test_before_is_antisymmetric(a, b):
    assert not (before(a, b) and before(b, a))


@PROPERTY
@given(clocks, clocks, clocks, writers, writers)
def test_before_is_transitive_on_causal_chains(a, d1, d2, w1, w2):
    # Random triples are rarely chained, so build chains a < b < c on purpose.
    b = a.merge(d1).increment(w1)
    c = b.merge(d2).increment(w2)
    assert before(a, b) and before(b, c)
    assert before(a, c)


# ---- bounds ---------------------------------------------------------------------


def test_a_write_past_the_bound_keeps_its_own_entry_and_the_largest_counters():
    ctx = VectorClock.of({**{w: 1 for w in range(MAX_CLOCK_ENTRIES)}, 0xFF: 7})
    version = write(ctx, 0xEE, "v")
    assert len(version.clock.entries) == MAX_CLOCK_ENTRIES
    assert version.clock.get(0xEE) == 1 and version.clock.get(0xFF) == 7
    # Ties among the smallest counters drop the smallest ids first.
    assert [w for w in range(MAX_CLOCK_ENTRIES) if version.clock.get(w)] == list(
        range(2, MAX_CLOCK_ENTRIES)
    )


@PROPERTY
@given(
    st.lists(st.integers(0, 2**160 - 1), min_size=MAX_CLOCK_ENTRIES, max_size=60, unique=True),
    st.integers(1, 3),
    st.data(),
)
def test_a_truncated_write_is_never_covered_by_a_version_that_has_not_seen_it(ids, n, data):
    """Dropping others' entries only makes a write supersede less: a version
    that did not see it (its counter for the writer is below the write's)
    never descends it, so nothing can drop it as already seen."""
    writer, *others = ids
    ctx = VectorClock.of({**{w: n for w in others}, writer: n})
    version = write(ctx, writer, "v")
    assert version.clock.get(writer) == n + 1
    assert len(version.clock.entries) <= MAX_CLOCK_ENTRIES
    rival = VectorClock.of(
        {w: data.draw(st.integers(1, 9)) for w in data.draw(st.sets(st.sampled_from(others)))}
        | {writer: n}
    )
    assert not rival.descends(version.clock)


def test_a_full_sibling_leaves_the_key_readable_and_writable():
    """A hostile sibling naming MAX_CLOCK_ENTRIES writers beside an honest one:
    the context names them all, and a write with it still supersedes the
    honest version (the hostile one stays a sibling)."""
    mine = write(None, A, "mine")
    hostile = Versioned("x", VectorClock.of({0x100 + i: 1 for i in range(MAX_CLOCK_ENTRIES)}))
    held = reconcile((mine,), hostile)
    ctx = context(held)
    assert len(ctx.entries) == MAX_CLOCK_ENTRIES + 1
    assert from_wire(to_wire(ctx), MAX_CONTEXT_ENTRIES) == ctx
    with pytest.raises(DecodeError):
        from_wire(to_wire(ctx))  # a version's bound is stricter than a context's
    again = write(ctx, A, "mine again")
    assert reconcile(held, again) == (hostile, again)


def test_a_clock_names_at_most_the_context_bound():
    with pytest.raises(ClockFull, match=f"at most {MAX_CONTEXT_ENTRIES} writers"):
        VectorClock.of({w: 1 for w in range(MAX_CONTEXT_ENTRIES + 1)})
    assert issubclass(ClockFull, LocalProtocolError)


def test_a_counter_may_move_at_most_one_step_past_what_is_held():
    held = (write(None, A, "v"),)
    near = Versioned("ok", clock(a=1 + MAX_COUNTER_STEP))
    far = Versioned("pin", clock(a=2 + MAX_COUNTER_STEP))
    assert counter_jump(held, near) is None
    assert "past what is held" in counter_jump(held, far)
    assert counter_jump((), Versioned("fresh", clock(b=MAX_COUNTER_STEP))) is None
    assert counter_jump((), Versioned("pin", clock(b=MAX_COUNTER))) is not None


def test_the_worst_case_sibling_set_fits_one_datagram():
    """MAX_SIBLINGS largest values, each with a full clock of the largest counters."""
    top = VectorClock.of({ID_MAX - i: MAX_COUNTER for i in range(MAX_CLOCK_ENTRIES)})
    siblings = [[b"v" * MAX_VALUE_BYTES, to_wire(top)] for _ in range(MAX_SIBLINGS)]
    envelope = 64  # a reply map's keys, a ttl, a flag
    assert HEADER + len(pack(siblings)) + envelope <= MAX_DATAGRAM


# ---- wire form -------------------------------------------------------------------


@PROPERTY
@given(clocks)
def test_wire_round_trip(a):
    assert from_wire(msgpack.unpackb(pack(to_wire(a)), raw=False)) == a


def test_wire_form_is_sorted_pairs_of_id_and_counter():
    assert to_wire(clock(b=2, a=1)) == [[to_bytes(A), 1], [to_bytes(B), 2]]


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {},
        [[to_bytes(A)]],
        [[to_bytes(A), 1, 1]],
        [(to_bytes(A), 1)],
        [[to_bytes(A)[:19], 1]],
        [[A, 1]],
        [[to_bytes(A), 0]],
        [[to_bytes(A), MAX_COUNTER + 1]],
        [[to_bytes(A), True]],
        [[to_bytes(A), 1.0]],
        [[to_bytes(B), 1], [to_bytes(A), 1]],  # unsorted
        [[to_bytes(A), 1], [to_bytes(A), 2]],  # duplicate writer
        [[to_bytes(w), 1] for w in range(MAX_CLOCK_ENTRIES + 1)],  # over the bound
    ],
)
def test_from_wire_refuses_bad_shapes(obj):
    with pytest.raises(DecodeError):
        from_wire(obj)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(min_size=19, max_size=21),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=20,
)


@PROPERTY
@given(json_like)
def test_arbitrary_objects_raise_nothing_but_decode_error(obj):
    with contextlib.suppress(DecodeError):
        from_wire(obj)


# ---- reconcile, context, write --------------------------------------------------


def test_two_concurrent_writes_are_both_kept_as_siblings():
    x = write(None, A, "x")
    y = write(None, B, "y")
    held = reconcile(reconcile((), x), y)
    assert held == (x, y)
    assert context(held) == clock(a=1, b=1)


def test_a_write_with_the_context_of_both_siblings_resolves_them():
    held = reconcile(reconcile((), write(None, A, "x")), write(None, B, "y"))
    resolved = write(context(held), C, "x+y")
    assert reconcile(held, resolved) == (resolved,)
    assert resolved.clock == clock(a=1, b=1, c=1)


def test_a_write_that_saw_only_one_sibling_replaces_only_that_one():
    x, y = write(None, A, "x"), write(None, B, "y")
    x2 = write(x.clock, A, "x2")
    assert reconcile((x, y), x2) == (y, x2)


def test_a_dominated_or_equal_incoming_changes_nothing():
    old = write(None, A, "old")
    new = write(old.clock, A, "new")
    held = (new,)
    assert reconcile(held, old) is held  # stale: read repair from a lagging replica
    assert reconcile(held, new) is held  # the same version again


def test_a_newer_version_repairs_a_stale_replica():
    old = write(None, A, "old")
    new = write(old.clock, B, "new")
    assert reconcile((old,), new) == (new,)


def test_too_many_siblings_are_refused_with_a_clear_error():
    held: tuple[Versioned, ...] = ()
    for w in range(MAX_SIBLINGS):
        held = reconcile(held, write(None, w, w))
    assert len(held) == MAX_SIBLINGS
    with pytest.raises(TooManySiblings, match="write with their context"):
        reconcile(held, write(None, 99, "one too many"))
    assert issubclass(TooManySiblings, LocalProtocolError)
    # A write that names them all still resolves them.
    assert reconcile(held, write(context(held), 99, "merged"))[0].value == "merged"


@PROPERTY
@given(st.lists(st.tuples(clocks, writers), max_size=12))
def test_held_siblings_stay_pairwise_concurrent(writes):
    held: tuple[Versioned, ...] = ()
    for n, (ctx, w) in enumerate(writes):
        try:
            held = reconcile(held, write(ctx, w, n))
        except TooManySiblings:
            assert len(held) == MAX_SIBLINGS
    assert len(held) <= MAX_SIBLINGS
    for i, a in enumerate(held):
        for b in held[i + 1 :]:
            assert a.clock.compare(b.clock) is Order.CONCURRENT


def test_context_of_nothing_is_the_empty_clock():
    assert context(()) == VectorClock()


# ---- last-write-wins ------------------------------------------------------------


def test_lww_newer():
    assert lww_newer(2.0, A, 1.0, B)
    assert not lww_newer(1.0, B, 2.0, A)
    assert lww_newer(1.0, B, 1.0, A)  # a tie goes to the higher writer id
    assert not lww_newer(1.0, A, 1.0, A)
