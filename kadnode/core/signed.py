"""Signed mutable values: any value, under a key derived from its owner's public
key, that only the owner can change (BEP 44's model). Pure, no I/O.

A value is stored under its target, SHA-1(tag + public key + salt): one owner
has as many values as salts. The tag (:data:`TARGET_TAG`) is kadnode's
departure from BEP 44's SHA-1(public key + salt): a node's id is SHA-1 of its
public key, so without it an unsalted value would share its key with its
owner's peer record, and replicas holding that record would refuse the value.

Each version carries a sequence number and an ed25519 signature over
``pack([DOMAIN, salt, value, seq])``; a replica keeps the valid version with
the highest sequence and refuses a lower one (BEP 44: a put's seq must exceed
the one stored), so a replayed old version is refused wherever the newer one
is held, and a quorum read returns the newest of the replicas' versions. At
an equal sequence the version held stays.

As in BEP 44 the signature carries no expiry: replicas keep a version for
the store's usual lifetime from its last write, and the owner's node
republishes it. A delete is a version like any other whose value is nil (a
tombstone): it beats every older version wherever versions meet (a write,
read repair, anti-entropy, a hand-off) and is republished as long as the
value would have been. The :data:`DOMAIN` tag keeps these signatures from
being valid for anything else the key signs (peer records have their own).

Wire form, a msgpack array: ``[public_key (32 B), salt, value or nil, seq, signature (64 B)]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kadnode.config import MAX_SALT_BYTES, MAX_WIRE_INT
from kadnode.core.codec import check_value, check_value_size
from kadnode.core.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, verify
from kadnode.core.messages import Value
from kadnode.core.wire import pack
from kadnode.errors import DecodeError, KadnodeError, LocalProtocolError, RemoteProtocolError

DOMAIN = b"kadnode-signed-value-v1"
TARGET_TAG = b"kadnode-signed-target-v1"
MAX_SEQ = MAX_WIRE_INT

# Why a version is refused: Rejected.reason is one of these.
BAD_SIGNATURE = "bad signature"
OTHER_KEY = "stored under another key than SHA-1(tag + public key + salt)"
OLDER_SEQ = "older sequence than the one held"


class Rejected(RemoteProtocolError):
    """A well-formed version that must not be stored; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signed value rejected: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedValue:
    public_key: bytes
    salt: bytes
    value: Value | None  # None: deleted (a tombstone)
    seq: int  # the owner's version counter: higher replaces lower
    signature: bytes

    @property
    def key(self) -> bytes:
        return target(self.public_key, self.salt)

    @property
    def deleted(self) -> bool:
        return self.value is None


def target(public_key: bytes, salt: bytes = b"") -> bytes:
    """The key a value of this owner and salt is stored under."""
    return hashlib.sha1(TARGET_TAG + public_key + salt).digest()


def signed_bytes(salt: bytes, value: Value | None, seq: int) -> bytes:
    """The exact bytes a version's signature covers."""
    return pack([DOMAIN, salt, value, seq])


def _check_fields(salt: object, seq: object, error: type[KadnodeError]) -> None:
    if type(salt) is not bytes or len(salt) > MAX_SALT_BYTES:
        raise error(f"a salt is at most {MAX_SALT_BYTES} bytes")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise error(f"seq is not an integer in 0..{MAX_SEQ}")


def sign_value(identity: Identity, value: Value | None, seq: int, salt: bytes = b"") -> SignedValue:
    """Version ``seq`` of ``identity``'s value under ``salt``, signed by its
    key; ``value`` None deletes it (a tombstone)."""
    _check_fields(salt, seq, LocalProtocolError)
    if value is not None:
        check_value_size(value)
    signature = identity.sign(signed_bytes(salt, value, seq))
    return SignedValue(identity.public_key, salt, value, seq, signature)


def to_wire(version: SignedValue) -> list:
    return [version.public_key, version.salt, version.value, version.seq, version.signature]


def from_wire(obj: object) -> SignedValue:
    """Parse a version's wire form; DecodeError unless it is exactly that shape.
    :func:`verify_value` decides whether it may be believed."""
    if type(obj) is not list or len(obj) != 5:
        raise DecodeError("signed value is not a 5-element list")
    public_key, salt, value, seq, signature = obj
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise DecodeError(f"signed value's public key is not {PUBLIC_KEY_BYTES} bytes")
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        raise DecodeError(f"signed value's signature is not {SIGNATURE_BYTES} bytes")
    _check_fields(salt, seq, DecodeError)
    value = None if value is None else check_value(value)
    return SignedValue(public_key, salt, value, seq, signature)


def verify_value(version: SignedValue, key: bytes) -> None:
    """Raise Rejected unless ``version`` may be stored under ``key``; the
    cheap check first, the signature last."""
    if version.key != key:
        raise Rejected(OTHER_KEY)
    data = signed_bytes(version.salt, version.value, version.seq)
    if not verify(version.public_key, version.signature, data):
        raise Rejected(BAD_SIGNATURE)


def accept(held: SignedValue | None, incoming: SignedValue, key: bytes) -> SignedValue:
    """The version to hold once ``incoming`` arrives; Rejected if refused: it is
    verified, then a higher seq replaces ``held``, an equal one keeps ``held``
    and a lower one is refused."""
    verify_value(incoming, key)
    if held is None or incoming.seq > held.seq:
        return incoming
    if incoming.seq < held.seq:
        raise Rejected(OLDER_SEQ)
    return held
