"""The node core: Kademlia as a state machine. Pure, no I/O.

Shaped like aioquic's connection: the caller feeds it datagrams and time
(``receive_datagram(data, addr, now)``, ``handle_timer(now)``) and collects
what it decided (``datagrams_to_send()``, ``get_timer()``, ``next_event()``).
Operations (``ping``, ``bootstrap``, ``lookup``, ``get``, ``put``) return an
operation id at once; their result arrives later as an
:class:`OperationCompleted` event. The same code runs in the asyncio daemon,
in unit tests with exact timers, and in the simulator.

Maintenance also lives here, driven by the same timer: request timeouts and
retransmissions, bucket refresh (paper 2.3), replication of held values
hourly with their *remaining* lifetime, republication by the original
publisher daily with a fresh one (paper 2.5), and expiry.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from kadnode.config import AE_KEYS_PER_DATAGRAM, RTO_ALPHA, RTO_BETA, RTO_K, Config
from kadnode.core import antientropy, codec, kinds, records, vclock
from kadnode.core.codec import (
    NATIVE_MAGIC,
    Contact,
    DecodeError,
    Digest,
    FindNode,
    FindReply,
    FindValue,
    KeyList,
    Ping,
    PingReply,
    Put,
    Request,
    Response,
    RingQuery,
    RingReply,
    Store,
    Value,
)
from kadnode.core.identity import Identity
from kadnode.core.ids import ID_BITS, ID_BYTES, ID_SPACE, in_half_open, in_open, random_id_in_bucket
from kadnode.core.lookup import Lookup, LookupOutcome
from kadnode.core.ring import Fingers, RingView
from kadnode.core.routing import RoutingTable, rtt_update
from kadnode.core.store import PEER, PLAIN, SHARED, Record
from kadnode.errors import LocalProtocolError

Addr = tuple[str, int]

# Lookup modes (NodeCore._run_lookup).
NODES, FIRST, ALL = 0, 1, 2
# How many due records one timer tick handles before yielding (bounded work).
DUE_BATCH = 64
# BEP 5: "tokens up to ten minutes old are accepted": a secret changes every
# five minutes and the previous one stays valid. A sender uses a cached token
# for half that long, then fetches a fresh one with a ping.
TOKEN_ROTATE = 300.0
TOKEN_FRESH = 150.0
TOKEN_MEMO = 4096  # hosts whose token is memoized, per secret
# A STORE's reply on the wire: header and msgpack ``true``.
STORE_REPLY_BYTES = codec.HEADER + 1


# ---- results and events ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingResult:
    addr: Addr
    node_id: int | None  # None: no answer
    rtt: float | None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    seeds: int
    answered: int
    table_size: int


@dataclass(frozen=True, slots=True)
class LookupResult:
    target: int
    closest: list[Contact]
    peer: Contact | None  # the node with the target id, when it answered
    queried: int
    answered: int
    failed: int
    hops: int


@dataclass(frozen=True, slots=True)
class GetResult:
    key: bytes
    value: Value | None
    found: bool
    source: Contact | None  # None: this node's own store
    queried: int
    hops: int


@dataclass(frozen=True, slots=True)
class PutResult:
    key: bytes
    acks: int
    replicas: list[Contact]  # the nodes that acknowledged
    asked: int
    queried: int
    needed: int = 0  # the write quorum W for this replica set
    replica_set: int = 0  # the k closest found, answering or not
    refused: tuple[str, ...] = ()  # reasons replicas gave for refusing

    @property
    def quorum(self) -> bool:
        return self.acks >= self.needed


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A quorum read of a peer record or a shared value."""

    key: bytes
    kind: int
    payload: object | None  # the newest (kinds.newest), None: not found
    replica_set: int  # the k closest found, answering or not
    answered: int  # of those, how many answered
    holding: int  # of those, how many held some version
    agreeing: int  # of those, how many held the newest already
    repaired: int  # read repairs sent to stale or empty replicas
    rejected: int  # invalid versions seen (bad signature, expired...)
    needed: int  # the read quorum R for this replica set

    @property
    def found(self) -> bool:
        return self.payload is not None

    @property
    def quorum(self) -> bool:
        return self.answered >= self.needed


@dataclass(frozen=True, slots=True)
class RouteResult:
    """Chord routing to the successor of ``key``."""

    key: int
    successor: Contact | None  # None: this node owns the key (or routing failed)
    ok: bool
    hops: int  # requests along the route (0: answered from our own view)


@dataclass(frozen=True, slots=True)
class LeaveResult:
    """A graceful leave: every held value handed to the k closest remaining."""

    keys: int
    stores: int
    acks: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    """One anti-entropy exchange with a neighbour, seen from its initiator."""

    peer: Contact
    shared: int  # keys we hold that the peer should hold too
    buckets_differ: int
    keys_offered: int  # (key, fingerprint) pairs sent for differing buckets
    keys_sent: int  # values the peer lacked and received
    bytes: int  # every datagram of the exchange, both directions
    republish_bytes: int  # what re-sending every shared value would have cost


@dataclass(frozen=True, slots=True)
class OperationCompleted:
    op_id: int
    result: (
        PingResult
        | BootstrapResult
        | LookupResult
        | GetResult
        | PutResult
        | ReadResult
        | RouteResult
        | LeaveResult
        | SyncResult
    )


# ---- outstanding requests ----------------------------------------------------


@dataclass(slots=True)
class _Pending:
    msg_id: bytes
    addr: Addr
    contact: Contact | None  # None when we only know an address (bootstrap)
    datagram: bytes
    attempts_left: int
    sent_at: float
    deadline: float
    rto: float
    retransmitted: bool
    parse: Callable[[object], object]
    on_reply: Callable[[object, float], None]
    on_fail: Callable[[float], None]
    # Lookups: called at the first deadline instead of failing (a soft
    # timeout); the request stays open, backed off, for a late reply.
    on_stall: Callable[[float], None] | None = None


class NodeCore:
    def __init__(
        self,
        node_id: int,
        store,
        *,
        config: Config | None = None,
        rng: random.Random | None = None,
        now: float = 0.0,
        identity: Identity | None = None,
    ):
        if identity is not None and identity.node_id != node_id:
            raise LocalProtocolError("the node id must derive from the identity's key")
        self.identity = identity
        self.addresses: tuple[tuple[str, int], ...] = ()  # what register() advertises
        self._seq = 0
        self.id = node_id
        self.id_bytes = node_id.to_bytes(ID_BYTES, "big")
        self.config = config or Config()
        self.store = store
        self.rng = rng or random.Random()
        self.table = RoutingTable(
            node_id,
            self.config.k,
            self.config.replacement_cache,
            self.config.stale_limit,
            self.config.good_for,
            now,
        )
        self.stats: Counter[str] = Counter()
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[OperationCompleted] = deque()
        self._pending: dict[bytes, _Pending] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._ops: set[int] = set()
        self._next_op = 1
        self._evicting: set[int] = set()
        self._srtt: float | None = None  # over all contacts, for unknown ones
        self._rttvar = 0.0
        self._refresh_at = now + self.config.refresh_interval
        self.ring = RingView(node_id, self.config.successors)
        self._ring_version = 0
        self._fingers: tuple[tuple[int, int], Fingers] | None = None
        self._stabilize_at = now + self.config.stabilize_interval
        self._sync_at = now + self.config.anti_entropy_interval
        # BEP 5 write tokens: current and previous secret, rotated together.
        self._secrets = [self.rng.randbytes(16), self.rng.randbytes(16)]
        self._tokens: list[dict[str, bytes]] = [{}, {}]  # host -> token, per secret
        self._rotate_at = now + TOKEN_ROTATE

    # ---- the I/O interface ----------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.stats["datagrams_in"] += 1
        try:
            message = codec.decode_datagram(data, self.config.max_datagram)
        except DecodeError:
            self.stats["bad_datagrams"] += 1
            return
        if type(message) is Response:
            self._handle_response(message, addr, now)
        else:
            self._handle_request(message, addr, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        self.stats["datagrams_out"] += len(out)
        return out

    def next_event(self) -> OperationCompleted | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        timer = min(self._refresh_at, self._stabilize_at, self._sync_at, self._rotate_at)
        deadlines = self._deadlines
        while deadlines:  # drop answered requests' deadlines (lazy deletion)
            deadline, msg_id = deadlines[0]
            pending = self._pending.get(msg_id)
            if pending is not None and pending.deadline == deadline:
                break
            heapq.heappop(deadlines)
        if deadlines and deadlines[0][0] < timer:
            timer = deadlines[0][0]
        due = self.store.next_due()
        if due is not None and due < timer:
            timer = due
        return timer

    def handle_timer(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, msg_id = heapq.heappop(deadlines)
            pending = self._pending.get(msg_id)
            if pending is not None and pending.deadline == deadline:
                self._expire_request(pending, now)
        due = self.store.next_due()
        if due is not None and due <= now:
            for record in self.store.due(now, DUE_BATCH):
                self._maintain_record(record, now)
        if now >= self._refresh_at:
            self._refresh(now)
        if now >= self._stabilize_at:
            self._stabilize(now)
        if now >= self._rotate_at:
            self._rotate_at = now + TOKEN_ROTATE
            self._secrets = [self.rng.randbytes(16), self._secrets[0]]
            self._tokens = [{}, self._tokens[0]]
        if now >= self._sync_at:
            self._sync_at = now + self.config.anti_entropy_interval
            near = [c for c in self.table.closest(self.id, self.config.k) if c.native]
            if near and len(self.store):
                self._sync(self.rng.choice(near), now, _ignore)

    # ---- operations -------------------------------------------------------------

    def ping(self, addr: Addr, now: float) -> int:
        op = self._new_op()

        def replied(reply: PingReply, at: float) -> None:
            self._saw_pinged(reply, addr, at)
            self._complete(op, PingResult(addr, reply.node_id, at - sent))

        sent = now
        self._ping(
            addr, None, replied, lambda at: self._complete(op, PingResult(addr, None, None)), now
        )
        return op

    def bootstrap(self, addrs: Iterable[Addr], now: float) -> int:
        """Join (paper 2.3): ping the seeds, look up our own id, then refresh
        every bucket farther away than our closest neighbour."""
        op = self._new_op()
        seeds = list(dict.fromkeys(addrs))
        # The join starts with the first seed that answers: dead saved
        # contacts cost their timeouts only in parallel, not before joining.
        state = {"left": len(seeds), "answered": 0, "joining": False, "joined": False}

        def finish(at: float) -> None:
            if state["left"] == 0 and (state["joined"] or not state["joining"]):
                self._complete(op, BootstrapResult(len(seeds), state["answered"], len(self.table)))

        def placed(route: RouteResult, at: float) -> None:
            # Chord join: our successor is whoever owns id + 1 in others' view;
            # stabilizing with it right away makes it take us as predecessor.
            if route.successor is not None:
                self._offer_ring(route.successor)
            self._stabilize(at)
            state["joined"] = True
            finish(at)

        def refreshed(at: float) -> None:
            self._route((self.id + 1) % ID_SPACE, at, placed)

        def joined(_outcome: LookupOutcome, at: float) -> None:
            nearest = self.table.closest(self.id, 1)
            first = self.table.bucket_index(nearest[0].node_id) + 1 if nearest else ID_BITS
            self._lookup_all(self._bucket_targets(range(first, ID_BITS)), at, refreshed)

        def settled(answered: bool, at: float) -> None:
            state["left"] -= 1
            state["answered"] += answered
            if answered and not state["joining"]:
                state["joining"] = True
                self._run_lookup(self.id, NODES, at, joined)
            finish(at)

        for addr in seeds:
            self._ping(
                addr,
                None,
                lambda reply, at, addr=addr: (
                    self._saw_pinged(reply, addr, at),
                    settled(True, at),
                ),
                partial(settled, False),
                now,
            )
        if not seeds:
            finish(now)
        return op

    def lookup(self, target: int, now: float) -> int:
        op = self._new_op()

        def done(outcome: LookupOutcome, at: float) -> None:
            peer = next((c for c in outcome.closest if c.node_id == target), None)
            self._complete(
                op,
                LookupResult(
                    target,
                    outcome.closest,
                    peer,
                    outcome.queried,
                    outcome.answered,
                    outcome.failed,
                    outcome.hops,
                ),
            )

        self._run_lookup(target, NODES, now, done)
        return op

    def get(self, key: bytes, now: float) -> int:
        op = self._new_op()
        record = self.store.get(key)
        if record is not None and record.expires_at > now:
            self._complete(op, GetResult(key, record.value, True, None, 0, 0))
            return op

        def done(outcome: LookupOutcome, at: float) -> None:
            found = outcome.value is not None
            if found and outcome.nearest_without_value is not None:
                # Paper 2.3: cache at the nearest node that lacked it, with the
                # remaining lifetime so caching never extends it.
                ttl = outcome.ttl if outcome.ttl is not None else self.config.expire_after
                nearest = outcome.nearest_without_value
                token = outcome.tokens.get(nearest.node_id)
                self._send_store(nearest, key, outcome.value, ttl, at, None, token)
            result = GetResult(
                key, outcome.value, found, outcome.value_from, outcome.queried, outcome.hops
            )
            self._complete(op, result)

        self._run_lookup(int.from_bytes(key, "big"), FIRST, now, done)
        return op

    def put(self, key: bytes, value: Value, now: float, ttl: float | None = None) -> int:
        """Store on the k closest and keep the duty to republish it."""
        self._check_value(value)
        ttl = self.config.expire_after if ttl is None else min(ttl, self.config.expire_after)
        self.store.put(Record(key, value, now + ttl, True, now + self.config.republish_interval))
        return self._publish(key, value, ttl, now)

    def register(self, now: float) -> int:
        """Sign a peer record for ``self.addresses`` (a higher sequence than any
        before) and store it on the k closest to our id; re-signed every half
        lifetime while we run."""
        if self.identity is None:
            raise LocalProtocolError("this node has no identity key to sign a record with")
        if not self.addresses:
            raise LocalProtocolError("no address to register (set the node's addresses)")
        return self._register(now)

    def _register(self, now: float) -> int:
        assert self.identity is not None
        cfg = self.config
        # Sequence numbers from the clock in milliseconds: higher after a
        # restart too, with nothing to persist.
        self._seq = max(self._seq + 1, int(now * 1000))
        record = records.sign_record(
            self.identity, self.addresses, self._seq, now + cfg.register_lifetime
        )
        payload = records.to_wire(record)
        self.store.put(
            Record(
                self.id_bytes, payload, record.expires, True, now + cfg.register_lifetime / 2, PEER
            )
        )
        return self._publish(self.id_bytes, payload, cfg.register_lifetime, now, PEER)

    def put_shared(self, key: bytes, value: Value, context: object | None, now: float) -> int:
        """Write a shared value. ``context`` is the clock a read returned
        (``vclock.to_wire`` form) and names what this write supersedes; None
        is a blind write that becomes a sibling of what is held."""
        self._check_value(value)
        seen = vclock.from_wire(context) if context is not None else vclock.VectorClock()
        held = self.store.get(key)
        current = held.value if held is not None and held.kind == SHARED else None
        # Our counter must pass every version we wrote before, or a second
        # blind write would carry an equal clock and be dropped as already seen.
        siblings = kinds.siblings_from_wire(current) if current is not None else ()
        mine = max([seen.get(self.id), *(s.clock.get(self.id) for s in siblings)])
        counters = dict(seen.entries)
        if mine:
            counters[self.id] = mine
        version = vclock.write(vclock.VectorClock.of(counters), self.id, value)
        payload = kinds.siblings_to_wire((version,))
        try:
            merged = kinds.merge(SHARED, current, payload, key, now)
        except kinds.Refused as exc:  # too many siblings: the caller must resolve them
            raise LocalProtocolError(str(exc)) from None
        cfg = self.config
        self.store.put(
            Record(key, merged, now + cfg.expire_after, True, now + cfg.republish_interval, SHARED)
        )
        return self._publish(key, payload, cfg.expire_after, now, SHARED)

    def _check_value(self, value: Value) -> None:
        codec.check_value(value)
        size = len(codec.pack(value))
        if size > self.config.max_value_bytes:
            raise LocalProtocolError(
                f"value of {size} bytes is over the {self.config.max_value_bytes}-byte limit"
            )

    def read(self, key: bytes, kind: int, now: float) -> int:
        """Quorum read of a peer record or shared value, with read repair."""
        op = self._new_op()

        def done(outcome: LookupOutcome, at: float) -> None:
            held = {c.node_id: v for c, v in outcome.values_seen}
            mine = self.store.get(key)
            payloads = list(held.values())
            if mine is not None and mine.kind == kind and mine.expires_at > at:
                payloads.append(mine.value)
            newest, rejected = kinds.newest(kind, payloads, key, at)
            stale = [
                c
                for c in outcome.closest
                if newest is not None and not kinds.same(kind, held.get(c.node_id), newest)
            ]
            ttl = kinds.expires(kind, newest, at + self.config.expire_after) - at if newest else 0
            for contact in stale:
                self._send_store(
                    contact, key, newest, ttl, at, None, outcome.tokens.get(contact.node_id), kind
                )
            self.stats["read_repairs"] += len(stale)
            answered = len(outcome.closest)
            self._complete(
                op,
                ReadResult(
                    key,
                    kind,
                    newest,
                    outcome.replica_set,
                    answered,
                    len(held),
                    answered - len(stale) if newest is not None else 0,
                    len(stale),
                    rejected,
                    self._quorum(self.config.read_quorum, outcome.replica_set),
                ),
            )

        self._run_lookup(int.from_bytes(key, "big"), ALL, now, done, kind)
        return op

    # ---- operation plumbing ----------------------------------------------------

    def _new_op(self) -> int:
        if len(self._ops) >= self.config.max_operations:
            raise LocalProtocolError(
                f"{len(self._ops)} operations already in progress; try again shortly"
            )
        op = self._next_op
        self._next_op += 1
        self._ops.add(op)
        return op

    def _complete(self, op: int, result) -> None:
        self._ops.discard(op)
        self._events.append(OperationCompleted(op, result))

    def _publish(self, key: bytes, value: object, ttl: float, now: float, kind: int = PLAIN) -> int:
        """Find the k closest, write to each, count acknowledgements against W."""
        op = self._new_op()

        def stored(outcome: LookupOutcome, at: float) -> None:
            targets = outcome.closest
            acks: list[Contact] = []
            refused: list[str] = []
            state = {"left": len(targets)}
            needed = self._quorum(self.config.write_quorum, outcome.replica_set)

            def finish() -> None:
                self._complete(
                    op,
                    PutResult(
                        key,
                        len(acks),
                        acks,
                        len(targets),
                        outcome.queried,
                        needed,
                        outcome.replica_set,
                        tuple(dict.fromkeys(refused)),
                    ),
                )

            def settled(contact: Contact, ok: bool | str, t: float) -> None:
                state["left"] -= 1
                if ok is True:
                    acks.append(contact)
                elif isinstance(ok, str):
                    refused.append(ok)
                if state["left"] == 0:
                    finish()

            for contact in targets:
                token = outcome.tokens.get(contact.node_id)
                self._send_store(
                    contact, key, value, ttl, at, partial(settled, contact), token, kind
                )
            if not targets:
                finish()

        self._run_lookup(int.from_bytes(key, "big"), NODES, now, stored)
        return op

    @staticmethod
    def _quorum(configured: int, replica_set: int) -> int:
        """W or R for a replica set: as configured, at most a majority of it."""
        return min(configured, replica_set // 2 + 1) if replica_set else 0

    def _send_store(
        self,
        contact: Contact,
        key: bytes,
        value: object,
        ttl: float,
        now: float,
        settled: Callable[[bool | str, float], None] | None,
        token: bytes | None = None,
        kind: int = PLAIN,
    ) -> int:
        """Write ``value`` on ``contact``. Plain values: bmuller's three-argument
        STORE to stock nodes, or the native STORE with the remaining lifetime
        and a write token. Peer records and shared values: ``kn_put``, native
        only. The token is given (from a lookup's reply) or kept in the
        contact's table entry, else fetched first with a ping. ``settled``
        gets True, False (no answer) or a replica's reason for refusing.
        Returns the bytes sent now."""
        on_fail = (lambda at: settled(False, at)) if settled else _ignore

        def send(token: bytes | None, at: float) -> int:
            if token is not None:
                # The receiver counts the lifetime from when the write arrives;
                # less the RTT (more than the one-way transit), it never ends
                # later than ours.
                remaining = max(0.0, ttl - self._rtt_estimate(contact) - (at - now))
            if kind == PLAIN:
                args: list = [self.id_bytes, key, value]
                if token is not None:
                    args += [remaining, token]
                method, parse = "store", codec.parse_store_reply
                on_reply = (lambda ok, t: settled(True, t)) if settled else _ignore
            else:  # only native contacts, which always have a token by now
                args = [self.id_bytes, key, kind, value, remaining, token]
                method, parse = "kn_put", codec.parse_put_reply
                on_reply = (lambda why, t: settled(why or True, t)) if settled else _ignore
            return self._request(
                contact.addr,
                contact,
                method,
                args,
                parse,
                on_reply,
                on_fail,
                at,
                self.config.request_attempts,
            )

        if not contact.native:
            if kind != PLAIN:  # stock nodes hold plain values only
                on_fail(now)
                return 0
            return send(None, now)
        token = token or self._fresh_token(contact.node_id, now)
        if token is not None:
            return send(token, now)

        def pinged(reply: PingReply, at: float) -> None:
            if reply.token is None:
                on_fail(at)
            else:
                send(reply.token, at)

        return self._ping(contact.addr, contact, pinged, on_fail, now)

    def _send_record(
        self,
        contact: Contact,
        record: Record,
        now: float,
        settled: Callable[[bool | str, float], None] | None = None,
    ) -> int:
        """Re-send a held record (replication, join handoff, leave, anti-entropy)."""
        remaining = record.expires_at - now
        return self._send_store(
            contact, record.key, record.value, remaining, now, settled, None, record.kind
        )

    # ---- write tokens (BEP 5) ------------------------------------------------------------

    def _token_for(self, host: str, which: int = 0) -> bytes:
        """Our token for ``host`` under the current (0) or previous (1) secret:
        an HMAC, memoized per secret (every find reply carries one)."""
        memo = self._tokens[which]
        token = memo.get(host)
        if token is None:
            if len(memo) >= TOKEN_MEMO:
                memo.clear()
            digest = hmac.new(self._secrets[which], host.encode(), hashlib.sha1).digest()
            token = memo[host] = digest[: codec.TOKEN_BYTES]
        return token

    def _token_valid(self, host: str, token: bytes) -> bool:
        return hmac.compare_digest(self._token_for(host), token) or hmac.compare_digest(
            self._token_for(host, 1), token
        )

    def _remember_token(self, node_id: int, token: bytes, now: float) -> None:
        entry = self.table.get(node_id)
        if entry is not None:
            entry.token, entry.token_at = token, now

    def _fresh_token(self, node_id: int, now: float) -> bytes | None:
        entry = self.table.get(node_id)
        if entry is not None and entry.token is not None and now - entry.token_at < TOKEN_FRESH:
            return entry.token
        return None

    def _saw_pinged(self, reply: PingReply, addr: Addr, now: float) -> None:
        """A ping to a bare address answered: a contact, native if it sent a token."""
        native = reply.token is not None
        self._saw(codec.contact_of(reply.node_id, addr[0], addr[1], native), now)
        if native:
            self._remember_token(reply.node_id, reply.token, now)

    def _run_lookup(
        self,
        target: int,
        mode: int,
        now: float,
        done: Callable[[LookupOutcome, float], None],
        kind: int = PLAIN,
    ) -> None:
        """A lookup: NODES (find_node), FIRST (find_value, ends at the first
        plain value) or ALL (find_value, collects every replica's value of
        ``kind`` while finding the k closest: quorum reads)."""
        cfg = self.config
        lookup = Lookup(
            target,
            self.table.closest(target, cfg.k),
            k=cfg.k,
            alpha=cfg.alpha,
            self_id=self.id,
            want_value=mode == FIRST,
        )
        self.table.touch(self.table.bucket_index(target), now)
        method = "find_node" if mode == NODES else "find_value"
        _LookupRun(self, lookup, method, target, kind, done).pump(now)

    # ---- requests out ------------------------------------------------------------

    def _smoothed_rtt(self, contact: Contact | None) -> tuple[float, float] | None:
        """(srtt, rttvar): the contact's own, else over all contacts, else None."""
        entry = self.table.get(contact.node_id) if contact is not None else None
        if entry is not None and entry.srtt is not None:
            return entry.srtt, entry.rttvar
        if self._srtt is not None:
            return self._srtt, self._rttvar
        return None

    def _rtt_estimate(self, contact: Contact) -> float:
        smoothed = self._smoothed_rtt(contact)
        return smoothed[0] if smoothed else self.config.rto_initial

    def _rto(self, contact: Contact | None) -> float:
        cfg = self.config
        smoothed = self._smoothed_rtt(contact)
        rto = smoothed[0] + RTO_K * smoothed[1] if smoothed else cfg.rto_initial
        return min(max(rto, cfg.rto_floor), cfg.rto_ceil)

    def _request(
        self,
        addr: Addr,
        contact: Contact | None,
        method: str,
        args: list,
        parse: Callable[[object], object],
        on_reply: Callable[[object, float], None],
        on_fail: Callable[[float], None],
        now: float,
        attempts: int,
        on_stall: Callable[[float], None] | None = None,
    ) -> int:
        """Send a request; returns the datagram's size (0: refused)."""
        if len(self._pending) >= self.config.max_pending_requests:
            self.stats["requests_refused"] += 1
            on_fail(now)
            return 0
        msg_id = NATIVE_MAGIC + self.rng.getrandbits(128).to_bytes(16, "big")
        datagram = codec.encode_request(msg_id, method, args)
        rto = self._rto(contact)
        pending = _Pending(
            msg_id,
            addr,
            contact,
            datagram,
            attempts - 1,
            now,
            now + rto,
            rto,
            False,
            parse,
            on_reply,
            on_fail,
            on_stall,
        )
        self._pending[msg_id] = pending
        heapq.heappush(self._deadlines, (pending.deadline, msg_id))
        self._out.append((datagram, addr))
        self.stats["requests_out"] += 1
        return len(datagram)

    def _ping(
        self,
        addr: Addr,
        contact: Contact | None,
        on_reply: Callable[[PingReply, float], None],
        on_fail: Callable[[float], None],
        now: float,
    ) -> int:
        return self._request(
            addr,
            contact,
            "ping",
            [self.id_bytes],
            codec.parse_ping_reply,
            on_reply,
            on_fail,
            now,
            self.config.request_attempts,
        )

    def _expire_request(self, pending: _Pending, now: float) -> None:
        if pending.on_stall is not None:
            # Soft timeout: the caller moves on; a late reply still counts
            # until the backed-off deadline (a slow node is not a dead one).
            stalled, pending.on_stall = pending.on_stall, None
            pending.rto = min(pending.rto * 2, self.config.rto_ceil)
            pending.deadline = now + pending.rto
            heapq.heappush(self._deadlines, (pending.deadline, pending.msg_id))
            self.stats["stalls"] += 1
            stalled(now)
            return
        if pending.attempts_left > 0:
            # Retransmit with the same message id; back off (RFC 6298 5.5).
            pending.attempts_left -= 1
            pending.retransmitted = True
            pending.rto = min(pending.rto * 2, self.config.rto_ceil)
            pending.deadline = now + pending.rto
            heapq.heappush(self._deadlines, (pending.deadline, pending.msg_id))
            self._out.append((pending.datagram, pending.addr))
            self.stats["retransmits"] += 1
            return
        del self._pending[pending.msg_id]
        self.stats["timeouts"] += 1
        self._contact_failed(pending.contact)
        pending.on_fail(now)

    def _contact_failed(self, contact: Contact | None) -> None:
        """One failed request: counts toward a table drop; leaves the ring at once
        (Chord: the next successor in the list takes over)."""
        if contact is None:
            return
        if self.table.failed(contact.node_id):
            self.stats["contacts_dropped"] += 1
        if self.ring.remove(contact.node_id):
            self._ring_version += 1

    def _handle_response(self, response: Response, addr: Addr, now: float) -> None:
        pending = self._pending.get(response.msg_id)
        if pending is None or pending.addr != addr:
            self.stats["unexpected_responses"] += 1
            return
        del self._pending[response.msg_id]
        self.stats["responses_in"] += 1
        try:
            parsed = pending.parse(response.body)
        except DecodeError:
            self.stats["bad_replies"] += 1
            self._contact_failed(pending.contact)
            pending.on_fail(now)
            return
        contact = pending.contact
        if not pending.retransmitted:  # Karn's rule: no samples from retransmissions
            sample = now - pending.sent_at
            self._srtt, self._rttvar = rtt_update(
                self._srtt, self._rttvar, sample, RTO_ALPHA, RTO_BETA
            )
            if contact is not None:
                self.table.record_rtt(contact.node_id, sample, RTO_ALPHA, RTO_BETA)
        if contact is not None:
            native = getattr(parsed, "native", False) or getattr(parsed, "token", None) is not None
            if native and not contact.native:
                contact = codec.contact_of(contact.node_id, contact.host, contact.port, True)
            self._saw(contact, now)
            token = getattr(parsed, "token", None)
            if token is not None:
                self._remember_token(contact.node_id, token, now)
        pending.on_reply(parsed, now)

    # ---- requests in ----------------------------------------------------------------

    def _handle_request(self, request: Request, addr: Addr, now: float) -> None:
        message = request.message
        if message.sender_id == self.id:
            self.stats["bad_datagrams"] += 1  # someone claims our id
            return
        self.stats["requests_in"] += 1
        native = request.native
        # Before the request itself: a newcomer's welcome must not echo back
        # the value it is storing with us right now.
        self._saw(codec.contact_of(message.sender_id, addr[0], addr[1], native), now)
        kind = type(message)
        # Write tokens ride on the replies a writer reads before writing.
        token = self._token_for(addr[0]) if native and kind in _TOKEN_REPLIES else None
        if kind is FindNode:
            contacts = self.table.closest(message.target, self.config.k, exclude=message.sender_id)
            body = _nodes_body(contacts, native, token)
        elif kind is FindValue:
            body = self._find_value_body(message, native, token, now)
        elif kind is Ping:
            body = codec.ping_reply_body(self.id_bytes, native, token)
        elif kind is Store:
            body = self._accept_store(message, addr, now)
        elif kind is RingQuery:
            body = codec.ring_reply_body(self.ring.predecessor, self.ring.successors)
        elif kind is Digest:
            mine = antientropy.digest(
                (k, fp) for k, fp, _ in self._shared_with(message.sender_id, now)
            )
            body = antientropy.differing(mine, message.hashes)
        elif kind is KeyList:
            body = self._compare_keys(message, addr, native, now)
        elif kind is Put:
            body = self._accept_put(message, addr, now)
        else:
            done, node = self._route_step(message.key)
            body = codec.successor_reply_body(done, node)
        data = codec.encode_response(request.msg_id, body)
        if len(data) > self.config.max_datagram:
            self.stats["replies_too_large"] += 1
            return
        self._out.append((data, addr))

    def _find_value_body(
        self, message: FindValue, native: bool, token: bytes | None, now: float
    ) -> object:
        record = self.store.get(message.key)
        if record is not None and record.expires_at > now and (native or record.kind == PLAIN):
            remaining = record.expires_at - now
            return codec.find_reply_body([], native, record.value, remaining, token, record.kind)
        target = int.from_bytes(message.key, "big")
        contacts = self.table.closest(target, self.config.k, exclude=message.sender_id)
        return _nodes_body(contacts, native, token)

    def _accept_store(self, message: Store, addr: Addr, now: float) -> bool:
        cfg = self.config
        if message.token is not None and not self._token_valid(addr[0], message.token):
            # A native STORE must come from the address the token was given
            # to: spoofed-source STOREs fail here (BEP 5).
            self.stats["stores_refused_token"] += 1
            return False
        held = self.store.get(message.key)
        if held is not None and held.kind != PLAIN:
            # Anyone can send a plain STORE; it never replaces a signed peer
            # record or a shared value.
            self.stats["stores_refused_kind"] += 1
            return False
        if held is None and len(self.store) >= cfg.max_stored_values:
            self.stats["stores_refused"] += 1
            return False
        ttl = cfg.expire_after if message.ttl is None else min(message.ttl, cfg.expire_after)
        expires_at = now + ttl
        if held is not None:
            expires_at = max(expires_at, held.expires_at)
            if held.origin:
                self.store.put(Record(message.key, message.value, expires_at, True, held.resend_at))
                self.stats["stores_in"] += 1
                return True
        # Paper 2.5: a node that just received a STORE skips its own
        # replication of that key for the next interval.
        self.store.put(
            Record(message.key, message.value, expires_at, False, now + cfg.replicate_interval)
        )
        self.stats["stores_in"] += 1
        return True

    def _accept_put(self, message: Put, addr: Addr, now: float) -> dict:
        """A native write of a signed peer record or a shared value."""
        cfg = self.config
        if not self._token_valid(addr[0], message.token):
            self.stats["puts_refused"] += 1
            return {"ok": False, "reason": "bad or expired write token"}
        held = self.store.get(message.key)
        if held is not None and held.kind not in (PLAIN, message.kind):
            self.stats["puts_refused"] += 1
            return {"ok": False, "reason": f"key holds a {kinds.NAMES[held.kind]}"}
        if held is None and len(self.store) >= cfg.max_stored_values:
            self.stats["puts_refused"] += 1
            return {"ok": False, "reason": "store full"}
        current = held.value if held is not None and held.kind == message.kind else None
        try:
            merged = kinds.merge(message.kind, current, message.payload, message.key, now)
        except (kinds.Refused, DecodeError) as exc:
            self.stats["puts_refused"] += 1
            return {"ok": False, "reason": str(exc)[:200]}
        lifetime = now + min(message.ttl, cfg.expire_after)
        if held is not None and held.kind == message.kind:
            lifetime = max(lifetime, held.expires_at)
        expires_at = kinds.expires(message.kind, merged, lifetime)
        origin = held is not None and held.origin and held.kind == message.kind
        resend_at = held.resend_at if origin else now + cfg.replicate_interval
        self.store.put(Record(message.key, merged, expires_at, origin, resend_at, message.kind))
        self.stats["puts_in"] += 1
        return {"ok": True, "reason": None}

    # ---- routing upkeep ---------------------------------------------------------------

    def _saw(self, contact: Contact, now: float) -> None:
        self._offer_ring(contact)
        if not self.table.knows(contact.node_id):
            # First sight (or back after being dropped), whether it lands in a
            # bucket or in its replacement cache: it may now be among the k
            # closest for keys we hold.
            self._welcome(contact, now)
        oldest = self.table.seen(contact, now)
        if oldest is None or oldest.node_id in self._evicting:
            return
        # Full bucket: ping its least recently seen contact before anyone is
        # evicted. A reply moves it to the tail; failures count toward its
        # drop, after which the newest replacement moves in.
        self._evicting.add(oldest.node_id)
        done = lambda *_: self._evicting.discard(oldest.node_id)  # noqa: E731
        self._ping(oldest.addr, oldest, done, done, now)

    # ---- handing values over when the neighbourhood changes ----------------------------

    def _welcome(self, newcomer: Contact, now: float) -> None:
        """Join handoff (paper 2.5; bmuller's ``welcome_if_new``).

        A key moves to a newcomer that is now among its k closest, sent only
        by the nearest of the nodes that held it, so one copy travels. Keys
        near a newcomer are near us only if it joined our own neighbourhood,
        so the store is scanned only then.
        """
        k = self.config.k
        if not len(self.store):
            return
        radius = self.table.radius()
        if radius is not None and newcomer.node_id ^ self.id > radius:
            return
        new_id = newcomer.node_id
        for record in self._live_records(now):
            target = int.from_bytes(record.key, "big")
            holders = self.table.closest(target, k, exclude=new_id)
            mine = self.id ^ target
            if holders and holders[0].node_id ^ target < mine:
                continue  # someone nearer than us hands it over
            kth = max([mine] + [c.node_id ^ target for c in holders[: k - 1]])
            if new_id ^ target < kth or len(holders) < k - 1:
                self._send_record(newcomer, record, now)
                self.stats["keys_handed_on_join"] += 1

    def _live_records(self, now: float) -> Iterator[Record]:
        """Every held record that has not expired (the store drops them lazily)."""
        for key in self.store.keys():
            record = self.store.get(key)
            if record is not None and record.expires_at > now:
                yield record

    def leave(self, now: float) -> int:
        """Hand every held value to the k closest remaining nodes, then report."""
        op = self._new_op()
        work = []
        for record in self._live_records(now):
            for contact in self.table.closest(int.from_bytes(record.key, "big"), self.config.k):
                work.append((contact, record))
        keys = len({record.key for _, record in work})
        state = {"next": 0, "open": 0, "acks": 0}
        window = max(1, self.config.max_pending_requests // 4)

        def pump(at: float) -> None:
            while state["next"] < len(work) and state["open"] < window:
                contact, record = work[state["next"]]
                state["next"] += 1
                state["open"] += 1
                self._send_record(contact, record, at, settled)
            if state["open"] == 0:
                self._complete(op, LeaveResult(keys, len(work), state["acks"]))

        def settled(ok: bool | str, at: float) -> None:
            state["open"] -= 1
            state["acks"] += ok is True
            pump(at)

        pump(now)
        return op

    # ---- anti-entropy between replicas ---------------------------------------------------

    def _shared_with(self, peer_id: int, now: float) -> list[tuple[bytes, bytes, Record]]:
        """Held keys for which ``peer_id`` is among the k closest (our view)."""
        k = self.config.k
        out = []
        for record in self._live_records(now):
            target = int.from_bytes(record.key, "big")
            ranked = [c.node_id for c in self.table.closest(target, k)] + [self.id]
            if peer_id in sorted(ranked, key=lambda i: i ^ target)[:k]:
                out.append((record.key, antientropy.fingerprint(record.key, record.value), record))
        return out

    def sync(self, peer: Contact, now: float) -> int:
        """One anti-entropy exchange with ``peer`` (it also runs by itself)."""
        op = self._new_op()
        self._sync(peer, now, lambda result, _at: self._complete(op, result))
        return op

    def _sync(self, peer: Contact, now: float, done: Callable[[SyncResult, float], None]) -> None:
        """Digest first; then key lists for buckets that differ; then the values
        the peer lacks. Buckets the peer holds nothing of skip the key list."""
        shared = self._shared_with(peer.node_id, now)
        self.stats["ae_syncs"] += 1
        state = {"bytes": 0, "open": 0, "offered": 0, "sent": 0, "differ": 0}
        republish = sum(
            len(codec.encode_request(bytes(20), "store", [self.id_bytes, k, r.value, 0.0]))
            + STORE_REPLY_BYTES
            for k, _, r in shared
        )

        def settle(at: float) -> None:
            state["open"] -= 1
            if state["open"] == 0:
                self.stats["ae_bytes"] += state["bytes"]
                result = SyncResult(
                    peer,
                    len(shared),
                    state["differ"],
                    state["offered"],
                    state["sent"],
                    state["bytes"],
                    republish,
                )
                done(result, at)

        def ask(method: str, args: list, then: Callable[[list[int], float], None], at: float):
            state["open"] += 1

            def replied(body: list[int], t: float) -> None:
                state["bytes"] += codec.HEADER + len(codec.pack(body))
                then(body, t)
                settle(t)

            state["bytes"] += self._request(
                peer.addr,
                peer,
                method,
                args,
                codec.parse_bucket_list,
                replied,
                settle,
                at,
                self.config.request_attempts,
            )

        def send(entries: list[tuple[bytes, bytes, Record]], at: float) -> None:
            for _, _, record in entries:
                state["sent"] += 1
                state["open"] += 1
                state["bytes"] += self._send_record(peer, record, at, stored)

        def stored(ok: bool | str, at: float) -> None:
            state["bytes"] += STORE_REPLY_BYTES
            settle(at)

        def offer(chunk: list[tuple[bytes, bytes, Record]], buckets: list[int], at: float):
            state["offered"] += len(chunk)
            entries = [[k, fp] for k, fp, _ in chunk]
            ask(
                "kn_keys",
                [self.id_bytes, buckets, entries],
                lambda wanted, t: send([chunk[i] for i in wanted if i < len(chunk)], t),
                at,
            )

        def differ(buckets: list[int], at: float) -> None:
            state["differ"] = len(buckets)
            empty = {b - antientropy.BUCKETS for b in buckets if b >= antientropy.BUCKETS}
            send([e for e in shared if antientropy.bucket_of(e[0]) in empty], at)
            chunk: list[tuple[bytes, bytes, Record]] = []
            covered: list[int] = []
            for bucket in sorted(b for b in buckets if b < antientropy.BUCKETS):
                part = [e for e in shared if antientropy.bucket_of(e[0]) == bucket]
                if covered and len(chunk) + len(part) > AE_KEYS_PER_DATAGRAM:
                    offer(chunk, covered, at)
                    chunk, covered = [], []
                chunk.extend(part)
                covered.append(bucket)
            if covered:
                offer(chunk, covered, at)

        hashes = antientropy.digest((k, fp) for k, fp, _ in shared)
        ask("kn_digest", [self.id_bytes, hashes], differ, now)

    def _compare_keys(self, message: KeyList, addr: Addr, native: bool, now: float) -> list[int]:
        """Name the offered keys we lack; push the ones the sender lacks."""
        theirs = {key for key, _ in message.entries}
        want = [i for i, (key, _) in enumerate(message.entries) if self.store.get(key) is None]
        buckets = set(message.buckets)
        sender = codec.contact_of(message.sender_id, addr[0], addr[1], native)
        for key, _, record in self._shared_with(message.sender_id, now):
            if antientropy.bucket_of(key) in buckets and key not in theirs:
                self.stats["ae_bytes"] += self._send_record(sender, record, now)
                self.stats["ae_pushed"] += 1
        return want

    # ---- the ring view (Chord) --------------------------------------------------------

    def fingers(self) -> Fingers:
        """Fingers derived from every contact we know (cached per change)."""
        version = (self.table.version, self._ring_version)
        if self._fingers is None or self._fingers[0] != version:
            # Chord hops go to kadnode nodes only: a bmuller node never answers
            # kn_find_successor and would be counted as failing.
            known = [c for c in self.table.contacts() if c.native] + self.ring.successors
            if self.ring.predecessor is not None:
                known.append(self.ring.predecessor)
            self._fingers = (version, Fingers(self.id, known))
        return self._fingers[1]

    def _route_step(self, key: int) -> tuple[bool, Contact | None]:
        """Chord's find_successor at this node: (done, node); node None is us."""
        succ = self.ring.successor
        if succ is None or self.ring.owns(key):
            return True, None
        if in_half_open(key, self.id, succ.node_id):
            return True, succ
        hop = self.fingers().closest_preceding(key)
        return (True, succ) if hop is None else (False, hop)

    def find_successor(self, key: int, now: float) -> int:
        """Route Chord-style to the node that owns ``key`` on the ring."""
        op = self._new_op()
        self._route(key, now, lambda result, _at: self._complete(op, result))
        return op

    def _route(self, key: int, now: float, done: Callable[[RouteResult, float], None]) -> None:
        asked: set[int] = set()

        def step(finished: bool, node: Contact | None, hops: int, at: float) -> None:
            if finished:
                done(RouteResult(key, node, True, hops), at)
            elif node.node_id in asked or hops >= self.config.max_route_hops:
                self.stats["routes_abandoned"] += 1
                done(RouteResult(key, None, False, hops), at)
            else:
                asked.add(node.node_id)
                self._request(
                    node.addr,
                    node,
                    "kn_find_successor",
                    [self.id_bytes, key.to_bytes(ID_BYTES, "big")],
                    codec.parse_successor_reply,
                    lambda r, t, asked_node=node: step(r.done, r.node or asked_node, hops + 1, t),
                    lambda t: done(RouteResult(key, None, False, hops + 1), t),
                    at,
                    self.config.request_attempts,
                )

        step(*self._route_step(key), 0, now)

    def _stabilize(self, now: float) -> None:
        """Chord's stabilize and check_predecessor (paper, figure 7).

        One change to the paper: when our successor's predecessor lies between
        us and it, we adopt it and ask it at once, in the same round (bounded),
        so a node whose first guess was many nodes off is placed in one round
        rather than one step per period.
        """
        self._stabilize_at = now + self.config.stabilize_interval
        self._ask_successor(now, self.config.max_route_hops)
        pred = self.ring.predecessor
        if pred is not None and pred != self.ring.successor:
            self._ping(pred.addr, pred, _ignore, _ignore, now)

    def _ask_successor(self, now: float, budget: int) -> None:
        succ = self.ring.successor
        if succ is None:
            return

        def learned(reply: RingReply, at: float) -> None:
            closer = reply.predecessor
            for contact in reply.successors:
                self._offer_ring(contact)
            if closer is not None and closer.node_id != self.id:
                self._offer_ring(closer)
                if budget > 1 and in_open(closer.node_id, self.id, succ.node_id):
                    self._ask_successor(at, budget - 1)

        self._request(
            succ.addr,
            succ,
            "kn_ring",
            [self.id_bytes],
            codec.parse_ring_reply,
            learned,
            _ignore,
            now,
            self.config.request_attempts,
        )

    def _offer_ring(self, contact: Contact) -> None:
        # Only kadnode nodes speak the ring RPCs; a bmuller node would
        # never answer them and would be dropped as failing.
        if contact.native and self.ring.offer(contact):
            self._ring_version += 1

    def _bucket_targets(self, indices: Iterable[int]) -> list[int]:
        return [random_id_in_bucket(self.id, i, self.rng) for i in indices]

    def _lookup_all(self, targets: list[int], now: float, done: Callable[[float], None]) -> None:
        """Run node lookups for all targets at once; ``done`` when all ended."""
        left = [len(targets)]

        def ended(_outcome: LookupOutcome, at: float) -> None:
            left[0] -= 1
            if left[0] == 0:
                done(at)

        for target in targets:
            self._run_lookup(target, NODES, now, ended)
        if not targets:
            done(now)

    def _refresh(self, now: float) -> None:
        """Look up a random id in every bucket idle for the refresh interval."""
        interval = self.config.refresh_interval
        stale = self.table.stale_buckets(now, interval)
        self.stats["bucket_refreshes"] += len(stale)
        self._lookup_all(self._bucket_targets(stale), now, _ignore)
        # Buckets nearer than the nearest occupied one keep their creation
        # time (nothing touches them), so the earliest refresh time is always
        # in the past after the first round: the next check is one interval on.
        self._refresh_at = now + interval

    def _maintain_record(self, record: Record, now: float) -> None:
        cfg = self.config
        if record.origin and record.resend_at <= now:
            if len(self._ops) >= cfg.max_operations or (
                record.kind == PEER and (self.identity is None or not self.addresses)
            ):
                self.store.put(record.with_schedule(resend_at=now + cfg.replicate_interval))
            elif record.kind == PEER:
                # Re-sign before expiry, with a higher sequence.
                self._register(now)
                self.stats["reregistered"] += 1
            else:
                # Republish (paper 2.5): a fresh lifetime from the publisher.
                self.store.put(
                    record.with_schedule(
                        expires_at=now + cfg.expire_after, resend_at=now + cfg.republish_interval
                    )
                )
                self._publish(record.key, record.value, cfg.expire_after, now, record.kind)
                self.stats["republished"] += 1
        elif record.expires_at <= now and not record.origin:
            self.store.delete(record.key)
            self.stats["expired"] += 1
        elif record.resend_at <= now:
            # Replicate what we hold to the k closest we know, with its
            # remaining lifetime, so replication never extends it.
            target = int.from_bytes(record.key, "big")
            for contact in self.table.closest(target, cfg.k):
                if contact.native:
                    self._send_record(contact, record, now)
            self.store.put(record.with_schedule(resend_at=now + cfg.replicate_interval))
            self.stats["replicated"] += 1
        else:
            # Our own publication, published with a lifetime shorter than the
            # republish interval: replicas let it expire, we keep serving it
            # until the next republish renews it everywhere.
            self.store.put(
                record.with_schedule(expires_at=max(record.expires_at, record.resend_at))
            )


_TOKEN_REPLIES = (FindNode, FindValue, Ping)


class _LookupRun:
    """One running lookup: sends what the Lookup asks for, feeds it replies.

    Its methods are the requests' callbacks; nothing refers back to it, so
    it is freed the moment its last request settles (closures calling each
    other would be a reference cycle per lookup, left for the cyclic
    garbage collector: 5 KiB per node at N=200).
    """

    __slots__ = ("args", "core", "done", "finished", "kind", "lookup", "method")

    def __init__(self, core: NodeCore, lookup: Lookup, method: str, target: int, kind: int, done):
        self.core = core
        self.lookup = lookup
        self.method = method
        self.args = [core.id_bytes, target.to_bytes(ID_BYTES, "big")]
        self.kind = kind
        self.done = done
        self.finished = False

    def pump(self, at: float) -> None:
        if self.finished:
            return
        core, lookup = self.core, self.lookup
        attempts = core.config.lookup_attempts
        for contact in lookup.next_requests():
            core._request(
                contact.addr,
                contact,
                self.method,
                self.args,
                codec.parse_find_reply,
                partial(self.replied, contact),
                partial(self.failed, contact),
                at,
                attempts,
                partial(self.stalled, contact),
            )
        if lookup.finished and not self.finished:
            self.finished = True
            self.done(lookup.outcome(), at)

    def replied(self, contact: Contact, reply: FindReply, at: float) -> None:
        if reply.native and not contact.native:
            contact = codec.contact_of(contact.node_id, contact.host, contact.port, True)
        if reply.found and reply.kind == self.kind:
            self.lookup.answered_value(contact, reply.value, reply.ttl, reply.token)
        else:  # no value, or one of another kind: this node holds nothing for us
            self.lookup.answered_nodes(contact, reply.contacts, reply.token)
        self.pump(at)

    def failed(self, contact: Contact, at: float) -> None:
        self.lookup.failed_request(contact.node_id)
        self.pump(at)

    def stalled(self, contact: Contact, at: float) -> None:
        self.lookup.stalled(contact.node_id)
        self.pump(at)


def _nodes_body(contacts: list[Contact], native: bool, token: bytes | None) -> object:
    if native:
        return codec.find_nodes_body(contacts, token)
    return codec.find_reply_body(contacts, False)


def _ignore(*_args) -> None:
    return None
