"""A node's identity: an ed25519 key pair and the node id derived from it. Pure, no I/O.

The node id is the SHA-1 of the 32-byte raw public key (:func:`node_id_for`),
so an id cannot be chosen freely: it is bound to a key, and only the holder of
that key can sign for it (S/Kademlia, Baumgart & Mies 2007, "secure nodeId
assignment"). The only source of randomness is :meth:`Identity.generate`,
which reads the OS CSPRNG unless the caller passes its own ``rng_bytes``.
Persisting the seed is the daemon's job (its SQLite meta table), not this
module's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kadnode.core.ids import key_id
from kadnode.errors import LocalProtocolError

SEED_BYTES = 32  # RFC 8032 section 5.1.5: an ed25519 private key is 32 bytes
PUBLIC_KEY_BYTES = 32  # RFC 8032 section 5.1.2
SIGNATURE_BYTES = 64  # RFC 8032 section 5.1.6


def node_id_for(public_key: bytes) -> int:
    """The 160-bit node id of a public key: SHA-1 of its 32 raw bytes.

    SHA-1 puts key-derived ids in the same 160-bit space as Kademlia ids and
    key hashes (:mod:`kadnode.core.ids`), so they mix with bmuller/kademlia nodes'
    ids. Deriving the id from the key, as S/Kademlia does, is what makes a
    record for an id unforgeable: a peer cannot claim an id without the key
    that hashes to it.
    """
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise LocalProtocolError(f"an ed25519 public key is {PUBLIC_KEY_BYTES} bytes")
    return key_id(public_key)


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Identity:
    """An ed25519 key pair. ``seed`` is secret: it never appears in ``repr``."""

    seed: bytes = field(repr=False)
    public_key: bytes
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != SEED_BYTES:
            raise LocalProtocolError(f"an ed25519 seed is {SEED_BYTES} bytes")
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        if _public_bytes(key) != self.public_key:
            raise LocalProtocolError("public key does not belong to the seed")
        object.__setattr__(self, "_key", key)

    @property
    def node_id(self) -> int:
        return node_id_for(self.public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if type(seed) is not bytes or len(seed) != SEED_BYTES:
            raise LocalProtocolError(f"an ed25519 seed is {SEED_BYTES} bytes")
        return cls(seed, _public_bytes(Ed25519PrivateKey.from_private_bytes(seed)))

    @classmethod
    def generate(cls, rng_bytes: Callable[[int], bytes] = os.urandom) -> Identity:
        """A fresh identity; pass ``rng_bytes`` (e.g. ``Random(seed).randbytes``) in tests."""
        return cls.from_seed(rng_bytes(SEED_BYTES))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte ed25519 signature of ``data``."""
        return self._key.sign(data)


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s signature of ``data``.

    Never raises: a key or signature of the wrong size or type, or a key that
    is not a curve point, is simply not a valid signature.
    """
    if (
        type(public_key) is not bytes
        or len(public_key) != PUBLIC_KEY_BYTES
        or type(signature) is not bytes
        or len(signature) != SIGNATURE_BYTES
    ):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
