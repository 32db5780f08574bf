"""Anti-entropy between replicas: compact digests of what two nodes share. Pure.

Seed 001 (Dynamo-style repair) over Kademlia placement. Node A holds a set of
keys that its neighbour B should hold too (those for which B is among the k
closest, in A's view). A sends B one short hash per bucket of that set (keys
split into :data:`BUCKETS` buckets by their last bits: SHA-1 keys spread
evenly); B compares with the same buckets of its own set and names the
buckets that differ; only for those do they exchange per-key fingerprints,
and only keys that are missing or different travel. In steady state a sync
costs one digest datagram (~600 bytes) instead of re-sending every value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from kadnode.config import AE_BUCKETS as BUCKETS
from kadnode.config import AE_HASH_BYTES as HASH_BYTES
from kadnode.core.messages import Value
from kadnode.core.wire import pack

EMPTY = bytes(HASH_BYTES)
# A digest reply of this one index: "not ready, ask again next round" (its
# responder computes digests in the background: kadnode.core.background).
BUSY = 255


def bucket_of(key: bytes) -> int:
    return key[-1] % BUCKETS


def fingerprint(key: bytes, value: Value) -> bytes:
    """Identifies one version of one key's value (8 bytes)."""
    return hashlib.sha1(key + pack(value)).digest()[:HASH_BYTES]


def digest(entries: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """Bucket hashes over (key, fingerprint) pairs; EMPTY for an empty bucket.

    XOR of the fingerprints: order-free, so both sides agree without sorting.
    """
    acc = [0] * BUCKETS
    for key, fp in entries:
        acc[bucket_of(key)] ^= int.from_bytes(fp, "big")
    return [a.to_bytes(HASH_BYTES, "big") for a in acc]


def differing(mine: list[bytes], theirs: list[bytes]) -> list[int]:
    """Buckets whose hashes differ; ``i + BUCKETS`` when ours is empty there,
    so the other side sends those values without a key list first."""
    return [
        i + BUCKETS if a == EMPTY else i
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True))
        if a != b
    ]
