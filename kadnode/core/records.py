"""Signed peer records: where a node id listens, said by the key the id derives from. Pure, no I/O.

A record binds a node id to its addresses. Its id is the SHA-1 of its
ed25519 public key (:func:`kadnode.core.identity.node_id_for`) and it is signed by
that key, so no one but the key holder can publish, move or revive an id: a
replica stores a record only after :func:`verify_record`, and replaces it only
with a higher sequence number (:func:`accept`). No clock is read here: the
caller passes ``now`` (unix seconds).

Wire form, a msgpack array::

    [node_id (20 B), public_key (32 B), [[host, port], ...], seq, expires, signature (64 B)]

and, for a node behind NAT (kadnode.core.reach), a seventh element: its
relays, ``[[node_id (20 B), host, port], ...]``, peers it keeps a NAT binding
with, through whom it can be reached. The signature covers the msgpack
encoding of ``[DOMAIN, public_key, [[host, port], ...], seq, expires]``, with
the relays as a sixth element when there are any. The leading :data:`DOMAIN` tag keeps a
record signature from ever being valid for anything else the key signs
(domain separation). The node id is not signed: it is a function of the key,
checked by :func:`verify_record`. Hosts are IP literals (IPv4 or IPv6) in
their one canonical spelling, so one record has exactly one encoding.

A record with no addresses is a tombstone: its node has left (deregistered,
:func:`deregistration`). Like any record it replaces only a lower sequence,
so it beats every record its node signed before wherever they meet, and
lives as long as a record would have.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from kadnode.config import MAX_HOST_CHARS, MAX_RECORD_ADDRESSES, MAX_RECORD_LIFETIME, MAX_WIRE_INT
from kadnode.core.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, node_id_for, verify
from kadnode.core.ids import to_bytes
from kadnode.core.wire import decode_id, pack, unpack
from kadnode.errors import DecodeError, KadnodeError, LocalProtocolError, RemoteProtocolError

DOMAIN = b"kadnode-peer-record-v1"
MAX_SEQ = MAX_WIRE_INT

# Why a record is refused: RecordRejected.reason is one of these.
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad signature"
ID_NOT_FROM_KEY = "id does not derive from the key"
OTHER_ID = "stored under another id"
EXPIRED = "expired"
TOO_FAR_AHEAD = "expires too far ahead"
OLDER_SEQ = "older sequence than the one held"

Address = tuple[str, int]
Relay = tuple[int, str, int]  # node id, host, port
MAX_RELAYS = 3


class RecordRejected(RemoteProtocolError):
    """A well-formed record that must not be stored; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"peer record rejected: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PeerRecord:
    node_id: int
    public_key: bytes
    addresses: tuple[Address, ...]
    seq: int  # the signer's version counter: higher replaces lower
    expires: float  # unix seconds
    signature: bytes
    # Peers the node keeps a NAT binding with (none: it is reachable itself).
    relays: tuple[Relay, ...] = ()

    @property
    def deleted(self) -> bool:
        """A tombstone: its node has left and listens nowhere."""
        return not self.addresses


def signed_bytes(
    public_key: bytes,
    addresses: tuple[Address, ...],
    seq: int,
    expires: float,
    relays: tuple[Relay, ...] = (),
) -> bytes:
    """The exact bytes a record's signature covers."""
    signed = [DOMAIN, public_key, [[host, port] for host, port in addresses], seq, expires]
    if relays:
        signed.append(_relays_wire(relays))
    return pack(signed)


def _relays_wire(relays: tuple[Relay, ...]) -> list:
    return [[to_bytes(node_id), host, port] for node_id, host, port in relays]


def _relays(raw: object, error: type[KadnodeError]) -> tuple[Relay, ...]:
    if not isinstance(raw, list | tuple) or not 0 < len(raw) <= MAX_RELAYS:
        raise error(f"a record names 1 to {MAX_RELAYS} relays")
    relays = []
    for entry in raw:
        if not isinstance(entry, list | tuple) or len(entry) != 3 or not _is_address(*entry[1:]):
            raise error("record relay is not [id, IP literal, port 1..65535]")
        relays.append((decode_id(entry[0], "relay id"), entry[1], entry[2]))
    if len({r[0] for r in relays}) != len(relays):
        raise error("record names a relay twice")
    return tuple(relays)


# ---- field checks, shared by sign_record (our mistake) and from_wire (theirs) ----


def _is_address(host: object, port: object) -> bool:
    if type(host) is not str or not 0 < len(host) <= MAX_HOST_CHARS or "%" in host:
        return False  # "%": an IPv6 zone index means nothing to another host
    if type(port) is not int or not 0 < port < 65536:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return str(ip) == host and not ip.is_unspecified and not ip.is_multicast


def _addresses(raw: object, error: type[KadnodeError]) -> tuple[Address, ...]:
    """A record's addresses; none is a tombstone."""
    if not isinstance(raw, list | tuple) or len(raw) > MAX_RECORD_ADDRESSES:
        raise error(f"a record has at most {MAX_RECORD_ADDRESSES} addresses")
    addresses = []
    for entry in raw:
        if not isinstance(entry, list | tuple) or len(entry) != 2 or not _is_address(*entry):
            raise error("record address is not [IP literal, port 1..65535]")
        addresses.append((entry[0], entry[1]))
    if len(set(addresses)) != len(addresses):
        raise error("record lists an address twice")
    return tuple(addresses)


def _check_seq_expires(seq: object, expires: object, error: type[KadnodeError]) -> None:
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise error(f"record seq is not an integer in 0..{MAX_SEQ}")
    if type(expires) is not float or not math.isfinite(expires):
        raise error("record expiry is not a finite float")


# ---- making and carrying records ----------------------------------------------


def sign_record(
    identity: Identity,
    addresses: Iterable[Address],
    seq: int,
    expires: float,
    relays: Iterable[Relay] = (),
) -> PeerRecord:
    """A record for ``identity`` listening on ``addresses`` (and reached
    through ``relays``, behind NAT), signed by its key."""
    addrs = _addresses(tuple(addresses), LocalProtocolError)
    via = tuple(relays)
    via = _relays(_relays_wire(via), LocalProtocolError) if via else ()
    if type(expires) is int:
        expires = float(expires)
    _check_seq_expires(seq, expires, LocalProtocolError)
    signature = identity.sign(signed_bytes(identity.public_key, addrs, seq, expires, via))
    return PeerRecord(identity.node_id, identity.public_key, addrs, seq, expires, signature, via)


def deregistration(identity: Identity, seq: int, expires: float) -> PeerRecord:
    """A tombstone for ``identity``'s record: it listens nowhere any more."""
    return sign_record(identity, (), seq, expires)


def to_wire(record: PeerRecord) -> list:
    wire = [
        to_bytes(record.node_id),
        record.public_key,
        [[host, port] for host, port in record.addresses],
        record.seq,
        record.expires,
        record.signature,
    ]
    if record.relays:
        wire.append(_relays_wire(record.relays))
    return wire


def from_wire(obj: object) -> PeerRecord:
    """Parse a record's wire form; raise DecodeError unless it is exactly that shape.

    This checks shape and sizes only; :func:`verify_record` decides whether
    the record may be believed.
    """
    if type(obj) is not list or len(obj) not in (6, 7):
        raise DecodeError("peer record is not a 6-element list (7 with relays)")
    raw_id, public_key, raw_addresses, seq, expires, signature = obj[:6]
    relays = _relays(obj[6], DecodeError) if len(obj) == 7 else ()
    node_id = decode_id(raw_id, "record node id")
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise DecodeError(f"record public key is not {PUBLIC_KEY_BYTES} bytes")
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        raise DecodeError(f"record signature is not {SIGNATURE_BYTES} bytes")
    addresses = _addresses(raw_addresses, DecodeError)
    _check_seq_expires(seq, expires, DecodeError)
    return PeerRecord(node_id, public_key, addresses, seq, expires, signature, relays)


def encode_record(record: PeerRecord) -> bytes:
    """A record alone as bytes (for storage, or hashing in anti-entropy)."""
    return pack(to_wire(record))


def decode_record(data: bytes) -> PeerRecord:
    """Inverse of :func:`encode_record`; DecodeError for anything else.

    Only the canonical encoding is accepted (msgpack can spell 8080 as a
    uint16 or an int16), so equal records always have equal bytes.
    """
    record = from_wire(unpack(data))
    if encode_record(record) != data:
        raise DecodeError("peer record is not in canonical msgpack form")
    return record


# ---- believing records ------------------------------------------------------


def verify_record(record: PeerRecord, now: float, key_id: int | None = None) -> None:
    """Raise RecordRejected unless ``record`` may be stored at ``now``.

    ``key_id``: the id it is being stored under, when the caller has one.
    The cheap checks run first and the signature last, so a flood of
    malformed or stale records costs no signature verifications.
    """
    if not record.signature:
        raise RecordRejected(UNSIGNED)
    if (
        type(record.public_key) is not bytes
        or len(record.public_key) != PUBLIC_KEY_BYTES
        or node_id_for(record.public_key) != record.node_id
    ):
        raise RecordRejected(ID_NOT_FROM_KEY)
    if key_id is not None and key_id != record.node_id:
        raise RecordRejected(OTHER_ID)
    if record.expires <= now:
        raise RecordRejected(EXPIRED)
    if record.expires > now + MAX_RECORD_LIFETIME:
        raise RecordRejected(TOO_FAR_AHEAD)
    data = signed_bytes(
        record.public_key, record.addresses, record.seq, record.expires, record.relays
    )
    if not verify(record.public_key, record.signature, data):
        raise RecordRejected(BAD_SIGNATURE)


def refusals(reasons: Iterable[str]) -> str:
    """Replicas' refusals of a write in one phrase, most common first ("" for none).

    A record's expiry is read on each replica's own clock, so "expired" or
    "expires too far ahead" from a replica means its clock and the signer's
    differ by more than the record's lifetime (docs/chaos.md): the phrase
    says to look at the clocks.
    """
    counts = Counter(reasons)
    if not counts:
        return ""
    text = ", ".join(f"{n} {why}" for why, n in counts.most_common())
    if EXPIRED in counts or TOO_FAR_AHEAD in counts:
        text += (
            " (a replica reads a record's expiry on its own clock: its clock and this"
            " node's differ by more than the record's lifetime; check both)"
        )
    return f"refused by {text}"


def newer(held: PeerRecord | None, incoming: PeerRecord) -> bool:
    """Whether ``incoming`` should replace ``held``: only a strictly higher seq does.

    At an equal seq the held record stays (an identical one changes nothing);
    a record with a lower seq is stale or a replay.
    """
    return held is None or incoming.seq > held.seq


def accept(
    held: PeerRecord | None, incoming: PeerRecord, now: float, key_id: int | None = None
) -> PeerRecord:
    """The record to hold after ``incoming`` arrives; RecordRejected if it is refused.

    ``incoming`` is verified (under ``key_id``, or else the held record's id),
    then :func:`newer` decides: a higher seq replaces ``held``, an equal seq
    keeps ``held`` (so ``result is incoming`` tells a caller whether anything
    changed), and a lower seq is refused.
    """
    if key_id is None and held is not None:
        key_id = held.node_id
    verify_record(incoming, now, key_id)
    if newer(held, incoming):
        return incoming
    assert held is not None
    if incoming.seq < held.seq:
        raise RecordRejected(OLDER_SEQ)
    return held
