"""What operations report: one result type each, and the event that carries it. Pure.

A NodeCore operation (``ping``, ``lookup``, ``put``...) returns an operation
id at once; its result arrives later from ``NodeCore.next_event()`` as an
:class:`OperationCompleted` with the id and one of these results.
"""

from __future__ import annotations

from dataclasses import dataclass

from kadnode.core.messages import Addr, Contact, Kind, Value


@dataclass(frozen=True, slots=True)
class PingResult:
    addr: Addr
    node_id: int | None  # None: no answer
    rtt: float | None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    seeds: int
    answered: int
    table_size: int


@dataclass(frozen=True, slots=True)
class LookupResult:
    target: int
    closest: list[Contact]  # the k nearest known, nearest first
    peer: Contact | None  # the node with the target id, when it answered
    queried: int
    answered: int
    failed: int
    hops: int
    # Ids in ``closest`` named by nodes that answered, not heard from
    # themselves: the lookup ends once the beta nearest have answered.
    unheard: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class GetResult:
    key: bytes
    value: Value | None
    found: bool
    source: Contact | None  # None: this node's own store
    queried: int
    hops: int
    # Not found as a plain value because the key holds another kind (a
    # shared value, a peer record): read it as that kind.
    other_kind: Kind | None = None


@dataclass(frozen=True, slots=True)
class PutResult:
    """A write on the replica set: the k closest to the key, the writer itself
    among them when it is that close (its own copy is one of the k)."""

    key: bytes
    acks: int  # replicas in the set that hold it now, the writer's own copy included
    replicas: list[Contact]  # the other nodes in the replica set that acknowledged
    asked: int
    queried: int
    needed: int = 0  # the write quorum W for this replica set
    replica_set: int = 0  # the k closest found, answering or not, the writer included
    refused: tuple[str, ...] = ()  # reasons replicas gave for refusing
    local: bool = False  # the writer's own copy is in the replica set and counted
    # Writes to the set still unanswered when the verdict came: a put ends once
    # W acknowledged (Dynamo's coordinator, seed 001) and the rest go on.
    pending: int = 0

    @property
    def quorum(self) -> bool:
        return self.acks >= self.needed

    @property
    def only_copy(self) -> bool:
        """The writer knew no other node: its own copy is the only one."""
        return self.local and self.replica_set == 1


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A quorum read of a peer record or a shared value."""

    key: bytes
    kind: Kind
    payload: object | None  # the newest (kinds.newest), None: not found
    replica_set: int  # the k closest found, answering or not
    answered: int  # of those, how many answered
    holding: int  # of those, how many held some version
    agreeing: int  # of those, how many held the newest already
    repaired: int  # read repairs sent to stale or empty replicas
    rejected: int  # invalid versions seen (bad signature, expired...)
    needed: int  # the read quorum R for this replica set
    other_kind: Kind | None = None  # the key holds another kind of value

    @property
    def found(self) -> bool:
        return self.payload is not None

    @property
    def quorum(self) -> bool:
        return self.answered >= self.needed


@dataclass(frozen=True, slots=True)
class ExistsResult:
    """Whether a key holds a live value (kadnode.core.reads.Exists)."""

    key: bytes
    exists: bool
    kind: Kind | None  # the kind of what it holds (a tombstone included); None: nothing
    deleted: bool  # the newest version of an owned kind is a delete
    holding: int  # nodes met that held a version (this one included)
    queried: int


@dataclass(frozen=True, slots=True)
class RouteResult:
    """Chord routing to the successor of ``key``."""

    key: int
    successor: Contact | None  # None: this node owns the key (or routing failed)
    ok: bool
    hops: int  # requests along the route (0: answered from our own view)


@dataclass(frozen=True, slots=True)
class LeaveResult:
    """A graceful leave: every held value handed to the k closest remaining."""

    keys: int
    stores: int
    acks: int
    goodbyes: int = 0  # contacts that took our goodbye (we left their tables)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """One anti-entropy exchange with a neighbour, seen from its initiator."""

    peer: Contact
    shared: int  # keys we hold that the peer should hold too
    buckets_differ: int
    keys_offered: int  # (key, fingerprint) pairs sent for differing buckets
    keys_sent: int  # values the peer lacked and received
    bytes: int  # every datagram of the exchange, both directions
    republish_bytes: int  # what re-sending every shared value would have cost


@dataclass(frozen=True, slots=True)
class OperationCompleted:
    op_id: int
    result: (
        PingResult
        | BootstrapResult
        | LookupResult
        | GetResult
        | PutResult
        | ReadResult
        | RouteResult
        | LeaveResult
        | SyncResult
    )
