"""What a node does by itself, on its timer or on meeting a newcomer. Pure.

- Records due (paper 2.5): a publisher republishes its values daily with a
  fresh lifetime and re-signs its peer record before it expires; a replica
  re-sends what it holds hourly with the *remaining* lifetime, and drops
  what has expired.
- Bucket refresh (paper 2.3): a lookup of a random id in every bucket with
  no lookup for an hour.
- Chord stabilize and check_predecessor, every stabilize interval.
- Anti-entropy with one random near neighbour, every anti-entropy interval.
- Join handoff: a key moves to a newcomer that is now among its k closest.

Each step has a work budget from :mod:`kadnode.config` (``DUE_BATCH``,
``REFRESH_BUCKETS``, ``HANDOFF_SCAN``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from kadnode.config import DUE_BATCH, HANDOFF_SCAN, REFRESH_BUCKETS
from kadnode.core import reach
from kadnode.core.answers import welcome_due
from kadnode.core.ids import in_open, to_bytes
from kadnode.core.messages import Contact, Kind, RingQuery, RingReply
from kadnode.core.operations import LookupAll, bucket_targets, ignore
from kadnode.core.store import Record
from kadnode.core.sync import Sync
from kadnode.core.values import send_record

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore


def tick(node: NodeCore, now: float) -> None:
    """Everything due at ``now``, in a fixed order: background work, records,
    refresh, stabilize, token rotation, anti-entropy, what the network sees
    of us (kadnode.core.reach)."""
    if now >= node.background.at:
        node.stats["background_records"] += node.background.run(now)
    if node.welcomes:
        welcome_due(node, now)
    due = node.store.next_due()
    if due is not None and due <= now:
        for record in node.store.due(now, DUE_BATCH):
            maintain_record(node, record, now)
    if now >= node.refresh_at:
        refresh(node, now)
    if now >= node.stabilize_at:
        stabilize(node, now)
    if now >= node.tokens.rotate_at:
        node.tokens.rotate(now)
    if now >= node.sync_at:
        node.sync_at = now + node.config.anti_entropy_interval
        near = [c for c in node.table.closest(node.id, node.config.k) if c.native]
        if near and len(node.store):
            Sync(node, node.rng.choice(near), now, ignore)
    reach.tick(node, now)


def next_due(node: NodeCore) -> float:
    """The earliest time :func:`tick` has something to do."""
    timer = min(
        node.background.at, node.refresh_at, node.stabilize_at, node.sync_at, node.tokens.rotate_at
    )
    welcome = node.welcomes.next_due()
    if welcome is not None and welcome < timer:
        timer = welcome
    if (seeing := reach.due(node)) is not None and seeing < timer:
        timer = seeing
    due = node.store.next_due()
    return due if due is not None and due < timer else timer


# ---- records ------------------------------------------------------------------------


def maintain_record(node: NodeCore, record: Record, now: float) -> None:
    cfg = node.config
    if record.origin and record.resend_at <= now:
        if node.busy() or (
            record.kind == Kind.PEER and (node.identity is None or not node.addresses)
        ):
            node.store.put(record.with_schedule(resend_at=now + cfg.replicate_interval))
        elif record.kind == Kind.PEER:
            # Re-sign before expiry, with a higher sequence.
            node.register_now(now)
            node.stats["reregistered"] += 1
        else:
            # Republish (paper 2.5): a fresh lifetime from the publisher.
            node.store.put(
                record.with_schedule(
                    expires_at=now + cfg.expire_after, resend_at=now + cfg.republish_interval
                )
            )
            node.publish(record.key, record.value, cfg.expire_after, now, record.kind)
            node.stats["republished"] += 1
    elif record.expires_at <= now and not record.origin:
        node.store.delete(record.key)
        node.stats["expired"] += 1
    elif record.resend_at <= now:
        # Replicate what we hold to the k closest we know, with its
        # remaining lifetime, so replication never extends it.
        target = int.from_bytes(record.key, "big")
        for contact in node.table.closest(target, cfg.k):
            if contact.native:
                send_record(node, contact, record, now)
        node.store.put(record.with_schedule(resend_at=now + cfg.replicate_interval))
        node.stats["replicated"] += 1
    else:
        # Our own publication, published with a lifetime shorter than the
        # republish interval: replicas let it expire, we keep serving it
        # until the next republish renews it everywhere.
        node.store.put(record.with_schedule(expires_at=max(record.expires_at, record.resend_at)))


# ---- routing --------------------------------------------------------------------------


def refresh(node: NodeCore, now: float) -> None:
    """Look up a random id in every bucket idle for the refresh interval."""
    interval = node.config.refresh_interval
    stale = node.table.stale_buckets(now, interval)[:REFRESH_BUCKETS]
    node.stats["bucket_refreshes"] += len(stale)
    LookupAll(node, bucket_targets(node, stale), now, ignore)
    # Buckets nearer than the nearest occupied one keep their creation
    # time (nothing touches them), so the earliest refresh time is always
    # in the past after the first round: the next check is one interval on.
    node.refresh_at = now + interval


def stabilize(node: NodeCore, now: float) -> None:
    """Chord's stabilize and check_predecessor (paper, figure 7).

    One change to the paper: when our successor's predecessor lies between
    us and it, we adopt it and ask it at once, in the same round (bounded),
    so a node whose first guess was many nodes off is placed in one round
    rather than one step per period.
    """
    interval = node.config.stabilize_interval
    node.stabilize_at = now + interval
    _ask_successor(node, now, node.config.max_route_hops)
    pred = node.ring.predecessor
    if pred is None or pred == node.ring.successor:
        return
    # check_predecessor, unless it was heard from within the interval: a live
    # predecessor asks us (its successor) every round, so in a quiet network
    # this ping is never needed (with its reply, about a sixth of a quiet
    # node's bytes: docs/sim/before/README.md).
    entry = node.table.get(pred.node_id)
    if entry is None or entry.contact != pred or now - entry.last_seen >= interval:
        node.send_ping(pred.addr, pred, ignore, ignore, now)


def _ask_successor(node: NodeCore, now: float, budget: int) -> None:
    succ = node.ring.successor
    if succ is None:
        return

    # The last whole view our successor sent, which the query names by its
    # digest: an unchanged view comes back as a few bytes and is read as that
    # reply again.
    heard = node.ring_heard
    if heard is not None and heard[0] != succ.node_id:
        heard = None

    def learned(reply: RingReply, at: float) -> None:
        if reply.unchanged:
            if heard is None or heard[1].digest != reply.digest:
                return  # not the view we named: ask again next round
            reply = heard[1]
        elif reply.digest is not None:
            node.ring_heard = (succ.node_id, reply)
        closer = reply.predecessor
        for contact in reply.successors:
            node.offer_ring(contact)
        if closer is not None and closer.node_id != node.id:
            node.offer_ring(closer)
            if budget > 1 and in_open(closer.node_id, node.id, succ.node_id):
                _ask_successor(node, at, budget - 1)

    cfg = node.config
    node.requests.send(
        succ.addr,
        succ,
        RingQuery(node.id, None if heard is None else heard[1].digest),
        learned,
        ignore,
        now,
        cfg.request_attempts,
    )


# ---- handing values over when the neighbourhood changes ----------------------------


def welcome(node: NodeCore, newcomer: Contact, now: float) -> None:
    """Join handoff (paper 2.5; bmuller's ``welcome_if_new``).

    A key moves to a newcomer that is now among its k closest, sent only
    by the nearest of the nodes that held it, so one copy travels. It runs
    when a proven contact that sits in a bucket (not the replacement cache)
    asks us something, at most once per contact per replicate interval, and
    only if it joined our own neighbourhood (keys near it are near us only
    then). The keys are looked at in the background, and only those in the
    key ranges where we can be their nearest holder (:func:`handoff_ranges`),
    at most ``HANDOFF_SCAN``.
    """
    new_id = newcomer.node_id
    entry = node.table.get(new_id)
    if entry is None or now - entry.welcomed_at < node.config.replicate_interval:
        return
    entry.welcomed_at = now  # even with nothing to hand over: what it stores now is its own
    if not len(node.store):
        return
    radius = node.table.radius()
    if radius is not None and new_id ^ node.id > radius:
        return
    node.background.add(_handoff(node, newcomer, now), now)


def handoff_ranges(node: NodeCore) -> list[tuple[bytes, bytes]]:
    """Key ranges (low, high) where this node can be the nearest holder it
    knows of: below its nearest occupied bucket, and each bucket of at most
    one contact. In a bucket of two or more, a contact is nearer to every key
    there than we are (it shares the bucket's bit with them)."""
    owner = node.id
    nearest = node.table.nearest_occupied()
    ranges = []
    if nearest:
        low = owner >> nearest << nearest
        ranges.append((low, low + (1 << nearest)))
    for index in node.table.sparse_buckets(1):
        low = (owner ^ (1 << index)) >> index << index
        ranges.append((low, low + (1 << index)))
    return [(to_bytes(low), to_bytes(high - 1) + b"\x00") for low, high in ranges]


def _handoff(node: NodeCore, newcomer: Contact, now: float) -> Iterator[None]:
    k, store = node.config.k, node.store
    new_id = newcomer.node_id
    left = HANDOFF_SCAN
    for low, high in handoff_ranges(node):
        for key in store.keys_between(low, high, left):
            left -= 1
            record = store.get(key)
            yield
            if record is None or record.expires_at <= now:
                continue
            target = int.from_bytes(key, "big")
            holders = node.table.closest(target, k, exclude=new_id)
            mine = node.id ^ target
            if holders and holders[0].node_id ^ target < mine:
                continue  # someone nearer than us hands it over
            kth = max([mine] + [c.node_id ^ target for c in holders[: k - 1]])
            if new_id ^ target < kth or len(holders) < k - 1:
                send_record(node, newcomer, record, node.background.now)
                node.stats["keys_handed_on_join"] += 1
