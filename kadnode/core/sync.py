"""Anti-entropy between replicas, as operations of the node. Pure.

Seed 001's anti-entropy: every interval a node compares what it holds with one
neighbour's (kadnode.core.antientropy: 64 bucket hashes, then key lists of the
buckets that differ) and pushes what the neighbour lacks or holds another
version of with :func:`kadnode.core.values.send_store`. The answering side is
here too (:func:`digest`, :func:`key_list`, in kadnode.core.answers' table).
What grows with the store, the scan of
the records two nodes share, runs as a background job (:func:`shared_job`,
kadnode.core.background), never on the datagram path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from kadnode.config import (
    AE_DIGESTS_KEPT,
    AE_JOBS_PER_ROUND,
    AE_KEYS_PER_DATAGRAM,
    AE_PEERS_TRACKED,
)
from kadnode.core import antientropy, codec, wire
from kadnode.core.events import SyncResult
from kadnode.core.messages import BucketList, Contact, Digest, KeyList, PingReply
from kadnode.core.operations import ignore
from kadnode.core.store import Record
from kadnode.core.tokens import proving
from kadnode.core.values import STORE_REPLY_BYTES, send_record
from kadnode.core.wire import contact_of

if TYPE_CHECKING:
    from kadnode.core.answers import Asker
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


# ---- answering a peer's sync ----------------------------------------------------------


def digest(node: NodeCore, message: Digest, asker: Asker, now: float) -> BucketList:
    """Buckets whose keys differ from the sender's (nothing, to a stranger).

    Our digest of what we share with the sender is computed in the
    background and kept for an anti-entropy interval: the reply compares 64
    hashes. Until one is ready the reply is BUSY (ask again next round).
    Only a neighbour's request is answered (:func:`_neighbour`): a forged one
    would make us sync with, and push values at, whoever it names."""
    peer = message.sender_id
    if not _neighbour(node, peer, asker):
        return BucketList([])
    kept = node.ae_digests.get(peer)
    if kept is None or now - kept[0] >= node.config.anti_entropy_interval:
        _compute_digest(node, peer, now)
    if kept is None:
        node.stats["ae_busy_replies"] += 1
        return BucketList([antientropy.BUSY])
    return BucketList(antientropy.differing(kept[1], message.hashes))


def _neighbour(node: NodeCore, peer: int, asker: Asker) -> bool:
    """Anti-entropy is between neighbours: a request that echoes our token,
    from a contact we hold at that very address, among our 2k nearest (a
    node syncs with one of its k nearest; views differ). Others are refused,
    counted: at most a few ids of one /24 are this near (routing admission)."""
    stats = node.stats
    if not asker.vouched or not node.table.holds(peer, asker.addr):
        stats["syncs_refused_unproven"] += 1
        return False
    nearest = node.table.closest(node.id, 2 * node.config.k, ordered=False)
    if all(c.node_id != peer for c in nearest):
        stats["syncs_refused_far"] += 1
        return False
    return True


def _ae_job(node: NodeCore, peer: int, job, now: float) -> bool:
    """Queue an anti-entropy job for ``peer``: at most AE_JOBS_PER_ROUND of
    them per peer per anti-entropy interval (each may scan the store)."""
    jobs = node.ae_jobs
    interval = node.config.anti_entropy_interval
    recent = [t for t in jobs.pop(peer, ()) if now - t < interval]
    if len(recent) >= AE_JOBS_PER_ROUND:
        node.stats["ae_jobs_refused"] += 1
        jobs[peer] = recent
        return False
    if len(jobs) >= AE_PEERS_TRACKED:
        del jobs[next(iter(jobs))]  # the peer least recently served
    if not node.background.add(job, now):
        jobs[peer] = recent
        return False
    jobs[peer] = [*recent, now]
    return True


def written_by(node: NodeCore, peer: int, now: float) -> None:
    """A write from ``peer`` changes what we share with it: a digest we keep
    for it is dropped (its next digest finds us busy computing a new one)."""
    node.ae_digests.pop(peer, None)


def _compute_digest(node: NodeCore, peer: int, now: float) -> None:
    """Compute what ``peer`` shares with us, in the background (once at a
    time); then keep its digest, and sync with the peer ourselves: it was
    told we were busy, and this way it need not wait for its next round."""
    if peer in node.ae_computing:
        return
    shared: list[tuple[bytes, bytes, Record]] = []

    def done() -> None:
        node.ae_computing.discard(peer)
        contact = node.table.get(peer)
        if contact is not None:  # its Sync keeps the digest
            Sync(node, contact.contact, node.background.now, ignore, shared)

    job = shared_job(node, peer, now, lambda *entry: shared.append(entry), done)
    if _ae_job(node, peer, job, now):
        node.ae_computing.add(peer)


def key_list(node: NodeCore, message: KeyList, asker: Asker, now: float) -> BucketList:
    """Name the offered keys we lack or hold another version of (at once: a
    store read and a fingerprint, a pack and a SHA-1 of at most 1 KB, per
    offered key, at most AE_KEYS_PER_DATAGRAM); push ours of the ones the
    sender lacks or holds another version of (in the background; to a
    neighbour only, as for a digest). Where versions differ both travel and
    each side merges (kadnode.core.kinds): the newer wins on both."""
    if not _neighbour(node, message.sender_id, asker):
        return BucketList([])
    store = node.store
    want = []
    for i, (key, fingerprint) in enumerate(message.entries):
        record = store.get(key)
        if record is None or antientropy.fingerprint(key, record.value) != fingerprint:
            want.append(i)
    theirs = dict(message.entries)
    buckets = set(message.buckets)
    addr = asker.addr
    sender = contact_of(message.sender_id, addr[0], addr[1], asker.native)

    def push(key: bytes, fingerprint: bytes, record) -> None:
        if theirs.get(key) != fingerprint:
            node.stats["ae_bytes"] += send_record(node, sender, record, node.background.now)
            node.stats["ae_pushed"] += 1

    def named(key: bytes) -> bool:
        return antientropy.bucket_of(key) in buckets

    job = shared_job(node, message.sender_id, now, push, ignore, named)
    _ae_job(node, message.sender_id, job, now)
    return BucketList(want)
