"""The node core: Kademlia as a state machine. Pure, no I/O.

Shaped like aioquic's connection: the caller feeds it datagrams and time
(``receive_datagram(data, addr, now)``, ``handle_timer(now)``) and collects
what it decided (``datagrams_to_send()``, ``get_timer()``, ``next_event()``).
Operations (``ping``, ``bootstrap``, ``lookup``, ``get``, ``put``...) return
an operation id at once; their result arrives later as an
:class:`~kadnode.core.events.OperationCompleted` event. The same code runs in
the asyncio daemon, in unit tests with exact timers, and in the simulator.

The parts, each in its own module:

- :mod:`~kadnode.core.requests`: requests in flight, retransmission, RTO;
- :mod:`~kadnode.core.tokens`: write tokens given and kept;
- :mod:`~kadnode.core.answers`: one handler per request type;
- :mod:`~kadnode.core.operations` and :mod:`~kadnode.core.values`: the
  operations, one small object each;
- :mod:`~kadnode.core.upkeep`: what the timer and newcomers make it do.

This class holds the state they share (routing table, ring view, store,
counters) and the few steps every part takes: meeting a contact, a failed
contact, sending a ping, starting and completing an operation.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable, Iterable

from kadnode.config import MAX_RECORD_ADDRESSES, NETWORK_MARK, TOKEN_BYTES, Config
from kadnode.core import answers, codec, operations, reach, reads, sync, upkeep, values
from kadnode.core.addresses import Exempt
from kadnode.core.background import Background
from kadnode.core.codec import Response
from kadnode.core.events import OperationCompleted
from kadnode.core.identity import Identity
from kadnode.core.ids import ID_BYTES, in_half_open
from kadnode.core.limits import RateLimits
from kadnode.core.messages import Addr, Contact, Kind, Ping, PingReply, RingReply, Value
from kadnode.core.proof import Proof, Welcomes
from kadnode.core.requests import Requests
from kadnode.core.ring import Fingers, RingView
from kadnode.core.routing import RoutingTable
from kadnode.core.store import Record, Store
from kadnode.core.tokens import WriteTokens, remember
from kadnode.core.wire import contact_of
from kadnode.errors import DecodeError, LocalProtocolError

REQUEST_BYTE = bytes((codec.REQUEST,))
NETWORK_MARK_BYTE = bytes((NETWORK_MARK,))


class NodeCore:
    def __init__(
        self,
        node_id: int,
        store: Store,
        *,
        config: Config | None = None,
        rng: random.Random | None = None,
        now: float = 0.0,
        identity: Identity | None = None,
    ):
        if identity is not None and identity.node_id != node_id:
            raise LocalProtocolError("the node id must derive from the identity's key")
        self.identity = identity
        self.addresses: tuple[Addr, ...] = ()  # what register() advertises
        # Set by the operator (--advertise): the observed address does not replace them.
        self.addresses_fixed = False
        # Of the last peer record we signed: a restart reopens the store that
        # holds it. A record's seq is the clock in ms, so without this a node
        # that signed while its clock ran ahead, restarted on the right time,
        # would sign records every replica refuses as older, until it caught up.
        self.seq = values.own_seq(store.get(node_id.to_bytes(ID_BYTES, "big")))
        # False once deregistered (or left): nothing registers us again but register().
        self.listed = True
        self.id = node_id
        self.id_bytes = node_id.to_bytes(ID_BYTES, "big")
        self.config = cfg = config or Config()
        self.store = store
        self.rng = rng or random.Random()
        self.exempt = Exempt(cfg.exempt_networks)
        self.table = RoutingTable(
            node_id,
            cfg.k,
            cfg.replacement_cache,
            cfg.stale_limit,
            cfg.good_for,
            now,
            cfg.per_subnet_bucket,
            cfg.per_subnet_table,
            self.exempt,
        )
        self.stats: Counter[str] = Counter()
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[OperationCompleted] = deque()
        self.requests = Requests(cfg, self.rng, self.stats, self.table, self._out, self.failed)
        self._ops: set[int] = set()
        self._next_op = 1
        self._evicting: set[int] = set()
        self.refresh_at = now + cfg.refresh_interval
        self.ring = RingView(node_id, cfg.successors)
        # (successor id, its last whole ring reply): kadnode.core.upkeep
        self.ring_heard: tuple[int, RingReply] | None = None
        self._ring_version = 0
        self._fingers: tuple[tuple[int, int], Fingers] | None = None
        self.stabilize_at = now + cfg.stabilize_interval
        self.sync_at = now + cfg.anti_entropy_interval
        self.tokens = WriteTokens(self.rng, now)
        self.limits = RateLimits(cfg, self.exempt)
        self.proof = Proof()
        self.background = Background()
        self.ae_digests: dict[int, tuple[float, list[bytes]]] = {}  # peer id -> (at, hashes)
        self.ae_computing: set[int] = set()  # peers whose digest is queued
        self.ae_jobs: dict[int, list[float]] = {}  # peer id -> its recent jobs' times
        self.dialing: dict[str, list[Contact]] = {}  # host pinged back -> its senders
        # Newcomers on a proven host, pinged back at ``due`` unless vouched for first.
        self.welcomes = Welcomes(self.table.exempt)
        # The largest ping back to prove a sender: one carrying the token the
        # contact it names gave us (kadnode.core.answers keeps room for it).
        self.ping_size = len(codec.encode(bytes(ID_BYTES), Ping(node_id, bytes(TOKEN_BYTES))))
        self.network_tag = codec.network_tag(cfg.network_id)  # b"": the default network
        self.reach = reach.Reachability(now)

    def set_local_hosts(self, hosts: Iterable[str]) -> None:
        """This host's own addresses: with them, the node learns the address
        peers see it at, and goes client mode behind NAT (kadnode.core.reach)."""
        self.reach.local_hosts = frozenset(hosts)
        self.requests.on_sent = self.reach.sent_to if self.reach.local_hosts else None

    def client_mode(self, client: bool) -> None:
        """Say, in every request, that we are a client (or no longer are)."""
        magic = codec.CLIENT_MAGIC if client else codec.NATIVE_MAGIC
        if magic != self.requests.magic:
            self.requests.magic = magic
            self.stats["mode_changes"] += 1

    def readdress(self, now: float) -> None:
        """Put the adopted observed address first in what we register, unless
        the operator set the addresses; re-register if we had registered."""
        adopted = self.reach.address
        if self.addresses_fixed or adopted is None or self.addresses[:1] == (adopted,):
            return
        rest = [a for a in self.addresses if a != adopted]
        self.addresses = (adopted, *rest)[:MAX_RECORD_ADDRESSES]
        self.stats["readdressed"] += 1
        self.reregister(now)

    def reregister(self, now: float) -> None:
        """Sign and publish our peer record again, if we had registered one:
        what it says (addresses, relays) changed."""
        held = self.store.get(self.id_bytes)
        registered = held is not None and held.kind == Kind.PEER and held.origin
        if self.identity is not None and self.listed and registered and not self.busy():
            self.register_now(now)

    # ---- the I/O interface ----------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.stats["datagrams_in"] += 1
        if not self._ours(data):
            self.stats["foreign_datagrams"] += 1  # another network's: not even decoded
            return
        data = data[len(self.network_tag) :]
        if data[:1] == REQUEST_BYTE and not self.limits.allow(addr[0], now):
            self.stats["requests_limited"] += 1  # dropped before it is even decoded
            return
        try:
            message = codec.decode(data, self.config.max_datagram)
        except DecodeError:
            self.stats["bad_datagrams"] += 1
            return
        if type(message) is Response:
            self._handle_response(message, addr, now)
        elif message.message.sender_id == self.id:
            self.stats["bad_datagrams"] += 1  # someone claims our id
        else:
            self.stats["requests_in"] += 1
            answers.respond(self, message, addr, len(data), now)

    def _ours(self, data: bytes) -> bool:
        """Of this node's network: its tag first, or (the default network) no tag."""
        if self.network_tag:
            return data.startswith(self.network_tag)
        return data[:1] != NETWORK_MARK_BYTE

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        tag = self.network_tag
        out = [(tag + data, addr) for data, addr in self._out] if tag else self._out[:]
        self._out.clear()
        self.stats["datagrams_out"] += len(out)
        return out

    def next_event(self) -> OperationCompleted | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        timer = upkeep.next_due(self)
        deadline = self.requests.next_deadline()
        return deadline if deadline is not None and deadline < timer else timer

    def handle_timer(self, now: float) -> None:
        self.requests.expire(now)
        upkeep.tick(self, now)

    # ---- operations -------------------------------------------------------------

    def ping(self, addr: Addr, now: float) -> int:
        op = self._new_op()
        operations.Ping(self, op, addr, now)
        return op

    def bootstrap(self, addrs: Iterable[Addr], now: float) -> int:
        """Join through these seeds (see :class:`~kadnode.core.operations.Bootstrap`)."""
        op = self._new_op()
        operations.Bootstrap(self, op, addrs, now)
        return op

    def lookup(self, target: int, now: float, all_k: bool = False) -> int:
        """The k nearest to ``target``: done once the beta nearest have
        answered, or (``all_k``) every one of the k, as a put's lookup."""
        op = self._new_op()
        operations.NodeLookup(self, op, target, now, all_k)
        return op

    def get(self, key: bytes, now: float) -> int:
        op = self._new_op()
        reads.Get(self, op, key, now)
        return op

    def put(self, key: bytes, value: Value, now: float, ttl: float | None = None) -> int:
        """Store on the k closest and keep the duty to republish it; with a
        ``ttl`` shorter than a value's lifetime, the value lives that long:
        this node holds and replicates its copy as a replica would, with
        what is left of the ttl, and never republishes it."""
        self._check_value(value)
        cfg = self.config
        if ttl is None or ttl >= cfg.expire_after:
            ttl = cfg.expire_after
            self.store.put(Record(key, value, now + ttl, True, now + cfg.republish_interval))
        else:
            self.store.put(Record(key, value, now + ttl, False, now + cfg.replicate_interval))
        return self.publish(key, value, ttl, now, wide=True)

    def register(self, now: float) -> int:
        """Sign a peer record for ``self.addresses`` (a higher sequence than any
        before) and store it on the k closest to our id; re-signed every half
        lifetime while we run."""
        if self.identity is None:
            raise LocalProtocolError("this node has no identity key to sign a record with")
        if not self.addresses:
            raise LocalProtocolError("no address to register (set the node's addresses)")
        self.listed = True
        return self.register_now(now, wide=True)

    def deregister(self, now: float) -> int:
        """Replace our peer record with a signed tombstone (no address, a higher
        sequence) and store it on the k closest to our id; ``find_peer`` then
        says we left, until :meth:`register`."""
        payload = values.deregister(self, now)
        if payload is None:
            raise LocalProtocolError("this node is not registered: no peer record to withdraw")
        lifetime = self.config.register_lifetime
        return self.publish(self.id_bytes, payload, lifetime, now, Kind.PEER, wide=True)

    def put_shared(
        self, key: bytes, value: Value | None, context: object | None, now: float
    ) -> int:
        """Write a shared value. ``context`` is the clock a read returned
        (``vclock.to_wire`` form) and names what this write supersedes; None
        is a blind write that becomes a sibling of what is held. ``value``
        None deletes what the context saw (a tombstone), so it needs one."""
        if value is not None:
            self._check_value(value)
        elif context is None:
            raise LocalProtocolError(
                "a delete of a shared value names the context a read returned: a blind"
                " delete would supersede nothing"
            )
        return values.write_shared(self, key, value, context, now, wide=True)

    def put_signed(self, value: Value | None, seq: int, salt: bytes, now: float) -> int:
        """Sign version ``seq`` of our value under ``salt`` and store it on the
        k closest to SHA-1(tag + our public key + salt) (kadnode.core.signed);
        ``value`` None deletes it (a tombstone)."""
        if self.identity is None:
            raise LocalProtocolError("this node has no key to sign with")
        if value is not None:
            self._check_value(value)
        return values.write_signed(self, value, seq, salt, now, wide=True)

    def read(self, key: bytes, kind: Kind, now: float) -> int:
        """Quorum read of a peer record, shared or signed value, with read repair."""
        op = self._new_op()
        reads.Read(self, op, key, Kind(kind), now)
        return op

    def exists(self, key: bytes, now: float) -> int:
        """Whether ``key`` holds a live value, of any kind, with no value
        transferred beyond what that needs (kadnode.core.reads.Exists)."""
        op = self._new_op()
        reads.Exists(self, op, key, now)
        return op

    def find_successor(self, key: int, now: float) -> int:
        """Route Chord-style to the node that owns ``key`` on the ring."""
        op = self._new_op()
        operations.Route(self, key, now, self._completes(op))
        return op

    def leave(self, now: float) -> int:
        """Hand every held value to the k closest remaining nodes, then report."""
        op = self._new_op()
        values.Leave(self, op, now)
        return op

    def sync(self, peer: Contact, now: float) -> int:
        """One anti-entropy exchange with ``peer`` (it also runs by itself)."""
        op = self._new_op()
        sync.Sync(self, peer, now, self._completes(op))
        return op

    # ---- what the parts share -------------------------------------------------------

    def publish(
        self,
        key: bytes,
        value: object,
        ttl: float,
        now: float,
        kind: Kind = Kind.PLAIN,
        wide: bool = False,
    ) -> int:
        """Write ``value`` on the k closest to ``key``; returns the operation id.
        ``wide``: someone waits on it (kadnode.core.values.Publish)."""
        op = self._new_op()
        values.Publish(self, op, key, value, ttl, kind, now, wide)
        return op

    def register_now(self, now: float, wide: bool = False) -> int:
        return values.register(self, now, wide)

    def busy(self) -> bool:
        """As many operations running as the configuration allows."""
        return len(self._ops) >= self.config.max_operations

    def send_reply(self, data: bytes, addr: Addr) -> None:
        self._out.append((data, addr))

    def complete(self, op: int, result) -> None:
        self._ops.discard(op)
        self._events.append(OperationCompleted(op, result))

    def _completes(self, op: int) -> Callable[[object, float], None]:
        return lambda result, _at: self.complete(op, result)

    def _new_op(self) -> int:
        if self.busy():
            raise LocalProtocolError(
                f"{len(self._ops)} operations already in progress; try again shortly"
            )
        op = self._next_op
        self._next_op += 1
        self._ops.add(op)
        return op

    def _check_value(self, value: Value) -> None:
        codec.check_value(value)
        codec.check_value_size(value, self.config.max_value_bytes)

    def send_ping(
        self,
        addr: Addr,
        contact: Contact | None,
        on_reply: Callable[[PingReply, float], None],
        on_fail: Callable[[float], None],
        now: float,
    ) -> int:
        attempts = self.config.request_attempts
        return self.requests.send(addr, contact, Ping(self.id), on_reply, on_fail, now, attempts)

    def saw(self, contact: Contact, now: float, asked: bool = False) -> None:
        """A contact proved alive at its address: table, ring, maybe an eviction
        ping; and, when it ``asked`` us something (never on a reply to our own
        request), maybe the join handoff."""
        table = self.table
        node_id = contact.node_id
        addr = contact.addr
        held = table.holds(node_id, addr)  # then it still is after seen()
        if not held and node_id not in table:  # a newcomer here
            contact = contact_of(node_id, contact.host, contact.port, contact.native)
        refused = table.refused
        oldest = table.seen(contact, now)
        if table.refused != refused:  # the admission limits turned it away
            self.stats["contacts_refused"] += 1
            return
        if held or table.holds(node_id, addr):  # admitted: the ring takes only those
            self.offer_ring(contact)
        if asked:
            upkeep.welcome(self, contact, now)
        if oldest is None or oldest.node_id in self._evicting:
            return
        # Full bucket: ping its least recently seen contact before anyone is
        # evicted. A reply moves it to the tail; failures count toward its
        # drop, after which the newest replacement moves in.
        self._evicting.add(oldest.node_id)
        done = lambda *_: self._evicting.discard(oldest.node_id)  # noqa: E731
        self.send_ping(oldest.addr, oldest, done, done, now)

    def saw_pinged(self, reply: PingReply, addr: Addr, now: float) -> None:
        """A ping to a bare address answered: a contact, native if it sent a
        token; a client is no contact."""
        if reply.client:
            return
        native = reply.token is not None
        self.saw(contact_of(reply.node_id, addr[0], addr[1], native), now)
        if native:
            remember(self.table, reply.node_id, reply.token, now)

    def forget(self, node_id: int) -> None:
        """Drop a contact that said goodbye: from the table and the ring."""
        self.table.remove(node_id)
        if self.ring.remove(node_id):
            self._ring_version += 1

    def failed(self, contact: Contact | None) -> None:
        """One failed request: counts toward a table drop; leaves the ring at once
        (Chord: the next successor in the list takes over)."""
        if contact is None:
            return
        if self.table.failed(contact.node_id):
            self.stats["contacts_dropped"] += 1
        if self.ring.remove(contact.node_id):
            self._ring_version += 1

    def stabilize(self, now: float) -> None:
        upkeep.stabilize(self, now)

    # ---- the ring view (Chord) --------------------------------------------------------

    def offer_ring(self, contact: Contact) -> None:
        # Only kadnode nodes speak the ring RPCs; a bmuller node would
        # never answer them and would be dropped as failing.
        if contact.native and self.ring.offer(contact):
            self._ring_version += 1

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

    def route_step(self, key: int) -> tuple[bool, Contact | None]:
        """Chord's find_successor at this node: (done, node); node None is us."""
        succ = self.ring.successor
        if succ is None or self.ring.owns(key):
            return True, None
        if in_half_open(key, self.id, succ.node_id):
            return True, succ
        hop = self.fingers().closest_preceding(key)
        return (True, succ) if hop is None else (False, hop)

    # ---- datagrams in ---------------------------------------------------------------

    def _handle_response(self, response: Response, addr: Addr, now: float) -> None:
        matched = self.requests.match(response, addr, now)
        if matched is None:
            return
        pending, reply = matched
        contact = pending.contact
        if type(reply) is PingReply:
            if contact is not None and reply.node_id != contact.node_id:
                contact = None  # another node answers at that address: it is not this contact
            if reply.client:  # not reachable for others: in no table
                if self.table.holds(reply.node_id, addr):
                    self.forget(reply.node_id)
                contact = None
            if reply.token is not None:
                reach.observed(self, reply, addr, now)
        if contact is not None:
            token = getattr(reply, "token", None)
            native = getattr(reply, "native", False) or token is not None
            if native and not contact.native:
                contact = contact_of(contact.node_id, contact.host, contact.port, True)
            self.saw(contact, now)
            if token is not None:
                remember(self.table, contact.node_id, token, now)
        self.proof.prove(addr[0], now)  # it answered at the address we asked
        pending.on_reply(reply, now)
