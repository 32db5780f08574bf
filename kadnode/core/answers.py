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

Work per request: find_node, find_value, kn_has and find_successor are a table or
ring walk of at most k contacts; store and put are one store read and write
(and, when the store is full, at most 16 evictions); kn_digest compares 64
hashes kept from a background computation; kn_keys fingerprints at most 200
held values (a pack and a SHA-1 each; both answered in kadnode.core.sync).
What grows with the store (the digest of what a peer shares, the values to
push, a join handoff) runs in the background
(kadnode.core.background): anti-entropy only for a neighbour, at most
AE_JOBS_PER_ROUND store scans per neighbour per anti-entropy interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from kadnode.config import (
    DIAL_BACK_WAITING,
    MAX_DIAL_BACKS,
    TOKEN_BYTES,
    WELCOME_DELAY,
)
from kadnode.core import codec, kinds, quotas, reach, wire
from kadnode.core.addresses import subnet_of
from kadnode.core.codec import Request
from kadnode.core.messages import (
    Ack,
    Addr,
    Contact,
    Dial,
    Dialed,
    Digest,
    FindNode,
    FindSuccessor,
    FindValue,
    Goodbye,
    Has,
    KeyList,
    Kind,
    NodesReply,
    Ping,
    PingReply,
    Put,
    PutReply,
    Reach,
    ReplyMessage,
    RingQuery,
    RingReply,
    Store,
    SuccessorReply,
    ValueReply,
)
from kadnode.core.operations import ignore
from kadnode.core.proof import wire_bytes
from kadnode.core.store import Record
from kadnode.core.sync import digest, key_list, written_by
from kadnode.core.wire import contact_of
from kadnode.errors import DecodeError

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore

# Replies that carry a write token: the ones a writer reads before writing.
TOKEN_REPLIES = (FindNode, FindValue, Has, Ping, RingQuery)
# Requests that never put their sender in the table nor get it pinged back:
# a goodbye, and a dial-back (its sender is a stranger by design).
NOT_ADMITTING = (Goodbye, Dialed)


@dataclass(frozen=True, slots=True)
class Asker:
    """Who sent a request, as far as answering it goes."""

    addr: Addr
    native: bool  # a kadnode requester: native reply shapes
    proven: bool  # its host receives at its address (kadnode.core.proof)
    token: bytes | None  # the write token the reply carries for its host
    # This very request echoes a token we gave its host: it was not forged.
    # (A proven host's address can still be forged; what changes a node's
    # state or sends much, writes and anti-entropy, needs this.)
    vouched: bool = False


def respond(node: NodeCore, request: Request, addr: Addr, size: int, now: float) -> None:
    """Answer one request of ``size`` bytes from ``addr`` (see the module docstring)."""
    message = request.message
    native = request.native
    host = addr[0]
    proof = node.proof
    echoed = getattr(message, "proof", None) or getattr(message, "token", None)
    vouched = echoed is not None and len(echoed) == TOKEN_BYTES and node.tokens.valid(host, echoed)
    proven = vouched or proof.proven(host, now)
    if vouched:
        proof.prove(host, now)
    elif not proven:
        proof.received(host, size)
    kind = type(message)
    sender_id = message.sender_id
    if node.reach.active and not node.reach.contacted(host, now):
        node.stats["unsolicited_in"] += 1  # a stranger reached us: kadnode doctor
    # A contact enters the table, or is refreshed there, on a request that
    # echoes our token or comes from the very id and address we know; any
    # other sender (a forged one, too) is pinged back at the address it gave.
    vouched_for = vouched or node.table.holds(sender_id, addr)
    if request.client:
        # A client (kadnode.core.reach) enters no table, and leaves ours if
        # it was there and proves it is the one asking (a forged source must
        # not unlist a node): it may not be reachable by anyone we tell of it.
        if vouched and node.table.holds(sender_id, addr):
            node.forget(sender_id)
        vouched_for = True  # nothing to prove for a table: no ping back
    elif vouched_for and kind not in NOT_ADMITTING:
        # Before the request itself: a newcomer's welcome must not echo back
        # the value it is storing with us right now.
        node.welcomes.pop(addr)
        node.saw(contact_of(sender_id, host, addr[1], native), now, asked=True)
    token = node.tokens.token_for(host) if native and kind in TOKEN_REPLIES else None
    reply = ANSWERS[kind](node, message, Asker(addr, native, proven, token, vouched), now)
    if reply is None:
        return  # a dial-back: answering it would open our NAT to its sender
    data = codec.encode(request.msg_id, reply)
    if len(data) > node.config.max_datagram:
        node.stats["replies_too_large"] += 1
        return
    # Pinged back: an unproven host (to prove it), or a newcomer the table
    # would take (to prove its very address); never one it refuses. A kadnode
    # newcomer on a proven host is pinged back later, and not at all if its
    # next request echoes the token our reply gives it (a put's STORE does)
    # or its bucket has no place for it (routing.RoutingTable.wants).
    # Not interned (wire.contact_of): a flood of made-up ids must not fill the
    # shared contact cache.
    sender = None if vouched_for else Contact(sender_id, host, addr[1], native)
    dial = (
        sender is not None
        and kind not in NOT_ADMITTING
        and (not proven or node.table.admits(sender))
    )
    if dial and proven and native:
        dial = False
        if addr not in node.welcomes and node.table.wants(sender_id, now):
            node.welcomes.add(addr, now + WELCOME_DELAY, sender)  # if there is room
    # An unproven host's reply leaves room in its credit for a first ping back.
    first = dial and host not in node.dialing and len(node.dialing) < MAX_DIAL_BACKS
    keep = wire_bytes(node.ping_size, host) if first and not proven else 0.0
    if not proven and not proof.spend(host, len(data), keep):
        data = _fit(node, request, reply, host, keep)
    if data is not None:
        node.send_reply(data, addr)
        if node.reach.active:  # a reply keeps the asker's way through our NAT open too
            node.reach.sent_to(host, now)
    if dial and sender is not None:
        _dial_back(node, sender, now)


def _fit(
    node: NodeCore, request: Request, reply: ReplyMessage, host: str, keep: float
) -> bytes | None:
    """The reply cut to what an unproven host has earned: a value becomes the
    closest contacts instead, contact lists get shorter; else nothing. The
    longest list that fits is found by halving: at most log2(k) + 1 encodes."""
    message = request.message
    if type(reply) in (ValueReply, NodesReply):  # the nearest first, so a cut keeps them
        target = message.target if type(message) is FindNode else int.from_bytes(message.key, "big")
        contacts = node.table.closest(target, node.config.k, exclude=message.sender_id)
        reply = NodesReply(contacts, reply.native, reply.token)
    if type(reply) is NodesReply:
        items = reply.contacts

        def cut(n: int) -> ReplyMessage:
            return NodesReply(items[:n], reply.native, reply.token)
    elif type(reply) is RingReply:
        items = reply.successors

        def cut(n: int) -> ReplyMessage:  # no digest: a cut list is not the view
            return RingReply(reply.predecessor, items[:n], None, False, reply.token)
    else:
        items = []
    room = node.proof.credit(host) - keep
    best: bytes | None = None
    low, high = 0, len(items) - 1  # a reply cut to n items, n in [low, high]
    while items and low <= high:
        n = (low + high) // 2
        data = codec.encode(request.msg_id, cut(n))
        if wire_bytes(len(data), host) <= room:
            best, low = data, n + 1
        else:
            high = n - 1
    if best is not None and node.proof.spend(host, len(best), keep):
        node.stats["replies_cut"] += 1
        return best
    node.stats["replies_withheld"] += 1
    return None


def welcome_due(node: NodeCore, now: float) -> None:
    """Ping back the newcomers on proven hosts whose delay has passed (oldest
    first: the delay is one constant, so the dict is in due order)."""
    welcomes = node.welcomes
    while (first := welcomes.first()) is not None:
        addr, due, sender = first
        if due > now:
            return
        welcomes.pop(addr)
        table = node.table
        if (
            table.holds(sender.node_id, addr)
            or not table.wants(sender.node_id, now)
            or not table.admits(sender)
        ):
            continue
        # Not _dial_back's one ping per host: the host is proven, and each
        # welcome is one ping, smaller than the request that queued it.
        welcomed = partial(_welcomed, node, sender)
        node.requests.send(addr, sender, Ping(node.id), welcomed, ignore, now, 1)
        node.stats["dial_backs"] += 1


def _welcomed(node: NodeCore, sender: Contact, reply: PingReply, at: float) -> None:
    if reply.node_id == sender.node_id and not reply.client:  # else another node answers there
        node.saw(sender, at, asked=True)


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
    proven = node.proof.proven(host, now)
    if not proven and node.proof.credit(host) < wire_bytes(node.ping_size, host):
        return
    dialing[host] = [sender]

    def answered(reply: PingReply, at: float) -> None:
        # Their requests are taken up now that the host is proven: each may
        # enter the table and be owed the join handoff (the one pinged only
        # if it is the node that answered there).
        for contact in dialing.pop(host, ()):
            if reply.client:
                break  # it says it is a client: proven, but in no table
            if contact is not sender or reply.node_id == sender.node_id:
                node.saw(contact, at, asked=True)

    def unanswered(_at: float) -> None:
        dialing.pop(host, None)

    sent = node.requests.send(sender.addr, sender, Ping(node.id), answered, unanswered, now, 1)
    if not proven:
        node.proof.spend(host, sent)
    node.stats["dial_backs"] += 1


def find_node(node: NodeCore, message: FindNode, asker: Asker, now: float) -> NodesReply:
    k, sender = node.config.k, message.sender_id
    contacts = node.table.closest(message.target, k, exclude=sender, ordered=False)
    return NodesReply(contacts, asker.native, asker.token)


def find_value(node: NodeCore, message: FindValue, asker: Asker, now: float) -> ReplyMessage:
    return _held(node, message, asker, now, lambda kind, value: value)


def has(node: NodeCore, message: Has, asker: Asker, now: float) -> ReplyMessage:
    """find_value's answer with a held value cut to what an exists question
    needs (kinds.summary)."""
    return _held(node, message, asker, now, kinds.summary)


def _held(
    node: NodeCore,
    message: FindValue | Has,
    asker: Asker,
    now: float,
    shown: Callable[[Kind, object], object],
) -> ReplyMessage:
    """The value held under the key, as ``shown``, else the k closest. A
    value of another kind than plain goes to native askers only, with the k
    closest beside it: a quorum read asks every replica, and learns the rest
    from us."""
    record = node.store.get(message.key)
    native, token = asker.native, asker.token
    target = int.from_bytes(message.key, "big")
    k, sender = node.config.k, message.sender_id
    if record is not None and record.expires_at > now and (native or record.kind == Kind.PLAIN):
        ttl, kind = record.expires_at - now, record.kind
        near = tuple(node.table.closest(target, k, exclude=sender)) if kind != Kind.PLAIN else ()
        return ValueReply(shown(kind, record.value), native, ttl, token, kind, near)
    contacts = node.table.closest(target, k, exclude=sender, ordered=False)
    return NodesReply(contacts, native, token)


def ping(node: NodeCore, message: Ping, asker: Asker, now: float) -> PingReply:
    """Our id and, to a native asker, its write token, the address we see it
    at, our clock and whether we are a client (kadnode.core.reach)."""
    if not asker.native:
        return PingReply(node.id, None)
    return PingReply(node.id, asker.token, asker.addr, max(0, int(now)), node.reach.client)


def store(node: NodeCore, message: Store, asker: Asker, now: float) -> Ack:
    """A plain value: bmuller's STORE, or the native one with a token. A
    native STORE must echo a token given to its source address (BEP 5); a
    three-argument STORE, which cannot, is taken only from a stock bmuller
    node in our table at that very address (it answered our ping there).
    Within the size a local put may have, and never over a value of another
    kind or one this node published."""
    cfg, stats = node.config, node.stats
    if message.token is not None:
        if not asker.vouched:
            stats["stores_refused_token"] += 1
            return Ack(False)
    elif not _stock_node_at(node, message.sender_id, asker.addr):
        # A spoofed source fails here: kadnode nodes always send tokens, and
        # an address nobody answered us from proves nothing.
        stats["stores_refused_unproven"] += 1
        return Ack(False)
    size = len(wire.pack(message.value))
    if size > cfg.max_value_bytes:
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
        size=size,
    )
    if quotas.make_room(node, record.source, host, message.key, record.size, held) is not None:
        return Ack(False)
    node.store.put(record)
    stats["stores_in"] += 1
    written_by(node, message.sender_id, now)
    return Ack(True)


def _stock_node_at(node: NodeCore, node_id: int, addr: Addr) -> bool:
    entry = node.table.get(node_id)
    return entry is not None and not entry.contact.native and entry.contact.addr == addr


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
        if message.kind not in (Kind.PEER, Kind.SIGNED):
            return f"key holds a {Kind(held.kind).label}"
        # A signed peer record or value beats an unsigned shared value under
        # its key: nobody can squat an id or a target before its owner writes.
        held = None
    same = held is not None and held.kind == message.kind
    current = held.value if same else None
    try:
        merged = kinds.merge(message.kind, current, message.payload, message.key, now)
    except (kinds.Refused, DecodeError) as exc:
        return str(exc)[:200]
    lifetime = now + min(message.ttl, cfg.expire_after)
    if same:
        # Renewed even when what is held supersedes the write: a tombstone
        # lives as long as anyone republishes a version it deleted.
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
    written_by(node, message.sender_id, now)
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
    """Our predecessor and successors, or "unchanged" when the asker already
    holds them (its ``seen`` is their digest)."""
    view = node.ring
    digest = view.digest()
    if message.seen == digest:
        return RingReply(None, [], digest, True, asker.token)
    return RingReply(view.predecessor, view.successors, digest, False, asker.token)


def find_successor(node: NodeCore, message: FindSuccessor, asker: Asker, now: float):
    return SuccessorReply(*node.route_step(message.key))


ANSWERS: dict[type, Callable[..., ReplyMessage | None]] = {
    FindNode: find_node,
    FindValue: find_value,
    Has: has,
    Ping: ping,
    Store: store,
    RingQuery: ring,
    Digest: digest,
    KeyList: key_list,
    Put: put,
    FindSuccessor: find_successor,
    Goodbye: goodbye,
    Reach: reach.answer_reach,
    Dial: reach.answer_dial,
    Dialed: reach.answer_dialed,
}
