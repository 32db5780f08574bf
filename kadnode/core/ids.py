"""160-bit identifiers, the XOR metric and ring arithmetic. Pure, no I/O.

Ids are plain ``int`` values in ``[0, 2**160)`` inside kadnode (XOR on ints is
fast in CPython) and 20 big-endian bytes on the wire, as in bmuller/kademlia
and rpcudp peers. Keys are hashed with SHA-1 of their UTF-8 bytes, exactly as
``kademlia.utils.digest`` does, so ``kadnode get foo`` finds a value that a
bmuller node stored with ``set("foo", ...)``.
"""

from __future__ import annotations

import hashlib
import random

from kadnode.config import MAX_KEY_BYTES
from kadnode.errors import LocalProtocolError

ID_BITS = 160
ID_BYTES = ID_BITS // 8
ID_SPACE = 1 << ID_BITS
ID_MAX = ID_SPACE - 1


def distance(a: int, b: int) -> int:
    """The Kademlia XOR metric (Maymounkov & Mazieres 2002, section 2.1)."""
    return a ^ b


def log_distance(a: int, b: int) -> int:
    """Index of the highest differing bit, -1 when ``a == b``.

    This is the k-bucket index: bucket ``i`` holds the contacts at distance
    ``[2**i, 2**(i+1))`` from the table's owner.
    """
    return (a ^ b).bit_length() - 1


def ring_distance(a: int, b: int) -> int:
    """Clockwise distance from ``a`` to ``b`` on the Chord ring (mod 2**160)."""
    return (b - a) % ID_SPACE


def in_half_open(x: int, a: int, b: int) -> bool:
    """``x`` in the ring interval ``(a, b]``; the whole ring when ``a == b``."""
    if a == b:
        return True
    return 0 < ring_distance(a, x) <= ring_distance(a, b)


def in_open(x: int, a: int, b: int) -> bool:
    """``x`` in the open ring interval ``(a, b)``; all but ``a`` when ``a == b``."""
    if a == b:
        return x != a
    return 0 < ring_distance(a, x) < ring_distance(a, b)


def to_bytes(node_id: int) -> bytes:
    return node_id.to_bytes(ID_BYTES, "big")


def from_bytes(raw: bytes) -> int:
    if len(raw) != ID_BYTES:
        raise LocalProtocolError(f"an id is {ID_BYTES} bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def to_hex(node_id: int) -> str:
    return f"{node_id:040x}"


def parse_hex(text: str) -> int:
    """Parse a 40-hex-digit id as a user typed it; one clear error otherwise."""
    cleaned = text.strip().lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if len(cleaned) != 2 * ID_BYTES or any(c not in "0123456789abcdef" for c in cleaned):
        raise LocalProtocolError(f"not a 160-bit id (40 hex digits): {text!r}")
    return int(cleaned, 16)


def key_digest(key: str | bytes) -> bytes:
    """SHA-1 of the key, as bmuller/kademlia's ``digest`` (str is UTF-8 encoded)."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return hashlib.sha1(key).digest()


def user_key(key: str | bytes) -> bytes:
    """A user's key as the bytes that are hashed (str is UTF-8 encoded),
    refusing one over MAX_KEY_BYTES with one line."""
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) > MAX_KEY_BYTES:
        raise LocalProtocolError(f"key of {len(raw)} bytes is over the {MAX_KEY_BYTES}-byte limit")
    return raw


def key_id(key: str | bytes) -> int:
    return int.from_bytes(key_digest(key), "big")


def random_id_in_bucket(owner: int, index: int, rng: random.Random) -> int:
    """A random id at log distance ``index`` from ``owner`` (for bucket refresh)."""
    if index < 0:
        return owner
    return owner ^ ((1 << index) | rng.getrandbits(index))
