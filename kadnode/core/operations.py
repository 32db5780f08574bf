"""Finding things: lookups, joining, Chord routing, each a small object. Pure.

An operation is started by a NodeCore entry point with an operation id and
ends by completing it (``node.complete``) with a result from
:mod:`kadnode.core.events`. Its methods are the callbacks of the requests it
sends, so its whole state is visible in its fields (no closures over state
dictionaries), and nothing refers back to it once its last request settles:
it is freed without the cyclic garbage collector.

The deciding is pure arithmetic over replies: :class:`~kadnode.core.lookup.Lookup`
decides whom to ask, :func:`quorum` what counts as enough; the objects here
send what those decisions ask for and collect the answers. Operations on
values (writes, quorum reads, leave, anti-entropy) are in
:mod:`kadnode.core.values`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import IntEnum
from functools import partial
from typing import TYPE_CHECKING

from kadnode.core import kinds, wire
from kadnode.core.events import BootstrapResult, LookupResult, PingResult, RouteResult
from kadnode.core.ids import ID_BITS, ID_BYTES, ID_SPACE, random_id_in_bucket
from kadnode.core.lookup import Lookup, LookupOutcome
from kadnode.core.messages import (
    Addr,
    Contact,
    FindNode,
    FindSuccessor,
    FindValue,
    Has,
    Kind,
    NodesReply,
    PingReply,
    SuccessorReply,
    ValueReply,
)

if TYPE_CHECKING:
    from kadnode.core.node import NodeCore


class Mode(IntEnum):
    """What a lookup is for."""

    NODES = 0  # find_node: the k closest
    FIRST = 1  # find_value: ends at the first plain value
    ALL = 2  # find_value: every replica's value of one kind (quorum reads)
    HAS = 3  # kn_has: every replica's summary of what it holds, of any kind (exists)


def quorum(configured: int, replica_set: int) -> int:
    """W or R for a replica set: as configured, at most a majority of it."""
    return min(configured, replica_set // 2 + 1) if replica_set else 0


def ignore(*_args: object) -> None:
    return None


# ---- lookups ----------------------------------------------------------------------


def run_lookup(
    node: NodeCore,
    target: int,
    mode: Mode,
    now: float,
    done: Callable[[LookupOutcome, float], None],
    kind: Kind = Kind.PLAIN,
    enough: int | None = None,
    on_reply: Callable[[Lookup, float], None] | None = None,
    wide: bool = False,
    until_found: bool = False,
) -> None:
    """A lookup: NODES (find_node), FIRST (find_value, ends at the first
    plain value) or ALL (find_value, collects every replica's value of
    ``kind`` while finding the k closest: quorum reads). It ends when the
    ``enough`` nearest (default k) have answered (kadnode.core.lookup);
    ``on_reply`` sees the lookup after each reply until then."""
    cfg = node.config
    lookup = Lookup(
        target,
        node.table.closest(target, cfg.k),
        k=cfg.k,
        alpha=cfg.alpha,
        self_id=node.id,
        want_value=mode == Mode.FIRST,
        enough=enough,
        wide=wide,
        until_found=until_found,
        per_subnet=cfg.per_subnet_bucket,
        exempt=node.exempt,
        # A client's own copy is no replica: nobody else can read it there.
        replica_self=not node.reach.client,
    )
    node.table.touch(node.table.bucket_index(target), now)
    key = target.to_bytes(ID_BYTES, "big")
    if mode == Mode.NODES:
        message: FindNode | FindValue | Has = FindNode(node.id, target)
    elif mode == Mode.HAS:
        message = Has(node.id, key)
    else:
        message = FindValue(node.id, key)
    run = LookupRun(node, lookup, message, None if mode == Mode.HAS else kind, done, on_reply)
    run.pump(now)


class LookupRun:
    """One running lookup: sends what the Lookup asks for, feeds it replies."""

    __slots__ = ("done", "finished", "kind", "lookup", "message", "node", "on_reply")

    def __init__(
        self, node: NodeCore, lookup: Lookup, message, kind: Kind | None, done, on_reply=None
    ):
        """``kind`` None (kn_has): values of every kind are collected, as (kind, summary)."""
        self.node = node
        self.lookup = lookup
        self.message = message
        self.kind = kind
        self.done = done
        self.on_reply = on_reply
        self.finished = False

    def pump(self, at: float) -> None:
        if self.finished:
            return
        lookup = self.lookup
        # Sending changes nothing the end rule reads (a candidate asked now
        # was not answered before either), unless a send is refused at once:
        # its failure pumps again, and the end is looked at once more then.
        if not lookup.finished:
            node, message = self.node, self.message
            requests = node.requests
            attempts = requests.lookup_attempts()
            has = type(message) is Has
            refused = False
            for contact in lookup.asks():
                stock_has = has and not contact.native  # bmuller has no kn_has
                refused |= not requests.send(
                    contact.addr,
                    contact,
                    FindValue(message.sender_id, message.key) if stock_has else message,
                    partial(self.replied, contact),
                    partial(self.failed, contact),
                    at,
                    attempts,
                    partial(self.stalled, contact),
                )
            if not refused or self.finished or not lookup.finished:
                return
        if not self.finished:
            self.finished = True
            self.done(lookup.outcome(), at)

    def replied(self, contact: Contact, reply: NodesReply | ValueReply, at: float) -> None:
        if reply.native and not contact.native:
            contact = wire.contact_of(contact.node_id, contact.host, contact.port, True)
        if type(reply) is NodesReply:
            self.lookup.answered_nodes(contact, reply.contacts, reply.token)
        elif self.kind is None:  # kn_has: what it holds, of any kind
            summary = reply.value if reply.native else kinds.summary(reply.kind, reply.value)
            held = (reply.kind, summary)
            self.lookup.answered_value(contact, held, reply.ttl, reply.token, reply.contacts)
        elif reply.kind == self.kind:
            self.lookup.answered_value(contact, reply.value, reply.ttl, reply.token, reply.contacts)
        else:  # a value of another kind: this node holds nothing for us
            self.lookup.answered_other_kind(contact, reply.kind, reply.token, reply.contacts)
        if self.on_reply is not None and not self.finished:
            self.on_reply(self.lookup, at)
        self.pump(at)

    def failed(self, contact: Contact, at: float) -> None:
        self.lookup.failed_request(contact.node_id)
        self.pump(at)

    def stalled(self, contact: Contact, at: float) -> None:
        self.lookup.stalled(contact.node_id)
        self.pump(at)


class LookupAll:
    """Node lookups for many targets at once; ``done`` when all have ended."""

    __slots__ = ("done", "left")

    def __init__(self, node: NodeCore, targets: list[int], now: float, done: Callable):
        self.left = len(targets)
        self.done = done
        for target in targets:
            run_lookup(node, target, Mode.NODES, now, self.ended)
        if not targets:
            done(now)

    def ended(self, _outcome: LookupOutcome, at: float) -> None:
        self.left -= 1
        if self.left == 0:
            self.done(at)


def bucket_targets(node: NodeCore, indices: Iterable[int]) -> list[int]:
    """A random id in each of these buckets (refresh targets)."""
    return [random_id_in_bucket(node.id, i, node.rng) for i in indices]


class NodeLookup:
    """Who is nearest to an id: done once the beta nearest have answered
    (go-libp2p's rule, a round trip or two sooner than all k), or the node
    with that id has; the rest of the k nearest are as those named them
    (``unheard``). ``all_k``: done once all k have, as a put's lookup
    (where a value would be stored)."""

    __slots__ = ("node", "op", "target")

    def __init__(self, node: NodeCore, op: int, target: int, now: float, all_k: bool = False):
        self.node, self.op, self.target = node, op, target
        enough = None if all_k else node.config.beta
        run_lookup(node, target, Mode.NODES, now, self.done, enough=enough, until_found=not all_k)

    def done(self, outcome: LookupOutcome, at: float) -> None:
        target, unheard = self.target, outcome.unheard
        peer = next(
            (c for c in outcome.closest if c.node_id == target and target not in unheard), None
        )
        result = LookupResult(
            target,
            outcome.closest,
            peer,
            outcome.queried,
            outcome.answered,
            outcome.failed,
            outcome.hops,
            unheard,
        )
        self.node.complete(self.op, result)


# ---- ping and join ----------------------------------------------------------------


class Ping:
    __slots__ = ("addr", "node", "op", "sent")

    def __init__(self, node: NodeCore, op: int, addr: Addr, now: float):
        self.node, self.op, self.addr, self.sent = node, op, addr, now
        node.send_ping(addr, None, self.replied, self.failed, now)

    def replied(self, reply: PingReply, at: float) -> None:
        self.node.saw_pinged(reply, self.addr, at)
        self.node.complete(self.op, PingResult(self.addr, reply.node_id, at - self.sent))

    def failed(self, at: float) -> None:
        self.node.complete(self.op, PingResult(self.addr, None, None))


class Bootstrap:
    """Join (paper 2.3): ping the seeds, look up our own id, refresh every
    bucket farther away than our closest neighbour, then take our place on
    the ring. The join starts with the first seed that answers: dead saved
    contacts cost their timeouts only in parallel, not before joining."""

    __slots__ = ("answered", "joined", "joining", "left", "node", "op", "seeds")

    def __init__(self, node: NodeCore, op: int, addrs: Iterable[Addr], now: float):
        self.node, self.op = node, op
        self.seeds = list(dict.fromkeys(addrs))
        self.left = len(self.seeds)
        self.answered = 0
        self.joining = self.joined = False
        for addr in self.seeds:
            node.send_ping(addr, None, partial(self.seed_answered, addr), self.seed_failed, now)
        if not self.seeds:
            self.finish(now)

    def seed_answered(self, addr: Addr, reply: PingReply, at: float) -> None:
        self.node.saw_pinged(reply, addr, at)
        self.settled(True, at)

    def seed_failed(self, at: float) -> None:
        self.settled(False, at)

    def settled(self, answered: bool, at: float) -> None:
        self.left -= 1
        self.answered += answered
        if answered and not self.joining:
            self.joining = True
            run_lookup(self.node, self.node.id, Mode.NODES, at, self.found_self)
        self.finish(at)

    def found_self(self, _outcome: LookupOutcome, at: float) -> None:
        table = self.node.table
        nearest = table.closest(self.node.id, 1)
        first = table.bucket_index(nearest[0].node_id) + 1 if nearest else ID_BITS
        LookupAll(self.node, bucket_targets(self.node, range(first, ID_BITS)), at, self.refreshed)

    def refreshed(self, at: float) -> None:
        Route(self.node, (self.node.id + 1) % ID_SPACE, at, self.placed)

    def placed(self, route: RouteResult, at: float) -> None:
        # Chord join: our successor is whoever owns id + 1 in others' view;
        # stabilizing with it right away makes it take us as predecessor.
        if route.successor is not None:
            self.node.offer_ring(route.successor)
        self.node.stabilize(at)
        self.joined = True
        self.finish(at)

    def finish(self, at: float) -> None:
        if self.left == 0 and (self.joined or not self.joining):
            result = BootstrapResult(len(self.seeds), self.answered, len(self.node.table))
            self.node.complete(self.op, result)


# ---- the ring -----------------------------------------------------------------------


class Route:
    """Chord routing to the successor of ``key``, one kn_find_successor per hop."""

    __slots__ = ("asked", "done", "key", "node")

    def __init__(self, node: NodeCore, key: int, now: float, done: Callable):
        self.node, self.key, self.done = node, key, done
        self.asked: set[int] = set()
        self.step(*node.route_step(key), 0, now)

    def step(self, finished: bool, hop: Contact | None, hops: int, at: float) -> None:
        node, key = self.node, self.key
        if finished:
            self.done(RouteResult(key, hop, True, hops), at)
        elif hop.node_id in self.asked or hops >= node.config.max_route_hops:
            node.stats["routes_abandoned"] += 1
            self.done(RouteResult(key, None, False, hops), at)
        else:
            self.asked.add(hop.node_id)
            node.requests.send(
                hop.addr,
                hop,
                FindSuccessor(node.id, key),
                partial(self.answered, hop, hops + 1),
                partial(self.failed, hops + 1),
                at,
                node.config.request_attempts,
            )

    def answered(self, asked: Contact, hops: int, reply: SuccessorReply, at: float) -> None:
        self.step(reply.done, reply.node or asked, hops, at)

    def failed(self, hops: int, at: float) -> None:
        self.done(RouteResult(self.key, None, False, hops), at)
