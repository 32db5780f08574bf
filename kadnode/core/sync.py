"""Anti-entropy between replicas, as operations of the node. Pure.

Seed 001's anti-entropy: every interval a node compares what it holds with one
neighbour's (kadnode.core.antientropy: 64 bucket hashes, then key lists of the
buckets that differ) and pushes what the neighbour lacks with
:func:`kadnode.core.values.send_store`. What grows with the store, the scan of
the records two nodes share, runs as a background job (:func:`shared_job`,
kadnode.core.background), never on the datagram path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from kadnode.config import AE_DIGESTS_KEPT, AE_KEYS_PER_DATAGRAM
from kadnode.core import antientropy, codec, wire
from kadnode.core.events import SyncResult
from kadnode.core.messages import BucketList, Contact, Digest, KeyList, PingReply
from kadnode.core.operations import ignore
from kadnode.core.store import Record
from kadnode.core.tokens import proving
from kadnode.core.values import STORE_REPLY_BYTES, send_record

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore


def shared_with(node: NodeCore, peer_id: int, now: float) -> list[tuple[bytes, bytes, Record]]:
    """Held (key, fingerprint, record) for which ``peer_id`` is among the k
    closest (our view): what anti-entropy with that peer compares. All at
    once: for tests and tools; the node itself runs :func:`shared_job`."""
    out: list[tuple[bytes, bytes, Record]] = []
    for _ in shared_job(node, peer_id, now, lambda *entry: out.append(entry), ignore):
        pass
    return out


def keep_digest(node: NodeCore, peer: int, now: float, hashes: list[bytes]) -> None:
    """Keep the digest of what ``peer`` shares with us (the oldest kept goes first)."""
    digests = node.ae_digests
    digests.pop(peer, None)
    if len(digests) >= AE_DIGESTS_KEPT:
        del digests[next(iter(digests))]
    digests[peer] = (now, hashes)


# Past every 20-byte key: the end of the key range.
KEYS_END = b"\xff" * 21


def store_keys(store, chunk: int = 256) -> Iterator[bytes]:
    """Every key held, in order, ``chunk`` at a time (a range at a time)."""
    low = b""
    while True:
        keys = store.keys_between(low, KEYS_END, chunk)
        yield from keys
        if len(keys) < chunk:
            return
        low = keys[-1] + b"\x00"


def shared_job(
    node: NodeCore,
    peer_id: int,
    now: float,
    each: Callable[[bytes, bytes, Record], None],
    done: Callable[[], None],
    wanted: Callable[[bytes], bool] | None = None,
) -> Iterator[None]:
    """A background job (kadnode.core.background): ``each`` held record
    ``peer_id`` shares with us (of the keys ``wanted``, if given), then
    ``done``; yields once per record."""
    k = node.config.k
    for key in store_keys(node.store):
        yield
        if wanted is not None and not wanted(key):
            continue
        record = node.store.get(key)
        if record is None or record.expires_at <= now:
            continue
        target = int.from_bytes(key, "big")
        ranked = [c.node_id for c in node.table.closest(target, k)] + [node.id]
        if peer_id in sorted(ranked, key=lambda i: i ^ target)[:k]:
            each(key, antientropy.fingerprint(key, record.value), record)
    done()


# ---- anti-entropy -------------------------------------------------------------------


class Sync:
    """One anti-entropy exchange with ``peer``: a digest first; then key lists
    for the buckets that differ; then the values the peer lacks. Buckets the
    peer holds nothing of skip the key list."""

    __slots__ = (
        "bytes",
        "differ",
        "done",
        "node",
        "offered",
        "open",
        "peer",
        "republish",
        "sent",
        "shared",
    )

    def __init__(
        self,
        node: NodeCore,
        peer: Contact,
        now: float,
        done: Callable,
        shared: list[tuple[bytes, bytes, Record]] | None = None,
    ):
        """``shared``: what we share with ``peer``, when it has just been
        computed; else it is, in the background, before the digest goes."""
        self.node, self.peer, self.done = node, peer, done
        node.stats["ae_syncs"] += 1
        self.bytes = self.open = self.offered = self.sent = self.differ = self.republish = 0
        if shared is not None:
            self.shared = shared
            self.collected(now)
            return
        self.shared = []
        job = shared_job(node, peer.node_id, now, self.collect, self.collected)
        if not node.background.add(job, now):
            self.open = 1
            self.settle(now)  # too much queued: this round is skipped

    def collect(self, key: bytes, fp: bytes, record: Record) -> None:
        self.shared.append((key, fp, record))

    def collected(self, now: float | None = None) -> None:
        node = self.node
        now = node.background.now if now is None else now
        self.republish = sum(
            len(codec.encode_request(bytes(20), "store", [node.id_bytes, k, r.value, 0.0]))
            + STORE_REPLY_BYTES
            for k, _, r in self.shared
        )
        hashes = antientropy.digest((k, fp) for k, fp, _ in self.shared)
        keep_digest(node, self.peer.node_id, now, hashes)  # for the peer's own sync with us
        digest = Digest(node.id, hashes)
        peer = self.peer
        if proving(node.table, peer.node_id, now) is not None:
            self.ask(digest, self.differing, now)
        else:  # a peer answers a digest only from a proven address: get a token first
            self.open += 1
            pinged = partial(self.pinged, digest)
            self.bytes += node.send_ping(peer.addr, peer, pinged, self.settle, now)

    def pinged(self, digest: Digest, reply: PingReply, at: float) -> None:
        if reply.token is not None:  # kept in the peer's table entry: the digest echoes it
            self.ask(digest, self.differing, at)
        self.settle(at)

    def ask(self, message: Digest | KeyList, then: Callable, at: float) -> None:
        self.open += 1
        node = self.node
        self.bytes += node.requests.send(
            self.peer.addr,
            self.peer,
            message,
            partial(self.replied, then),
            self.settle,
            at,
            node.config.request_attempts,
        )

    def replied(self, then: Callable, reply: BucketList, at: float) -> None:
        self.bytes += codec.HEADER + len(wire.pack(reply.indices))
        then(reply.indices, at)
        self.settle(at)

    def send(self, entries: list[tuple[bytes, bytes, Record]], at: float) -> None:
        for _, _, record in entries:
            self.sent += 1
            self.open += 1
            self.bytes += send_record(self.node, self.peer, record, at, self.stored)

    def stored(self, ok: bool | str, at: float) -> None:
        self.bytes += STORE_REPLY_BYTES
        self.settle(at)

    def offer(self, chunk: list[tuple[bytes, bytes, Record]], buckets: list[int], at: float):
        self.offered += len(chunk)
        entries = [[k, fp] for k, fp, _ in chunk]
        wanted = partial(self.wanted, chunk)
        self.ask(KeyList(self.node.id, buckets, entries), wanted, at)

    def wanted(self, chunk: list, indices: list[int], at: float) -> None:
        self.send([chunk[i] for i in indices if i < len(chunk)], at)

    def differing(self, buckets: list[int], at: float) -> None:
        if buckets == [antientropy.BUSY]:  # its digest is being computed: next round
            self.node.stats["ae_busy"] += 1
            return
        self.differ = len(buckets)
        shared = self.shared
        empty = {b - antientropy.BUCKETS for b in buckets if b >= antientropy.BUCKETS}
        self.send([e for e in shared if antientropy.bucket_of(e[0]) in empty], at)
        chunk: list[tuple[bytes, bytes, Record]] = []
        covered: list[int] = []
        for bucket in sorted(b for b in buckets if b < antientropy.BUCKETS):
            part = [e for e in shared if antientropy.bucket_of(e[0]) == bucket]
            if covered and len(chunk) + len(part) > AE_KEYS_PER_DATAGRAM:
                self.offer(chunk, covered, at)
                chunk, covered = [], []
            chunk.extend(part)
            covered.append(bucket)
        if covered:
            self.offer(chunk, covered, at)

    def settle(self, at: float) -> None:
        self.open -= 1
        if self.open == 0:
            self.node.stats["ae_bytes"] += self.bytes
            result = SyncResult(
                self.peer,
                len(self.shared),
                self.differ,
                self.offered,
                self.sent,
                self.bytes,
                self.republish,
            )
            self.done(result, at)
