"""The library API: one kadnode node inside an asyncio program. I/O.

    server = await Server.start("127.0.0.1", 0)
    await server.bootstrap([("127.0.0.1", 8467)])
    await server.put("my-id", "203.0.113.5:30303")
    result = await server.get("my-id")

Keys are hashed with SHA-1 as bmuller/kademlia does (``put("foo", ...)``
here and ``set("foo", ...)`` there name the same key).
"""

from __future__ import annotations

import random

from kadnode.config import Config
from kadnode.core import kinds, signed, vclock
from kadnode.core.events import (
    BootstrapResult,
    ExistsResult,
    GetResult,
    LeaveResult,
    LookupResult,
    PingResult,
    PutResult,
    ReadResult,
    RouteResult,
)
from kadnode.core.identity import Identity
from kadnode.core.ids import key_digest, to_bytes, user_key
from kadnode.core.messages import Addr, Kind, Value
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore
from kadnode.errors import Conflict, LocalProtocolError
from kadnode.shell import clock
from kadnode.shell.transport import UdpNode, open_udp_node


def storage_key(key: str | bytes) -> bytes:
    """SHA-1 of a user's key, refusing keys over MAX_KEY_BYTES with one line."""
    return key_digest(user_key(key))


# The OS's randomness, one object for every node (a Random instance carries
# 2.5 KB of unused generator state).
_OS_RANDOM = random.SystemRandom()


class Server:
    def __init__(self, udp: UdpNode):
        self.udp = udp
        self.core: NodeCore = udp.core

    @classmethod
    async def start(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        identity: Identity | None = None,
        node_id: int | None = None,
        store=None,
        config: Config | None = None,
        rng: random.Random | None = None,
    ) -> Server:
        """A node on ``host:port``. Its id derives from ``identity``'s key (a
        new key when none is given), so no node can claim an id it has no
        key for. ``node_id`` instead places a keyless node (tests, benchmarks):
        it cannot register."""
        # Message ids guard against off-path reply spoofing: unpredictable
        # by default; a seeded rng is for tests.
        rng = rng or _OS_RANDOM
        if node_id is None:
            identity = identity or Identity.generate(rng.randbytes)
            node_id = identity.node_id
        core = NodeCore(
            node_id,
            store if store is not None else MemoryStore(),
            config=config,
            rng=rng,
            now=clock.now(),
            identity=identity,
        )
        udp = await open_udp_node(core, host, port)
        if host not in ("0.0.0.0", "::"):
            core.addresses = ((udp.host, udp.port),)
        return cls(udp)

    @property
    def id(self) -> int:
        return self.core.id

    @property
    def address(self) -> Addr:
        return (self.udp.host, self.udp.port)

    async def bootstrap(self, addrs: list[Addr]) -> BootstrapResult:
        return await self.udp.run(lambda core, now: core.bootstrap(addrs, now))

    async def ping(self, addr: Addr) -> PingResult:
        return await self.udp.run(lambda core, now: core.ping(addr, now))

    async def lookup(self, target: int, all_k: bool = False) -> LookupResult:
        """The k nearest to ``target``, done once the node with that id or the 3
        nearest have answered (``result.unheard``: those only named by others),
        or once all k have."""
        return await self.udp.run(lambda core, now: core.lookup(target, now, all_k))

    async def put(self, key: str | bytes, value: Value, ttl: float | None = None) -> PutResult:
        """Store on the k closest; returns once the write quorum acknowledged.
        The writes still unanswered then (``result.pending``) go on while this
        node runs: closing it at once abandons them."""
        digest = storage_key(key)
        return await self.udp.run(lambda core, now: core.put(digest, value, now, ttl))

    async def get(self, key: str | bytes) -> GetResult:
        digest = storage_key(key)
        return await self.udp.run(lambda core, now: core.get(digest, now))

    async def find_successor(self, key: int) -> RouteResult:
        return await self.udp.run(lambda core, now: core.find_successor(key, now))

    async def leave(self) -> LeaveResult:
        """Deregister (a signed tombstone replaces our peer record), hand
        every held value to the k closest remaining nodes, say goodbye."""
        return await self.udp.run(lambda core, now: core.leave(now))

    async def register(self, addresses: list[Addr] | None = None) -> PutResult:
        """Sign and store this node's peer record (``store(my_id, my_address)``)."""
        if addresses is not None:
            self.core.addresses = tuple(addresses)
        return await self.udp.run(lambda core, now: core.register(now))

    async def deregister(self) -> PutResult:
        """Withdraw this node's peer record: a signed tombstone on the k closest
        to its id; ``find_peer`` says it left until :meth:`register`."""
        return await self.udp.run(lambda core, now: core.deregister(now))

    async def find_peer(self, node_id: int) -> ReadResult:
        """The verified peer record of ``node_id`` (quorum read, read repair);
        a record with no addresses (``deleted``) says its node left."""
        key = to_bytes(node_id)
        return await self.udp.run(lambda core, now: core.read(key, Kind.PEER, now))

    async def put_shared(self, key: str | bytes, value: Value, context: object = None) -> PutResult:
        digest = storage_key(key)
        return await self.udp.run(lambda core, now: core.put_shared(digest, value, context, now))

    async def exists(self, key: str | bytes) -> ExistsResult:
        """Whether ``key`` holds a live value of any kind (a tombstone: no),
        with no value transferred beyond what that needs (kn_has)."""
        digest = storage_key(key)
        return await self.udp.run(lambda core, now: core.exists(digest, now))

    async def delete_shared(self, key: str | bytes, context: object = None) -> PutResult:
        """Delete the shared value under ``key``: a tombstone superseding
        every version ``context`` (a read's, ``vclock.to_wire`` form) has
        seen; a write concurrent with it survives as a sibling. Without
        ``context``, a quorum read's just before, so the delete supersedes
        what that read found; LocalProtocolError when it found nothing."""
        digest = storage_key(key)
        if context is None:
            held = await self.udp.run(lambda core, now: core.read(digest, Kind.SHARED, now))
            siblings = kinds.siblings_from_wire(held.payload) if held.found else ()
            if not kinds.live(siblings):
                raise LocalProtocolError(f"nothing to delete: no shared value under {key!r}")
            context = vclock.to_wire(vclock.context(siblings))
        return await self.udp.run(lambda core, now: core.put_shared(digest, None, context, now))

    async def get_shared(self, key: str | bytes) -> ReadResult:
        digest = storage_key(key)
        return await self.udp.run(lambda core, now: core.read(digest, Kind.SHARED, now))

    async def put_signed(
        self, value: Value | None, salt: bytes = b"", cas: int | None = None
    ) -> tuple[PutResult, int]:
        """Store the next version of this node's value under ``salt`` (its
        target: SHA-1(tag + public key + salt)); returns the write and the version's
        seq, one past the newest a quorum read finds. ``cas``: write only if
        that newest is at seq ``cas``, 0 meaning none is held yet (this node's
        versions start at 1), checked by a read just before the write: two
        writers racing within one round trip can both pass, and the replicas
        keep the first of two equal seqs). ``value`` None deletes it: a signed
        tombstone that beats every older version wherever they meet."""
        if self.core.identity is None:
            raise LocalProtocolError("this node has no key to sign with")
        key = signed.target(self.core.identity.public_key, salt)
        held = await self.udp.run(lambda core, now: core.read(key, Kind.SIGNED, now))
        seq = signed.from_wire(held.payload).seq if held.found else None
        if cas is not None and cas != (0 if seq is None else seq):
            now_at = "no value is held" if seq is None else f"the value is at seq {seq}"
            raise Conflict(f"compare-and-swap failed: {now_at}, not {cas}")
        mine = self.core.store.get(key)
        if mine is not None and mine.kind == Kind.SIGNED:
            seq = max(seq or 0, signed.from_wire(mine.value).seq)
        next_seq = 1 if seq is None else seq + 1
        result = await self.udp.run(lambda core, now: core.put_signed(value, next_seq, salt, now))
        return result, next_seq

    async def get_signed(self, public_key: bytes, salt: bytes = b"") -> ReadResult:
        """The newest valid version of ``public_key``'s value under ``salt``
        (quorum read, read repair; forged and invalid versions are counted in
        ``rejected`` and never returned)."""
        key = signed.target(public_key, salt)
        return await self.udp.run(lambda core, now: core.read(key, Kind.SIGNED, now))

    def unpublish(self, key: str | bytes) -> bool:
        """Stop republishing a plain value this node published and drop its
        copy; False if it published none under ``key``. The replicas keep
        theirs until they expire: a plain value has no owner to prove a delete."""
        digest = storage_key(key)
        record = self.core.store.get(digest)
        if record is None or not record.origin or record.kind != Kind.PLAIN:
            return False
        self.core.store.delete(digest)
        return True

    def close(self) -> None:
        self.udp.close()
