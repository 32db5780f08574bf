"""Operations on values, each a small object with its state in fields. Pure.

Writing one value on one contact (:func:`send_store`, with the write token
it needs), publishing on the k closest against the write quorum, owned
writes (a peer record, its tombstone, shared and signed values) and the
hand-over on leaving (reads are :mod:`kadnode.core.reads`, anti-entropy
:mod:`kadnode.core.sync`). Like :mod:`kadnode.core.operations`, whose lookups
they run, their methods are their requests' callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING

from kadnode.config import MAX_CONTEXT_ENTRIES
from kadnode.core import codec, kinds, records, signed, vclock
from kadnode.core.events import LeaveResult, PutResult
from kadnode.core.lookup import Lookup, LookupOutcome
from kadnode.core.messages import (
    Ack,
    Contact,
    Goodbye,
    Kind,
    PingReply,
    Put,
    PutReply,
    Store,
    Value,
)
from kadnode.core.operations import Mode, ignore, quorum, run_lookup
from kadnode.core.store import Record
from kadnode.core.tokens import fresh
from kadnode.errors import DecodeError, LocalProtocolError

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore

# A STORE's reply on the wire: header and msgpack ``true``.
STORE_REPLY_BYTES = codec.HEADER + 1

Settled = Callable[[bool | str, float], None]  # True, False (no answer) or a refusal


# ---- what we hold ------------------------------------------------------------------


def live_records(node: NodeCore, now: float, limit: int | None = None) -> Iterator[Record]:
    """Held records that have not expired (the store drops them lazily),
    examining at most ``limit`` keys."""
    store = node.store
    for key in islice(store.keys(), limit):
        record = store.get(key)
        if record is not None and record.expires_at > now:
            yield record


# ---- writing one value on one contact -------------------------------------------


def send_store(
    node: NodeCore,
    contact: Contact,
    key: bytes,
    value: object,
    ttl: float,
    now: float,
    settled: Settled | None = None,
    token: bytes | None = None,
    kind: Kind = Kind.PLAIN,
) -> int:
    """Write ``value`` on ``contact``. Plain values: bmuller's three-argument
    STORE to stock nodes, or the native STORE with the remaining lifetime
    and a write token. Peer records and shared values: ``kn_put``, native
    only. The token is given (from a lookup's reply) or kept in the
    contact's table entry, else fetched first with a ping. ``settled``
    gets True, False (no answer) or a replica's reason for refusing.
    Returns the bytes sent now."""
    write = _Write(node, contact, key, value, ttl, now, settled, kind)
    if not contact.native:
        if kind != Kind.PLAIN:  # stock nodes hold plain values only
            write.failed(now)
            return 0
        return write.send(None, now)
    token = token or fresh(node.table, contact.node_id, now)
    if token is not None:
        return write.send(token, now)
    return node.send_ping(contact.addr, contact, write.pinged, write.failed, now)


def send_record(
    node: NodeCore, contact: Contact, record: Record, now: float, settled: Settled | None = None
) -> int:
    """Re-send a held record (replication, join handoff, leave, anti-entropy)."""
    remaining = record.expires_at - now
    return send_store(
        node, contact, record.key, record.value, remaining, now, settled, None, record.kind
    )


class _Write:
    __slots__ = ("contact", "key", "kind", "node", "settled", "started", "ttl", "value")

    def __init__(self, node, contact, key, value, ttl, started, settled, kind):
        self.node, self.contact, self.key, self.value = node, contact, key, value
        self.ttl, self.started, self.settled, self.kind = ttl, started, settled, kind

    def send(self, token: bytes | None, at: float) -> int:
        node, contact = self.node, self.contact
        remaining = 0.0
        if token is not None:
            # The receiver counts the lifetime from when the write arrives;
            # less the RTT (more than the one-way transit), it never ends
            # later than ours.
            elapsed = at - self.started
            remaining = max(0.0, self.ttl - node.requests.rtt_estimate(contact) - elapsed)
        if self.kind == Kind.PLAIN:
            message: Store | Put = Store(node.id, self.key, self.value)
            if token is not None:
                message = Store(node.id, self.key, self.value, remaining, token)
        else:  # only native contacts, which always have a token by now
            message = Put(node.id, self.key, self.kind, self.value, remaining, token)
        on_reply = self.replied if self.settled else ignore
        return node.requests.send(
            contact.addr,
            contact,
            message,
            on_reply,
            self.failed,
            at,
            node.config.request_attempts,
        )

    def pinged(self, reply: PingReply, at: float) -> None:
        if reply.token is None:
            self.failed(at)
        else:
            self.send(reply.token, at)

    def replied(self, reply: Ack | PutReply, at: float) -> None:
        if type(reply) is PutReply:
            self.settled(reply.reason or True, at)
        else:  # a plain STORE is refused for a bad token, a kind it holds, a full store
            self.settled(True if reply.ok else "store refused", at)

    def failed(self, at: float) -> None:
        if self.settled:
            self.settled(False, at)


# ---- values ----------------------------------------------------------------------


class Publish:
    """Find the k closest, write to each, count acknowledgements against W.

    The replica set is the k nearest to the key that answered or failed, the
    writer itself among them when it is that near: its own copy (stored
    before publishing) is one of the k, and counts. Only acknowledgements
    from the set count toward W; a node beyond it may still take a copy.

    ``wide``: someone waits on it (a put, a registration, a shared write), so
    its lookup's last round asks all k at once (the paper's); a republish
    keeps the usual CONVERGED_WIDTH x alpha (kadnode.core.lookup).

    A replica is written as soon as its token is in hand: once the lookup has
    converged (a reply brought nobody nearer), each node among the k nearest
    that answered gets its STORE while the lookup waits on the rest, so the
    put need not wait a whole STORE round after its lookup. A node written
    early that a later reply pushes out of the k nearest keeps its copy (as
    above). The put waits only on the set, and only until W of it have
    acknowledged or none is left to answer (seed 001: "Quorum achieved? ->
    acknowledge success"): the slowest replicas, and a lost STORE's resend,
    go on after it returns (``PutResult.pending``)."""

    __slots__ = (
        "acks",
        "finished",
        "key",
        "kind",
        "node",
        "op",
        "outcome",
        "refused",
        "sent",
        "ttl",
        "unsettled",
        "value",
    )

    def __init__(
        self, node, op: int, key: bytes, value: object, ttl: float, kind: Kind, now, wide: bool
    ):
        self.node, self.op, self.key, self.value, self.ttl, self.kind = (
            node,
            op,
            key,
            value,
            ttl,
            kind,
        )
        self.acks: list[Contact] = []
        self.refused: list[str] = []
        self.sent: set[int] = set()  # ids written to
        self.unsettled: set[int] = set()  # ids written to that have not answered
        self.finished = False
        self.outcome: LookupOutcome | None = None
        target = int.from_bytes(key, "big")
        run_lookup(node, target, Mode.NODES, now, self.found, on_reply=self.replied, wide=wide)

    def replied(self, lookup: Lookup, at: float) -> None:
        if lookup.converged:
            sent = self.sent
            for cand in lookup.answered_nearest():
                if cand.contact.node_id not in sent:  # most were written already
                    self.store(cand.contact, cand.token, at)

    def store(self, contact: Contact, token: bytes | None, at: float) -> None:
        node_id = contact.node_id
        if node_id in self.sent:
            return
        self.sent.add(node_id)
        self.unsettled.add(node_id)
        settled = partial(self.settled, contact)
        value, ttl, kind = self.value, self.ttl, self.kind
        send_store(self.node, contact, self.key, value, ttl, at, settled, token, kind)

    def found(self, outcome: LookupOutcome, at: float) -> None:
        for contact in outcome.closest:
            self.store(contact, outcome.tokens.get(contact.node_id), at)
        self.outcome = outcome  # after the sends: one may settle at once
        self.check()

    def settled(self, contact: Contact, ok: bool | str, at: float) -> None:
        self.unsettled.discard(contact.node_id)
        if self.finished:
            return
        if ok is True:
            self.acks.append(contact)
        elif isinstance(ok, str):
            self.refused.append(ok)
        self.check()

    def check(self) -> None:
        """Done once the lookup has ended and W of the set have acknowledged,
        or every write to it has been answered."""
        outcome = self.outcome
        if outcome is None or self.finished:
            return
        members = set(outcome.replica_ids)
        in_set = sum(1 for c in self.acks if c.node_id in members) + outcome.self_replica
        needed = quorum(self.node.config.write_quorum, outcome.replica_set)
        unsettled = self.unsettled
        pending = sum(1 for i in members if i in unsettled)
        if pending and in_set < needed:
            return
        self.finished = True
        result = PutResult(
            self.key,
            in_set,
            [c for c in self.acks if c.node_id in members],
            len(outcome.closest),
            outcome.queried,
            needed,
            outcome.replica_set,
            tuple(dict.fromkeys(self.refused)),
            outcome.self_replica,
            pending,
        )
        self.node.complete(self.op, result)


def own_seq(held: Record | None) -> int:
    """The sequence of ``held``, the record a store holds under our id, else 0."""
    if held is None or held.kind != Kind.PEER:
        return 0
    try:
        return records.from_wire(held.value).seq
    except DecodeError:
        return 0


def register(node: NodeCore, now: float, wide: bool = False) -> int:
    """Sign a peer record for ``node.addresses`` with a higher sequence than
    any before and publish it under our id; returns the operation id."""
    assert node.identity is not None
    cfg = node.config
    # Sequence numbers from the clock in milliseconds: higher after a
    # restart too, with nothing to persist.
    node.seq = max(node.seq + 1, int(now * 1000))
    relays = [(c.node_id, c.host, c.port) for c in node.reach.relays]
    record = records.sign_record(
        node.identity, node.addresses, node.seq, now + cfg.register_lifetime, relays
    )
    payload = records.to_wire(record)
    resend_at = now + cfg.register_lifetime / 2
    node.store.put(Record(node.id_bytes, payload, record.expires, True, resend_at, Kind.PEER))
    return node.publish(node.id_bytes, payload, cfg.register_lifetime, now, Kind.PEER, wide)


def deregister(node: NodeCore, now: float) -> list | None:
    """Replace our peer record, if we registered one, with a signed
    tombstone (no addresses, a higher sequence) held but not republished,
    and return it (None: no record of ours to replace). A leave hands it to
    the k closest like every record it holds; it outlives every record we
    signed before it."""
    held = node.store.get(node.id_bytes)
    if node.identity is None or held is None or held.kind != Kind.PEER or not held.origin:
        return None
    node.listed = False
    expires = now + node.config.register_lifetime
    node.seq = max(node.seq + 1, int(now * 1000))
    payload = records.to_wire(records.deregistration(node.identity, node.seq, expires))
    node.store.put(Record(node.id_bytes, payload, expires, False, expires, Kind.PEER))
    return payload


def write_shared(
    node: NodeCore, key: bytes, value: Value | None, context: object | None, now: float, wide: bool
):
    """Write a shared value; returns the operation id. ``context`` is the
    clock a read returned (``vclock.to_wire`` form) and names what this
    write supersedes; None is a blind write that becomes a sibling. A
    ``value`` of None is a delete (a tombstone), republished by this node
    as its value would have been."""
    seen = vclock.VectorClock()
    if context is not None:
        seen = vclock.from_wire(context, MAX_CONTEXT_ENTRIES)
    held = node.store.get(key)
    current = held.value if held is not None and held.kind == Kind.SHARED else None
    # Our counter must pass every version we wrote before, or a second
    # blind write would carry an equal clock and be dropped as already seen.
    siblings = kinds.siblings_from_wire(current) if current is not None else ()
    mine = max([seen.get(node.id), *(s.clock.get(node.id) for s in siblings)])
    version = vclock.write(seen, node.id, value, after=mine)
    payload = kinds.siblings_to_wire((version,))
    return _publish_own(node, key, current, payload, Kind.SHARED, now, wide)


def write_signed(
    node: NodeCore, value: Value | None, seq: int, salt: bytes, now: float, wide: bool
):
    """Sign version ``seq`` of our value under ``salt`` and publish it under
    its target, SHA-1(tag + our public key + salt); returns the operation id. A seq
    below the one this node holds is refused (one line)."""
    assert node.identity is not None
    version = signed.sign_value(node.identity, value, seq, salt)
    held = node.store.get(version.key)
    current = held.value if held is not None and held.kind == Kind.SIGNED else None
    payload = signed.to_wire(version)
    return _publish_own(node, version.key, current, payload, Kind.SIGNED, now, wide)


def _publish_own(
    node: NodeCore, key: bytes, current: object, payload: object, kind: Kind, now: float, wide: bool
) -> int:
    """Merge our own write into what we hold, keep the duty to republish it,
    and write it on the k closest."""
    try:
        merged = kinds.merge(kind, current, payload, key, now)
    except kinds.Refused as exc:  # too many siblings, an older seq: the caller's to fix
        raise LocalProtocolError(str(exc)) from None
    cfg = node.config
    node.store.put(
        Record(key, merged, now + cfg.expire_after, True, now + cfg.republish_interval, kind)
    )
    return node.publish(key, payload, cfg.expire_after, now, kind, wide)


class Leave:
    """Deregister (a tombstone for our peer record, :func:`deregister`),
    hand every held value, the tombstone among them, to the k closest
    remaining nodes, then say
    goodbye to every kadnode contact, so each drops us from its table and
    ring at once (not after three failed requests), then report. At most a
    quarter of the request budget is in flight during the hand-over; the
    goodbyes are one per contact of the table (bounded by its size)."""

    __slots__ = (
        "acks",
        "byes",
        "goodbyes",
        "keys",
        "next",
        "node",
        "op",
        "open",
        "window",
        "work",
    )

    def __init__(self, node: NodeCore, op: int, now: float):
        self.node, self.op = node, op
        deregister(node, now)
        self.work = [
            (contact, record)
            for record in live_records(node, now)
            for contact in node.table.closest(int.from_bytes(record.key, "big"), node.config.k)
        ]
        self.keys = len({record.key for _, record in self.work})
        self.next = self.open = self.acks = self.goodbyes = 0
        self.byes: list[Contact] | None = None  # once the hand-over is done
        self.window = max(1, node.config.max_pending_requests // 4)
        self.pump(now)

    def pump(self, at: float) -> None:
        while self.next < len(self.work) and self.open < self.window:
            contact, record = self.work[self.next]
            self.next += 1
            self.open += 1
            send_record(self.node, contact, record, at, self.settled)
        if self.open == 0 and self.next == len(self.work) and self.byes is None:
            self.wave(at)

    def settled(self, ok: bool | str, at: float) -> None:
        self.open -= 1
        self.acks += ok is True
        self.pump(at)

    def wave(self, at: float) -> None:
        node = self.node
        self.byes = [c for c in node.table.contacts() if c.native]
        self.open = len(self.byes)
        for contact in self.byes:
            token = fresh(node.table, contact.node_id, at)
            if token is not None:
                self.goodbye(contact, token, at)
            else:  # fetch a token first: the goodbye must echo one
                pinged = partial(self.pinged, contact)
                node.send_ping(contact.addr, contact, pinged, self.unheard, at)
        if not self.byes:
            self.finish()

    def pinged(self, contact: Contact, reply: PingReply, at: float) -> None:
        if reply.token is None:
            self.unheard(at)
        else:
            self.goodbye(contact, reply.token, at)

    def goodbye(self, contact: Contact, token: bytes, at: float) -> None:
        node = self.node
        node.requests.send(
            contact.addr,
            contact,
            Goodbye(node.id, token),
            self.waved,
            self.unheard,
            at,
            node.config.request_attempts,
        )

    def waved(self, reply: Ack, at: float) -> None:
        self.goodbyes += reply.ok
        self.unheard(at)

    def unheard(self, at: float) -> None:
        self.open -= 1
        if self.open == 0:
            self.finish()

    def finish(self) -> None:
        result = LeaveResult(self.keys, len(self.work), self.acks, self.goodbyes)
        self.node.complete(self.op, result)
