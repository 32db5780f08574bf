"""How a node answers each request: one handler per message class. Pure.

:func:`answer` looks the handler up in :data:`ANSWERS` by the request's
class. Native askers (kadnode message ids) get the native reply shapes and,
on the replies a writer reads before writing, a write token for their host
(BEP 5). Stock rpcudp/bmuller askers get exactly bmuller's shapes.

Work per request: find_node, find_value and find_successor are a table or
ring walk of at most k contacts; store and put are one store read and write;
kn_digest and kn_keys walk the records the asker shares with us
(:func:`kadnode.core.values.shared_with`), bounded by the store's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kadnode.core import antientropy, kinds
from kadnode.core.codec import Request
from kadnode.core.messages import (
    Ack,
    Addr,
    BucketList,
    Digest,
    FindNode,
    FindSuccessor,
    FindValue,
    Goodbye,
    KeyList,
    Kind,
    NodesReply,
    Ping,
    PingReply,
    Put,
    PutReply,
    ReplyMessage,
    RingQuery,
    RingReply,
    Store,
    SuccessorReply,
    ValueReply,
)
from kadnode.core.store import Record
from kadnode.core.values import send_record, shared_with
from kadnode.core.wire import contact_of
from kadnode.errors import DecodeError

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore

# Replies that carry a write token: the ones a writer reads before writing.
TOKEN_REPLIES = (FindNode, FindValue, Ping)


def answer(node: NodeCore, request: Request, addr: Addr, now: float) -> ReplyMessage:
    message = request.message
    native = request.native
    kind = type(message)
    token = node.tokens.token_for(addr[0]) if native and kind in TOKEN_REPLIES else None
    return ANSWERS[kind](node, message, addr, native, token, now)


def find_node(node: NodeCore, message: FindNode, addr, native, token, now) -> NodesReply:
    contacts = node.table.closest(message.target, node.config.k, exclude=message.sender_id)
    return NodesReply(contacts, native, token)


def find_value(node: NodeCore, message: FindValue, addr, native, token, now) -> ReplyMessage:
    record = node.store.get(message.key)
    if record is not None and record.expires_at > now and (native or record.kind == Kind.PLAIN):
        return ValueReply(record.value, native, record.expires_at - now, token, record.kind)
    target = int.from_bytes(message.key, "big")
    contacts = node.table.closest(target, node.config.k, exclude=message.sender_id)
    return NodesReply(contacts, native, token)


def ping(node: NodeCore, message: Ping, addr, native, token, now) -> PingReply:
    return PingReply(node.id, token)


def store(node: NodeCore, message: Store, addr: Addr, native, token, now: float) -> Ack:
    """A plain value: bmuller's STORE, or the native one with a token."""
    cfg, stats = node.config, node.stats
    if message.token is not None and not node.tokens.valid(addr[0], message.token):
        # A native STORE must come from the address the token was given
        # to: spoofed-source STOREs fail here (BEP 5).
        stats["stores_refused_token"] += 1
        return Ack(False)
    held = node.store.get(message.key)
    if held is not None and held.kind != Kind.PLAIN:
        # Anyone can send a plain STORE; it never replaces a signed peer
        # record or a shared value.
        stats["stores_refused_kind"] += 1
        return Ack(False)
    if held is None and len(node.store) >= cfg.max_stored_values:
        stats["stores_refused"] += 1
        return Ack(False)
    ttl = cfg.expire_after if message.ttl is None else min(message.ttl, cfg.expire_after)
    expires_at = now + ttl
    if held is not None:
        expires_at = max(expires_at, held.expires_at)
        if held.origin:
            node.store.put(Record(message.key, message.value, expires_at, True, held.resend_at))
            stats["stores_in"] += 1
            return Ack(True)
    # Paper 2.5: a node that just received a STORE skips its own
    # replication of that key for the next interval.
    node.store.put(
        Record(message.key, message.value, expires_at, False, now + cfg.replicate_interval)
    )
    stats["stores_in"] += 1
    return Ack(True)


def put(node: NodeCore, message: Put, addr: Addr, native, token, now: float) -> PutReply:
    """A native write of a signed peer record or a shared value."""
    reason = _take_put(node, message, addr, now)
    if reason is not None:
        node.stats["puts_refused"] += 1
        return PutReply(reason)
    node.stats["puts_in"] += 1
    return PutReply(None)


def _take_put(node: NodeCore, message: Put, addr: Addr, now: float) -> str | None:
    """Store the put: None when taken, else why not (one line)."""
    cfg = node.config
    if not node.tokens.valid(addr[0], message.token):
        return "bad or expired write token"
    held = node.store.get(message.key)
    if held is not None and held.kind not in (Kind.PLAIN, message.kind):
        return f"key holds a {Kind(held.kind).label}"
    if held is None and len(node.store) >= cfg.max_stored_values:
        return "store full"
    same = held is not None and held.kind == message.kind
    current = held.value if same else None
    try:
        merged = kinds.merge(message.kind, current, message.payload, message.key, now)
    except (kinds.Refused, DecodeError) as exc:
        return str(exc)[:200]
    lifetime = now + min(message.ttl, cfg.expire_after)
    if same:
        lifetime = max(lifetime, held.expires_at)
    expires_at = kinds.expires(message.kind, merged, lifetime)
    origin = same and held.origin
    resend_at = held.resend_at if origin else now + cfg.replicate_interval
    node.store.put(Record(message.key, merged, expires_at, origin, resend_at, message.kind))
    return None


def goodbye(node: NodeCore, message: Goodbye, addr: Addr, native, token, now) -> Ack:
    """The sender leaves: out of the table and the ring at once, if it is the
    contact we know at that address and it echoes a token we gave there."""
    known = node.table.get(message.sender_id)
    if known is None or known.contact.addr != addr or not node.tokens.valid(addr[0], message.token):
        node.stats["goodbyes_refused"] += 1
        return Ack(False)
    node.forget(message.sender_id)
    node.stats["goodbyes"] += 1
    return Ack(True)


def ring(node: NodeCore, message: RingQuery, addr, native, token, now) -> RingReply:
    return RingReply(node.ring.predecessor, node.ring.successors)


def find_successor(node: NodeCore, message: FindSuccessor, addr, native, token, now):
    return SuccessorReply(*node.route_step(message.key))


def digest(node: NodeCore, message: Digest, addr, native, token, now: float) -> BucketList:
    mine = antientropy.digest((k, fp) for k, fp, _ in shared_with(node, message.sender_id, now))
    return BucketList(antientropy.differing(mine, message.hashes))


def key_list(node: NodeCore, message: KeyList, addr: Addr, native, token, now) -> BucketList:
    """Name the offered keys we lack; push the ones the sender lacks."""
    theirs = {key for key, _ in message.entries}
    want = [i for i, (key, _) in enumerate(message.entries) if node.store.get(key) is None]
    buckets = set(message.buckets)
    sender = contact_of(message.sender_id, addr[0], addr[1], native)
    for key, _, record in shared_with(node, message.sender_id, now):
        if antientropy.bucket_of(key) in buckets and key not in theirs:
            node.stats["ae_bytes"] += send_record(node, sender, record, now)
            node.stats["ae_pushed"] += 1
    return BucketList(want)


ANSWERS: dict[type, Callable[..., ReplyMessage]] = {
    FindNode: find_node,
    FindValue: find_value,
    Ping: ping,
    Store: store,
    RingQuery: ring,
    Digest: digest,
    KeyList: key_list,
    Put: put,
    FindSuccessor: find_successor,
    Goodbye: goodbye,
}
