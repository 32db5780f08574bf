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

Bounds: a clock names at most ``MAX_CLOCK_ENTRIES`` writers and a key holds
at most ``MAX_SIBLINGS`` versions (kadnode.config says why). Past either, the
write is refused with a :class:`~kadnode.errors.LocalProtocolError`
(:class:`ClockFull`, :class:`TooManySiblings`); nothing is pruned, since
dropping a writer without timestamps could make a concurrent version look
superseded and lose it silently.

:func:`lww_newer` is the simpler last-write-wins alternative, and what it
gives up.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kadnode.config import MAX_CLOCK_ENTRIES, MAX_SIBLINGS, MAX_WIRE_INT
from kadnode.core.ids import ID_SPACE, to_bytes
from kadnode.core.wire import decode_id
from kadnode.errors import DecodeError, LocalProtocolError

MAX_COUNTER = MAX_WIRE_INT


class ClockFull(LocalProtocolError):
    """A write would make a clock name more than MAX_CLOCK_ENTRIES writers."""


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
        if len(self.entries) > MAX_CLOCK_ENTRIES:
            raise ClockFull(
                f"a vector clock names at most {MAX_CLOCK_ENTRIES} writers, not "
                f"{len(self.entries)}; refusing rather than pruning (see kadnode.core.vclock)"
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


def from_wire(obj: object) -> VectorClock:
    """Parse a clock's wire form; raise DecodeError unless it is exactly that shape."""
    if type(obj) is not list or len(obj) > MAX_CLOCK_ENTRIES:
        raise DecodeError(f"vector clock is not a list of at most {MAX_CLOCK_ENTRIES} entries")
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
    """A value and the clock of the write that produced it."""

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


def write(siblings_context: VectorClock | None, writer: int, value: object) -> Versioned:
    """A new version by ``writer`` that supersedes everything ``siblings_context`` has seen.

    ``None`` (a blind write, no read first) supersedes nothing: it becomes a
    sibling of whatever is held.
    """
    clock = VectorClock() if siblings_context is None else siblings_context
    return Versioned(value, clock.increment(writer))


def lww_newer(a_ts: float, a_writer: int, b_ts: float, b_writer: int) -> bool:
    """Last-write-wins: whether write ``a`` beats write ``b`` (the writer id breaks ties).

    Simpler than clocks, one value per key, no siblings, but it loses data
    silently: of two concurrent writes one is dropped without anyone being
    told, and which one is decided by the writers' wall clocks, so a node
    whose clock runs ahead wins every conflict, and overwrites later writes
    from nodes with slower clocks, until real time catches up with it.
    """
    return (a_ts, a_writer) > (b_ts, b_writer)
