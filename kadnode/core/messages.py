"""Every message on the wire, as a frozen dataclass. Pure, no I/O.

Requests carry the sender's id first, as bmuller/kademlia's RPCs do; replies
are what a request gets back. :mod:`kadnode.core.codec` turns each into
bytes and back, one table each way. The wire shapes (rpcudp framing, bmuller's
argument lists, the native dialect) are described there.

Also here: :class:`Contact` (a node as others see it), the storable
:data:`Value` types and the :class:`Kind` of a stored value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

Addr = tuple[str, int]  # (host, port) of a UDP endpoint

# Values bmuller/kademlia accepts (kademlia.utils.check_dht_value_type).
Value = int | float | bool | str | bytes
VALUE_TYPES = (int, float, bool, str, bytes)


class Kind(IntEnum):
    """What a stored value is (kadnode.core.kinds has each one's merge rule)."""

    PLAIN = 0  # any bmuller-compatible value; the last STORE wins
    PEER = 1  # a signed peer record (kadnode.core.records), wire form
    SHARED = 2  # vector-clocked siblings (kadnode.core.vclock), wire form
    SIGNED = 3  # a signed mutable value (kadnode.core.signed), wire form

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Kind.PLAIN: "plain",
    Kind.PEER: "peer record",
    Kind.SHARED: "shared",
    Kind.SIGNED: "signed value",
}


@dataclass(frozen=True, slots=True)
class Contact:
    """A node as others see it. Equality is (id, host, port)."""

    node_id: int
    host: str
    port: int
    native: bool = field(default=False, compare=False)
    # Its native [id, host, port, flags] entry, packed once when first sent
    # (see kadnode.core.wire.find_nodes_body).
    wire: bytes = field(default=b"", init=False, compare=False, repr=False)

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


# ---- requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    sender_id: int
    # Native only: a write token this receiver gave the sender's address (it
    # proves the address), or padding, so that the reply may be full size
    # (kadnode.core.proof).
    proof: bytes | None = None


@dataclass(frozen=True, slots=True)
class Store:
    """A plain value. bmuller's three arguments, or native with the remaining
    lifetime and the write token the receiver gave the sender."""

    sender_id: int
    key: bytes
    value: Value
    ttl: float | None = None  # native only: remaining lifetime
    token: bytes | None = None  # native only: write token from a recent reply


@dataclass(frozen=True, slots=True)
class FindNode:
    sender_id: int
    target: int
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class FindValue:
    sender_id: int
    key: bytes
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class Has:
    """Native: "do you hold ``key``?" Answered as find_value, but a held value
    comes back as only what the answer needs (kadnode.core.kinds.summary)."""

    sender_id: int
    key: bytes
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class RingQuery:
    """Native: "who are your predecessor and successors?" (Chord stabilize).

    Being asked is also Chord's notify: the receiver offers the sender to its
    own ring view, as it does with every request.
    """

    sender_id: int
    # the digest of the asked node's view that the asker holds (RingReply.digest)
    seen: bytes | None = None
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class FindSuccessor:
    """Native: one step of Chord routing towards the successor of ``key``."""

    sender_id: int
    key: int
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class Digest:
    """Native: bucket hashes of the keys the sender thinks we share."""

    sender_id: int
    hashes: list[bytes]
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class KeyList:
    """Native: (key, fingerprint) pairs for whole buckets that differed."""

    sender_id: int
    buckets: list[int]
    entries: list[tuple[bytes, bytes]]
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class Put:
    """Native: write a signed peer record or a shared value (kadnode.core.kinds)."""

    sender_id: int
    key: bytes
    kind: Kind
    payload: object  # checked by kadnode.core.kinds for its kind
    ttl: float
    token: bytes


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Native: the sender leaves the network; drop it from the table and ring
    now rather than after three failed requests. Believed only from the
    address the receiver knows it at, proven by echoing a write token the
    receiver gave that address (BEP 5): a forged source cannot say goodbye
    for anyone."""

    sender_id: int
    token: bytes


@dataclass(frozen=True, slots=True)
class Reach:
    """Native: "have a node I never contacted send ``nonce`` to the address you
    see me at" (the AutoNAT-style dial-back, kadnode.core.reach). Only from
    a sender that echoes a token the receiver gave its address."""

    sender_id: int
    nonce: bytes
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class Dial:
    """Native: "send ``nonce`` to ``addr``" -- asked by the node a Reach went
    to, of a contact of its own, which answers with one Dialed datagram no
    larger than the Reach that started it."""

    sender_id: int
    addr: Addr
    nonce: bytes
    proof: bytes | None = None  # see Ping


@dataclass(frozen=True, slots=True)
class Dialed:
    """Native: the dial-back itself; arriving at all is what it says."""

    sender_id: int
    nonce: bytes


RequestMessage = (
    Ping
    | Store
    | FindNode
    | FindValue
    | Has
    | RingQuery
    | FindSuccessor
    | Digest
    | KeyList
    | Put
    | Goodbye
    | Reach
    | Dial
    | Dialed
)


# ---- replies -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingReply:
    node_id: int
    token: bytes | None  # native replies carry a write token
    # Native only (kadnode.core.reach): the address the responder saw the
    # ping come from (BEP 42's "ip", libp2p identify's observed address);
    # its clock, whole seconds of the Unix epoch; and whether it is a client
    # (not to be put in any routing table: it may not be reachable).
    seen: Addr | None = None
    clock: int | None = None
    client: bool = False


@dataclass(frozen=True, slots=True)
class NodesReply:
    """find_node, or find_value without the value: the closest contacts known."""

    contacts: list[Contact]
    native: bool
    token: bytes | None = None


@dataclass(frozen=True, slots=True)
class ValueReply:
    """find_value with the value: plain, or (native only) another kind."""

    value: object
    native: bool
    ttl: float | None = None  # native only: its remaining lifetime
    token: bytes | None = None
    kind: Kind = Kind.PLAIN
    # Native, for the kinds quorum reads and kn_has collect from every
    # replica: the k closest to the key, as a nodes reply names them (a
    # lookup learns the replicas beyond those holding the value; BEP 44's
    # get replies carry nodes beside the value too).
    contacts: tuple[Contact, ...] = ()


FindReply = NodesReply | ValueReply


@dataclass(frozen=True, slots=True)
class Ack:
    """A bare yes or no: a store taken, a goodbye believed."""

    ok: bool


@dataclass(frozen=True, slots=True)
class PutReply:
    reason: str | None  # None: taken; else the replica's one-line reason


@dataclass(frozen=True, slots=True)
class RingReply:
    predecessor: Contact | None
    successors: list[Contact]
    # of the whole view (None when the reply was cut to fit): the asker names
    # it in its next query
    digest: bytes | None = None
    # the view is still the one the query named (``seen``): nothing else sent
    unchanged: bool = False
    # A write token for the asker's address, as find and ping replies carry:
    # echoed in the next query, it proves the asker, who then need not pad it.
    token: bytes | None = None


@dataclass(frozen=True, slots=True)
class SuccessorReply:
    done: bool  # True: ``node`` is the key's successor; False: ask ``node`` next
    node: Contact | None  # None: the responder itself


@dataclass(frozen=True, slots=True)
class BucketList:
    """Reply to kn_digest (buckets that differ) or kn_keys (entries wanted)."""

    indices: list[int]


ReplyMessage = (
    PingReply | NodesReply | ValueReply | Ack | PutReply | RingReply | SuccessorReply | BucketList
)
