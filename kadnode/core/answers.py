"""How a node answers each request: one handler per message class. Pure.

:func:`respond` looks the handler up in :data:`ANSWERS` by the request's
class. Native askers (kadnode message ids) get the native reply shapes and,
on the replies a writer reads before writing, a write token for their host
(BEP 5). Stock rpcudp/bmuller askers get exactly bmuller's shapes.

Before answering, :func:`respond` settles whether the asker's host has
proven it receives at its address (:mod:`kadnode.core.proof`). A proven
asker enters the routing table (and may get the join handoff); an unproven
one is pinged back once, to prove it, and everything sent to it stays
within three times what it sent: a reply that would not fit is cut to fit
(fewer contacts), or withheld. Writes and anti-entropy need a proven asker.

Work per request: find_node, find_value and find_successor are a table or
ring walk of at most k contacts; store and put are one store read and write;
kn_digest and kn_keys walk the records the asker shares with us
(:func:`kadnode.core.values.shared_with`), bounded by the store's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kadnode.config import DIAL_BACK_WAITING, MAX_DIAL_BACKS, TOKEN_BYTES
from kadnode.core import antientropy, codec, kinds, quotas, wire
from kadnode.core.addresses import subnet_of
from kadnode.core.codec import Request
from kadnode.core.messages import (
    Ack,
    Addr,
    BucketList,
    Contact,
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
from kadnode.core.proof import wire_bytes
from kadnode.core.store import Record
from kadnode.core.values import send_record, shared_with
from kadnode.core.wire import contact_of
from kadnode.errors import DecodeError

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore

# Replies that carry a write token: the ones a writer reads before writing.
TOKEN_REPLIES = (FindNode, FindValue, Ping)


@dataclass(frozen=True, slots=True)
class Asker:
    """Who sent a request, as far as answering it goes."""

    addr: Addr
    native: bool  # a kadnode requester: native reply shapes
    proven: bool  # its host receives at its address (kadnode.core.proof)
    token: bytes | None  # the write token the reply carries for its host


def respond(node: NodeCore, request: Request, addr: Addr, size: int, now: float) -> None:
    """Answer one request of ``size`` bytes from ``addr`` (see the module docstring)."""
    message = request.message
    host = addr[0]
    proof = node.proof
    proven = proof.proven(host, now)
    if not proven:
        echoed = getattr(message, "proof", None) or getattr(message, "token", None)
        if echoed is not None and len(echoed) == TOKEN_BYTES and node.tokens.valid(host, echoed):
            proof.prove(host, now)
            proven = True
        else:
            proof.received(host, size)
    kind = type(message)
    # Not interned (wire.contact_of) until the table admits it: a flood of
    # made-up ids must not fill the shared contact cache.
    sender = Contact(message.sender_id, host, addr[1], request.native)
    if proven and kind is not Goodbye:
        # Before the request itself: a newcomer's welcome must not echo back
        # the value it is storing with us right now.
        node.saw(sender, now, asked=True)
    native = request.native
    token = node.tokens.token_for(host) if native and kind in TOKEN_REPLIES else None
    reply = ANSWERS[kind](node, message, Asker(addr, native, proven, token), now)
    data = codec.encode(request.msg_id, reply)
    if len(data) > node.config.max_datagram:
        node.stats["replies_too_large"] += 1
        return
    dial = not proven and kind is not Goodbye
    # An unproven host's reply leaves room in its credit for a first ping back.
    first = dial and host not in node.dialing and len(node.dialing) < MAX_DIAL_BACKS
    keep = wire_bytes(node.ping_size, host) if first else 0.0
    if not proven and not proof.spend(host, len(data), keep):
        data = _fit(node, request, reply, host, keep)
    if data is not None:
        node.send_reply(data, addr)
    if dial:
        _dial_back(node, sender, now)


def _fit(
    node: NodeCore, request: Request, reply: ReplyMessage, host: str, keep: float
) -> bytes | None:
    """The reply cut to what an unproven host has earned: a value becomes the
    closest contacts instead, contact lists get shorter; else nothing."""
    message = request.message
    if type(reply) is ValueReply:
        target = int.from_bytes(message.key, "big")
        contacts = node.table.closest(target, node.config.k, exclude=message.sender_id)
        reply = NodesReply(contacts, reply.native, reply.token)
    if type(reply) is NodesReply:
        shorter = [
            NodesReply(reply.contacts[:n], reply.native, reply.token)
            for n in range(len(reply.contacts) - 1, -1, -1)
        ]
    elif type(reply) is RingReply:
        shorter = [
            RingReply(reply.predecessor, reply.successors[:n])
            for n in range(len(reply.successors) - 1, -1, -1)
        ]
    else:
        shorter = []
    for cut in shorter:
        data = codec.encode(request.msg_id, cut)
        if node.proof.spend(host, len(data), keep):
            node.stats["replies_cut"] += 1
            return data
    node.stats["replies_withheld"] += 1
    return None


def _dial_back(node: NodeCore, sender: Contact, now: float) -> None:
    """Ping an unproven sender once (no larger than its request), so that its
    reply proves it; from its credit, one outstanding per host. Other senders
    from that host wait beside it (a few: NAT) and are taken up with it."""
    host = sender.host
    dialing = node.dialing
    waiting = dialing.get(host)
    if waiting is not None:
        if len(waiting) < DIAL_BACK_WAITING and sender not in waiting:
            waiting.append(sender)
        return
    if len(dialing) >= MAX_DIAL_BACKS:
        return
    if node.proof.credit(host) < wire_bytes(node.ping_size, host):
        return
    dialing[host] = [sender]

    def answered(_reply: object, at: float) -> None:
        # Their requests are taken up now that the host is proven: each may
        # enter the table and be owed the join handoff.
        for contact in dialing.pop(host, ()):
            node.saw(contact, at, asked=True)

    def unanswered(_at: float) -> None:
        dialing.pop(host, None)

    sent = node.requests.send(sender.addr, sender, Ping(node.id), answered, unanswered, now, 1)
    node.proof.spend(host, sent)
    node.stats["dial_backs"] += 1


def find_node(node: NodeCore, message: FindNode, asker: Asker, now: float) -> NodesReply:
    contacts = node.table.closest(message.target, node.config.k, exclude=message.sender_id)
    return NodesReply(contacts, asker.native, asker.token)


def find_value(node: NodeCore, message: FindValue, asker: Asker, now: float) -> ReplyMessage:
    record = node.store.get(message.key)
    native, token = asker.native, asker.token
    if record is not None and record.expires_at > now and (native or record.kind == Kind.PLAIN):
        return ValueReply(record.value, native, record.expires_at - now, token, record.kind)
    target = int.from_bytes(message.key, "big")
    contacts = node.table.closest(target, node.config.k, exclude=message.sender_id)
    return NodesReply(contacts, native, token)


def ping(node: NodeCore, message: Ping, asker: Asker, now: float) -> PingReply:
    return PingReply(node.id, asker.token)


def store(node: NodeCore, message: Store, asker: Asker, now: float) -> Ack:
    """A plain value: bmuller's STORE, or the native one with a token. Taken
    only from a proven address (a bmuller node is pinged back first and
    proves itself by answering), within the size a local put may have, and
    never over a value of another kind or one this node published."""
    cfg, stats = node.config, node.stats
    if not asker.proven:
        # Native STOREs with a valid token were proven by it: a spoofed
        # source fails here, whatever the dialect (BEP 5).
        stats["stores_refused_unproven"] += 1
        return Ack(False)
    if len(wire.pack(message.value)) > cfg.max_value_bytes:
        stats["stores_refused_size"] += 1
        return Ack(False)
    held = node.store.get(message.key)
    if held is not None and held.kind != Kind.PLAIN:
        # Anyone can send a plain STORE; it never replaces a signed peer
        # record or a shared value.
        stats["stores_refused_kind"] += 1
        return Ack(False)
    if held is not None and held.origin:
        # Nor this node's own publication: it holds that value already (an
        # acknowledgement), and never takes another over it.
        same = held.value == message.value and type(held.value) is type(message.value)
        stats["stores_in" if same else "stores_refused_own"] += 1
        return Ack(same)
    ttl = cfg.expire_after if message.ttl is None else min(message.ttl, cfg.expire_after)
    expires_at = now + ttl
    if held is not None:
        expires_at = max(expires_at, held.expires_at)
    # Paper 2.5: a node that just received a STORE skips its own
    # replication of that key for the next interval.
    host = asker.addr[0]
    record = Record(
        message.key,
        message.value,
        expires_at,
        False,
        now + cfg.replicate_interval,
        source=subnet_of(host),
    )
    if quotas.make_room(node, record.source, host, message.key, record.size, held) is not None:
        return Ack(False)
    node.store.put(record)
    stats["stores_in"] += 1
    return Ack(True)


def put(node: NodeCore, message: Put, asker: Asker, now: float) -> PutReply:
    """A native write of a signed peer record or a shared value."""
    reason = _take_put(node, message, asker, now)
    if reason is not None:
        node.stats["puts_refused"] += 1
        return PutReply(reason)
    node.stats["puts_in"] += 1
    return PutReply(None)


def _take_put(node: NodeCore, message: Put, asker: Asker, now: float) -> str | None:
    """Store the put: None when taken, else why not (one line)."""
    cfg = node.config
    if not node.tokens.valid(asker.addr[0], message.token):
        return "bad or expired write token"
    held = node.store.get(message.key)
    if held is not None and held.kind not in (Kind.PLAIN, message.kind, Kind.SHARED):
        return f"key holds a {Kind(held.kind).label}"
    if held is not None and held.kind == Kind.SHARED and message.kind != Kind.SHARED:
        if message.kind != Kind.PEER:
            return f"key holds a {Kind(held.kind).label}"
        # A signed peer record beats an unsigned shared value under its
        # node's id: nobody can squat an id before its node registers.
        held = None
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
    host = asker.addr[0]
    source = "" if origin else subnet_of(host)
    record = Record(message.key, merged, expires_at, origin, resend_at, message.kind, source)
    why = quotas.make_room(
        node, source, host, message.key, record.size, node.store.get(message.key)
    )
    if why is not None:
        return why
    node.store.put(record)
    return None


def goodbye(node: NodeCore, message: Goodbye, asker: Asker, now: float) -> Ack:
    """The sender leaves: out of the table and the ring at once, if it is the
    contact we know at that address and it echoes a token we gave there."""
    known = node.table.get(message.sender_id)
    addr = asker.addr
    if known is None or known.contact.addr != addr or not node.tokens.valid(addr[0], message.token):
        node.stats["goodbyes_refused"] += 1
        return Ack(False)
    node.forget(message.sender_id)
    node.stats["goodbyes"] += 1
    return Ack(True)


def ring(node: NodeCore, message: RingQuery, asker: Asker, now: float) -> RingReply:
    return RingReply(node.ring.predecessor, node.ring.successors)


def find_successor(node: NodeCore, message: FindSuccessor, asker: Asker, now: float):
    return SuccessorReply(*node.route_step(message.key))


def digest(node: NodeCore, message: Digest, asker: Asker, now: float) -> BucketList:
    """Buckets whose keys differ from the sender's (nothing, to a stranger)."""
    if not asker.proven:
        node.stats["syncs_refused_unproven"] += 1
        return BucketList([])
    mine = antientropy.digest((k, fp) for k, fp, _ in shared_with(node, message.sender_id, now))
    return BucketList(antientropy.differing(mine, message.hashes))


def key_list(node: NodeCore, message: KeyList, asker: Asker, now: float) -> BucketList:
    """Name the offered keys we lack; push the ones the sender lacks (only to
    a proven sender)."""
    if not asker.proven:
        node.stats["syncs_refused_unproven"] += 1
        return BucketList([])
    theirs = {key for key, _ in message.entries}
    want = [i for i, (key, _) in enumerate(message.entries) if node.store.get(key) is None]
    buckets = set(message.buckets)
    addr = asker.addr
    sender = contact_of(message.sender_id, addr[0], addr[1], asker.native)
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
