"""How each kind of stored value is accepted, merged and compared. Pure.

Four kinds share the value store and the replication machinery:

* PLAIN: any bmuller-compatible value; the last STORE wins (bmuller's rule).
  Plain STOREs, which anyone can send, never replace the other two kinds.
* PEER: a signed peer record (kadnode.core.records), stored under the node's own
  id; the highest valid sequence wins, and only its key can sign it.
* SHARED: multi-writer values with vector clocks (kadnode.core.vclock): concurrent
  writes are kept as siblings, a write naming their context resolves them. A
  delete is such a write whose value is nil (a tombstone): it supersedes
  what its context saw, and a write concurrent with it survives as a sibling.
* SIGNED: a signed mutable value (kadnode.core.signed), stored under SHA-1 of
  its owner's key and salt; the highest valid sequence wins, as for PEER.

The wire payload of a PEER record is ``records.to_wire``; of a SHARED value a
list of ``[value or nil, clock]`` siblings.
"""

from __future__ import annotations

from kadnode.core import records, signed, vclock
from kadnode.core.codec import check_value
from kadnode.core.messages import Kind
from kadnode.errors import DecodeError, KadnodeError


class Refused(KadnodeError):
    """A write a replica will not take; the message is the reason."""


def siblings_from_wire(payload: object) -> tuple[vclock.Versioned, ...]:
    if type(payload) is not list or not 0 < len(payload) <= vclock.MAX_SIBLINGS:
        raise DecodeError("shared value is not a short list of [value, clock]")
    out = []
    for item in payload:
        if type(item) is not list or len(item) != 2:
            raise DecodeError("shared sibling is not [value, clock]")
        value = None if item[0] is None else check_value(item[0])  # None: a tombstone
        out.append(vclock.Versioned(value, vclock.from_wire(item[1])))
    return tuple(out)


def siblings_to_wire(siblings: tuple[vclock.Versioned, ...]) -> list:
    return [[s.value, vclock.to_wire(s.clock)] for s in siblings]


def live(siblings: tuple[vclock.Versioned, ...]) -> tuple[vclock.Versioned, ...]:
    """The siblings that are values, not tombstones: none left means deleted."""
    return tuple(s for s in siblings if s.value is not None)


def deleted(kind: Kind, payload: object) -> bool:
    """Whether a well-formed payload is a tombstone: nothing left to return."""
    if kind == Kind.SIGNED:
        return signed.from_wire(payload).deleted
    if kind == Kind.PEER:
        return records.from_wire(payload).deleted
    if kind == Kind.SHARED:
        return not live(siblings_from_wire(payload))
    return False


def summary(kind: Kind, payload: object) -> object:
    """What kn_has answers for a held payload: only what telling whether the
    key holds a live version needs. A plain value: true. A shared value: its
    siblings' clocks, each value replaced by true (nil for a tombstone). A
    peer record or signed value: all of it, since only the whole version's
    signature proves its sequence (at most 1 KB)."""
    if kind == Kind.PLAIN:
        return True
    if kind == Kind.SHARED:
        return [[None if value is None else True, clock] for value, clock in payload]
    return payload


def merge(
    kind: Kind, held: object | None, incoming: object, key: bytes, now: float, guard: bool = True
) -> object:
    """The payload a replica holds once ``incoming`` arrives (``held`` is its
    current payload of the same kind, or None). Raises Refused or DecodeError.
    ``guard``: refuse a shared version whose counters climb too far past what
    is held (vclock.counter_jump); a reader merging replicas' answers does
    not, so one hostile replica cannot make a key unreadable."""
    if kind == Kind.PEER:
        record = records.from_wire(incoming)
        kept = records.from_wire(held) if held is not None else None
        try:
            winner = records.accept(kept, record, now, int.from_bytes(key, "big"))
        except records.RecordRejected as exc:
            raise Refused(exc.reason) from None
        return records.to_wire(winner)
    if kind == Kind.SIGNED:
        version = signed.from_wire(incoming)
        kept_version = signed.from_wire(held) if held is not None else None
        try:
            return signed.to_wire(signed.accept(kept_version, version, key))
        except signed.Rejected as exc:
            raise Refused(exc.reason) from None
    if kind == Kind.SHARED:
        siblings = kept = siblings_from_wire(held) if held is not None else ()
        try:
            for version in siblings_from_wire(incoming):
                # Against what was held, not the versions before it in this
                # payload: one payload cannot climb by steps.
                if guard and (jump := vclock.counter_jump(kept, version)) is not None:
                    raise Refused(jump)
                siblings = vclock.reconcile(siblings, version)
        except vclock.TooManySiblings as exc:
            raise Refused(str(exc)) from None
        # In one order whatever order they arrived in: replicas holding the same
        # siblings hold the same bytes (anti-entropy compares fingerprints).
        return siblings_to_wire(tuple(sorted(siblings, key=lambda s: s.clock.entries)))
    raise Refused(f"kind {kind} is not written with kn_put")


def check(kind: Kind, payload: object) -> None:
    """Raise DecodeError unless ``payload`` is a well-formed payload of ``kind``
    (its signature and expiry are not checked here)."""
    if kind == Kind.PEER:
        records.from_wire(payload)
    elif kind == Kind.SHARED:
        siblings_from_wire(payload)
    elif kind == Kind.SIGNED:
        signed.from_wire(payload)
    else:
        check_value(payload)


def expires(kind: Kind, payload: object, default: float) -> float:
    """A peer record carries its own expiry; other kinds live ``default``."""
    return records.from_wire(payload).expires if kind == Kind.PEER else default


def newest(kind: Kind, payloads: list[object], key: bytes, now: float) -> tuple[object | None, int]:
    """What a quorum read returns from the replicas' payloads: (payload, rejected).

    PEER, SIGNED: the valid version with the highest sequence (invalid ones
    counted in ``rejected``; an older valid one is only stale); SHARED: every
    sibling reconciled into one set.
    """
    if kind in (Kind.PEER, Kind.SIGNED):
        best: tuple[int, list] | None = None
        rejected = 0
        for payload in payloads:
            try:
                version = _verified(kind, payload, key, now)
            except (DecodeError, records.RecordRejected, signed.Rejected):
                rejected += 1  # forged, expired, malformed: never returned
                continue
            if best is None or version[0] > best[0]:
                best = version
        return (best[1] if best is not None else None), rejected
    merged: object | None = None
    rejected = 0
    for payload in payloads:
        try:
            merged = merge(kind, merged, payload, key, now, guard=False)
        except (Refused, DecodeError):
            rejected += 1
    return merged, rejected


def _verified(kind: Kind, payload: object, key: bytes, now: float) -> tuple[int, list]:
    """A signed version's (seq, canonical wire form), once verified under ``key``."""
    if kind == Kind.PEER:
        record = records.from_wire(payload)
        records.verify_record(record, now, int.from_bytes(key, "big"))
        return record.seq, records.to_wire(record)
    version = signed.from_wire(payload)
    signed.verify_value(version, key)
    return version.seq, signed.to_wire(version)


def same(kind: Kind, a: object, b: object) -> bool:
    """Whether a replica's payload is already the newest (no read repair needed)."""
    if kind == Kind.SHARED:
        try:
            return set(map(_sibling_key, siblings_from_wire(a))) == set(
                map(_sibling_key, siblings_from_wire(b))
            )
        except DecodeError:
            return False
    return a == b


def _sibling_key(version: vclock.Versioned) -> tuple:
    return (repr(version.value), version.clock)
