"""Vector clocks: versions of a value that several nodes may write. Pure, no I/O, no clock.

A vector clock counts, per writer, the writes a version has seen (Fidge 1988,
Mattern 1989, after Lamport 1978). Two versions are then ordered, one having
seen the other, or concurrent, neither having seen the other; only the
latter is a conflict. Conflicts are resolved as in Dynamo (DeCandia et al.
2007, section 4.4):

- a replica keeps every concurrent version as a sibling (:func:`reconcile`);
- a read returns all siblings and their merged clock (:func:`context`);
- a write that passes that context back supersedes them all (:func:`write`).

Read repair is :func:`reconcile` again: a reader sends a stale replica what
it found, and the replica keeps whatever is not already dominated.

Bounds (kadnode.config says why): a version's clock names at most
``MAX_CLOCK_ENTRIES`` writers; a write past that drops the writers with the
smallest counters and keeps its own entry, its dot, so it can only supersede
less, never be lost (:func:`write`). A read's context, the merge of the
siblings, may name up to ``MAX_CONTEXT_ENTRIES``, so a full clock never makes a
key unreadable. A key holds at most ``MAX_SIBLINGS`` versions
(:class:`TooManySiblings`). A counter is at most ``MAX_COUNTER``, and one
incoming version moves a writer's counter at most ``MAX_COUNTER_STEP`` past what
the replica holds (:func:`counter_jump`), so no writer can pin a key by driving
a counter to the top in one write.

:func:`lww_newer` is the simpler last-write-wins alternative, and what it
gives up.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kadnode.config import (
    MAX_CLOCK_ENTRIES,
    MAX_CONTEXT_ENTRIES,
    MAX_COUNTER_STEP,
    MAX_SIBLINGS,
    MAX_WIRE_INT,
)
from kadnode.core.ids import ID_SPACE, to_bytes
from kadnode.core.wire import decode_id
from kadnode.errors import DecodeError, LocalProtocolError

MAX_COUNTER = MAX_WIRE_INT


class ClockFull(LocalProtocolError):
    """A clock would name more than MAX_CONTEXT_ENTRIES writers (a merge of
    clocks that did not come from one key's siblings)."""


class TooManySiblings(LocalProtocolError):
    """A write would leave a key with more than MAX_SIBLINGS concurrent versions."""


class Order(enum.Enum):
    """How one clock relates to another (``a.compare(b)``)."""

    BEFORE = "before"  # a happened before b: b has seen every write a has
    AFTER = "after"  # b happened before a
    EQUAL = "equal"
    CONCURRENT = "concurrent"  # each has seen a write the other has not


@dataclass(frozen=True, slots=True)
class VectorClock:
    """``entries``: (writer id, counter) pairs, sorted by writer; absent means 0."""

    entries: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_CONTEXT_ENTRIES:
            raise ClockFull(
                f"a vector clock names at most {MAX_CONTEXT_ENTRIES} writers, "
                f"not {len(self.entries)}"
            )
        previous = -1
        for writer, counter in self.entries:
            if type(writer) is not int or not previous < writer < ID_SPACE:
                raise LocalProtocolError("vector clock writers are not sorted distinct ids")
            if type(counter) is not int or not 0 < counter <= MAX_COUNTER:
                raise LocalProtocolError(f"vector clock counter is not in 1..{MAX_COUNTER}")
            previous = writer

    @classmethod
    def of(cls, counters: Mapping[int, int]) -> VectorClock:
        """A clock from ``{writer: counter}``."""
        return cls(tuple(sorted(counters.items())))

    def get(self, writer: int) -> int:
        """The number of ``writer``'s writes this clock has seen."""
        for w, counter in self.entries:
            if w == writer:
                return counter
        return 0

    def increment(self, writer: int) -> VectorClock:
        """This clock after one more write by ``writer``."""
        counters = dict(self.entries)
        counters[writer] = counters.get(writer, 0) + 1
        return VectorClock.of(counters)

    def merge(self, other: VectorClock) -> VectorClock:
        """The pointwise maximum: the least clock that has seen both."""
        counters = dict(self.entries)
        for writer, counter in other.entries:
            if counter > counters.get(writer, 0):
                counters[writer] = counter
        return VectorClock.of(counters)

    def compare(self, other: VectorClock) -> Order:
        mine, theirs = dict(self.entries), dict(other.entries)
        behind = any(c > mine.get(w, 0) for w, c in theirs.items())
        ahead = any(c > theirs.get(w, 0) for w, c in mine.items())
        if behind and ahead:
            return Order.CONCURRENT
        if behind:
            return Order.BEFORE
        if ahead:
            return Order.AFTER
        return Order.EQUAL

    def descends(self, other: VectorClock) -> bool:
        """Whether this clock has seen every write ``other`` has (equal included)."""
        return self.compare(other) in (Order.AFTER, Order.EQUAL)


def to_wire(clock: VectorClock) -> list:
    """``[[20-byte writer id, counter], ...]``, sorted by writer."""
    return [[to_bytes(writer), counter] for writer, counter in clock.entries]


def from_wire(obj: object, most: int = MAX_CLOCK_ENTRIES) -> VectorClock:
    """Parse a clock's wire form; raise DecodeError unless it is exactly that
    shape. ``most``: a version's bound, or MAX_CONTEXT_ENTRIES for a read's
    context."""
    if type(obj) is not list or len(obj) > most:
        raise DecodeError(f"vector clock is not a list of at most {most} entries")
    entries = []
    previous = -1
    for item in obj:
        if type(item) is not list or len(item) != 2:
            raise DecodeError("vector clock entry is not [writer, counter]")
        raw_writer, counter = item
        writer = decode_id(raw_writer, "vector clock writer")
        if type(counter) is not int or not 0 < counter <= MAX_COUNTER:
            raise DecodeError(f"vector clock counter is not in 1..{MAX_COUNTER}")
        if writer <= previous:
            raise DecodeError("vector clock writers are not sorted and distinct")
        entries.append((writer, counter))
        previous = writer
    return VectorClock(tuple(entries))


@dataclass(frozen=True, slots=True)
class Versioned:
    """A value and the clock of the write that produced it; a value of None
    is a delete (a tombstone), superseding what its clock has seen."""

    value: object
    clock: VectorClock


def reconcile(held: tuple[Versioned, ...], incoming: Versioned) -> tuple[Versioned, ...]:
    """The versions to hold once ``incoming`` arrives (a write, a replica, a read repair).

    If a held version has seen ``incoming`` (or is it), nothing changes. Otherwise
    ``incoming`` replaces every held version it has seen and joins the concurrent
    ones as a sibling. Raises TooManySiblings rather than hold more than
    MAX_SIBLINGS.
    """
    if any(version.clock.descends(incoming.clock) for version in held):
        return held
    kept = tuple(version for version in held if not incoming.clock.descends(version.clock))
    if len(kept) >= MAX_SIBLINGS:
        raise TooManySiblings(
            f"{len(kept)} concurrent versions already held (at most {MAX_SIBLINGS}); "
            "write with their context to resolve them"
        )
    return (*kept, incoming)


def context(siblings: Iterable[Versioned]) -> VectorClock:
    """The merge of the siblings' clocks: what a reader passes back to resolve them."""
    merged = VectorClock()
    for version in siblings:
        merged = merged.merge(version.clock)
    return merged


def write(
    siblings_context: VectorClock | None, writer: int, value: object, after: int = 0
) -> Versioned:
    """A new version by ``writer`` that supersedes everything ``siblings_context`` has seen.

    ``None`` (a blind write, no read first) supersedes nothing: it becomes a
    sibling of whatever is held. The writer's counter passes both the
    context's and ``after`` (its own earlier writes, known to it). Past
    MAX_CLOCK_ENTRIES writers, the others
    with the smallest counters (then the smallest ids) are dropped and the
    writer's own entry kept: a version that has not seen this write lacks
    that counter, so it can never cover it, and what the write no longer
    names it simply does not supersede (it stays a sibling).
    """
    clock = VectorClock() if siblings_context is None else siblings_context
    counters = dict(clock.entries)
    mine = max(counters.pop(writer, 0), after) + 1
    kept = sorted(counters.items(), key=lambda e: (e[1], e[0]))[-(MAX_CLOCK_ENTRIES - 1) :]
    return Versioned(value, VectorClock.of({**dict(kept), writer: mine}))


def counter_jump(held: tuple[Versioned, ...], incoming: Versioned) -> str | None:
    """Why ``incoming`` moves a writer's counter too far, or None.

    A counter may pass the highest this replica holds for that writer (0 if
    none) by at most MAX_COUNTER_STEP: honest counters move by one per write.
    """
    for writer, counter in incoming.clock.entries:
        highest = max((version.clock.get(writer) for version in held), default=0)
        if counter - highest > MAX_COUNTER_STEP:
            return (
                f"a clock moves a writer's counter {counter - highest} past what is held "
                f"(at most {MAX_COUNTER_STEP})"
            )
    return None


def lww_newer(a_ts: float, a_writer: int, b_ts: float, b_writer: int) -> bool:
    """Last-write-wins: whether write ``a`` beats write ``b`` (the writer id breaks ties).

    Simpler than clocks, one value per key, no siblings, but it loses data
    silently: of two concurrent writes one is dropped without anyone being
    told, and which one is decided by the writers' wall clocks, so a node
    whose clock runs ahead wins every conflict, and overwrites later writes
    from nodes with slower clocks, until real time catches up with it.
    """
    return (a_ts, a_writer) > (b_ts, b_writer)
