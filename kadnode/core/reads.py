"""Reading values: a plain get, quorum reads with read repair, exists. Pure.

Like :mod:`kadnode.core.values`, whose writes a read repair sends
(:func:`~kadnode.core.values.send_store`), each is a small object whose
methods are its lookup's callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kadnode.core import kinds
from kadnode.core.events import ExistsResult, GetResult, ReadResult
from kadnode.core.lookup import LookupOutcome
from kadnode.core.messages import Kind
from kadnode.core.operations import Mode, quorum, run_lookup
from kadnode.core.store import Record
from kadnode.core.values import send_store
from kadnode.errors import DecodeError

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore


class Get:
    """A plain value: our own copy, else the first replica's (paper 2.3)."""

    __slots__ = ("key", "node", "op")

    def __init__(self, node: NodeCore, op: int, key: bytes, now: float):
        self.node, self.op, self.key = node, op, key
        record = node.store.get(key)
        if record is not None and record.expires_at > now:
            if record.kind == Kind.PLAIN:
                result = GetResult(key, record.value, True, None, 0, 0)
            else:  # a plain read of a shared value or a peer record
                result = GetResult(key, None, False, None, 0, 0, Kind(record.kind))
            node.complete(op, result)
            return
        run_lookup(node, int.from_bytes(key, "big"), Mode.FIRST, now, self.done)

    def done(self, outcome: LookupOutcome, at: float) -> None:
        node = self.node
        found = outcome.value is not None
        if found and outcome.nearest_without_value is not None:
            # Paper 2.3: cache at the nearest node that lacked it, with the
            # remaining lifetime so caching never extends it.
            ttl = outcome.ttl if outcome.ttl is not None else node.config.expire_after
            nearest = outcome.nearest_without_value
            token = outcome.tokens.get(nearest.node_id)
            send_store(node, nearest, self.key, outcome.value, ttl, at, None, token)
        result = GetResult(
            self.key,
            outcome.value,
            found,
            outcome.value_from,
            outcome.queried,
            outcome.hops,
            None if found else outcome.other_kind,
        )
        node.complete(self.op, result)


class Read:
    """Quorum read of a peer record or shared value, with read repair."""

    __slots__ = ("key", "kind", "node", "op")

    def __init__(self, node: NodeCore, op: int, key: bytes, kind: Kind, now: float):
        self.node, self.op, self.key, self.kind = node, op, key, kind
        run_lookup(node, int.from_bytes(key, "big"), Mode.ALL, now, self.done, kind)

    def done(self, outcome: LookupOutcome, at: float) -> None:
        node, key, kind = self.node, self.key, self.kind
        held = {c.node_id: v for c, v in outcome.values_seen}
        record = node.store.get(key)
        mine = record.value if record and record.kind == kind and record.expires_at > at else None
        payloads = list(held.values()) + ([mine] if mine is not None else [])
        newest, rejected = kinds.newest(kind, payloads, key, at)
        stale = [
            c
            for c in outcome.closest
            if newest is not None and not kinds.same(kind, held.get(c.node_id), newest)
        ]
        ttl = kinds.expires(kind, newest, at + node.config.expire_after) - at if newest else 0
        for contact in stale:
            token = outcome.tokens.get(contact.node_id)
            send_store(node, contact, key, newest, ttl, at, None, token, kind)
        repaired = len(stale)
        if mine is not None and newest is not None and not kinds.same(kind, mine, newest):
            repaired += self.repair_own(record, newest, at)
        node.stats["read_repairs"] += repaired
        # The replicas of the set that answered, the reader's own store
        # included when it is one of them, and of those the ones that held
        # the newest already.
        members = set(outcome.replica_ids)
        answered = [held.get(c.node_id) for c in outcome.closest if c.node_id in members]
        if outcome.self_replica:
            answered.append(mine)
        agreeing = sum(1 for v in answered if newest is not None and kinds.same(kind, v, newest))
        result = ReadResult(
            key,
            kind,
            newest,
            outcome.replica_set,
            len(answered),
            len(held),
            agreeing,
            repaired,
            rejected,
            quorum(node.config.read_quorum, outcome.replica_set),
            None if newest is not None else outcome.other_kind,
        )
        node.complete(self.op, result)

    def repair_own(self, record: Record, newest: object, at: float) -> int:
        """Our own copy is stale too: it takes what the read found (1), unless
        it is refused (0)."""
        try:
            merged = kinds.merge(self.kind, record.value, newest, self.key, at, guard=False)
        except (kinds.Refused, DecodeError):
            return 0
        self.node.store.put(
            Record(self.key, merged, record.expires_at, record.origin, record.resend_at,
                   self.kind, record.source)
        )  # fmt: skip
        return 1


# Which kind a key's answer is about when replicas hold several: a replica
# lets a signed record or value replace a shared one, and a plain STORE
# never replaces another kind (kadnode.core.answers).
PRECEDENCE = (Kind.PEER, Kind.SIGNED, Kind.SHARED, Kind.PLAIN)


class Exists:
    """Whether a key holds a live value, with no value transferred beyond
    what that needs: a lookup asking each node met kn_has (kinds.summary).
    A plain value exists if any node holds it; an owned kind's newest valid
    version decides (a tombstone: it does not)."""

    __slots__ = ("key", "node", "op")

    def __init__(self, node: NodeCore, op: int, key: bytes, now: float):
        self.node, self.op, self.key = node, op, key
        run_lookup(node, int.from_bytes(key, "big"), Mode.HAS, now, self.done)

    def done(self, outcome: LookupOutcome, at: float) -> None:
        node, key = self.node, self.key
        seen = [held for _, held in outcome.values_seen]
        record = node.store.get(key)
        if record is not None and record.expires_at > at:
            seen.append((record.kind, kinds.summary(record.kind, record.value)))
        held = {Kind(kind) for kind, _ in seen}
        kind = next((k for k in PRECEDENCE if k in held), None)
        exists = deleted = False
        if kind == Kind.PLAIN:
            exists = True
        elif kind is not None:
            newest, _ = kinds.newest(kind, [p for k, p in seen if k == kind], key, at)
            deleted = newest is not None and kinds.deleted(kind, newest)
            exists = newest is not None and not deleted
        result = ExistsResult(key, exists, kind, deleted, len(seen), outcome.queried)
        node.complete(self.op, result)
