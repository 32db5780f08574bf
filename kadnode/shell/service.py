"""What the control API calls: one method per operation, and its JSON views. I/O.

:class:`NodeService` answers each operation of :mod:`kadnode.shell.api`
from the running node (:class:`~kadnode.shell.library.Server`) and its store;
the daemon (:mod:`kadnode.shell.daemon`) adds its lifecycle on top. Replies are
plain JSON objects, validated against the operation's reply model on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from kadnode import __version__
from kadnode.config import MAX_CONTEXT_ENTRIES
from kadnode.core import kinds, records, signed, vclock
from kadnode.core.events import PutResult, ReadResult
from kadnode.core.ids import to_hex
from kadnode.core.messages import Contact, Kind, Value
from kadnode.errors import KadnodeError, LocalProtocolError, QuorumError
from kadnode.inputs import format_hostport
from kadnode.shell import clock, doctor
from kadnode.shell.dns import resolve_host
from kadnode.shell.library import Server, storage_key
from kadnode.shell.messages import QUESTIONS
from kadnode.shell.metrics import Metrics
from kadnode.shell.sqlite_store import SqliteStore
from kadnode.shell.watch import plain_version, shared_version, signed_version, versions

if TYPE_CHECKING:
    from kadnode.shell.daemon import DaemonOptions

log = logging.getLogger("kadnode")

# A graceful leave (SIGTERM, SIGINT, `kadnode leave`) waits this long at most
# for the nodes taking over its values to acknowledge them.
LEAVE_TIMEOUT = 10.0
NO_ADDRESS = (
    "no address to advertise: the node listens on every interface and this host has"
    " none but loopback and link-local ones; restart it with --advertise HOST:PORT"
)


def contact_json(contact: Contact) -> dict[str, Any]:
    return {"id": to_hex(contact.node_id), "host": contact.host, "port": contact.port}


def reach_json(core) -> dict[str, Any]:
    """What the network sees of the node (kadnode.core.reach)."""
    seen = core.reach
    offset = seen.clock_offset()
    votes = [a for a, _ in seen.votes.values()]
    return {
        "observed": None if seen.address is None else address_json(seen.address),
        "observers": votes.count(seen.address) if seen.address else 0,
        "votes": len(votes),
        "seen": [address_json(a) for a in dict.fromkeys(votes)],
        "local": sorted(seen.local_hosts),
        "nat": seen.nat,
        "reachability": seen.status,
        "mode": "client" if seen.client else "server",
        "dialed_from": seen.dialed_from,
        "advertised": [address_json(a) for a in core.addresses],
        "clock_offset_s": None if offset is None else round(offset, 1),
        "clock_samples": len(seen.offsets),
    }


def address_json(addr: tuple[str, int]) -> dict[str, Any]:
    return {"host": addr[0], "port": addr[1]}


def record_json(record: records.PeerRecord) -> dict[str, Any]:
    return {
        "id": to_hex(record.node_id),
        "addresses": [{"host": h, "port": p} for h, p in record.addresses],
        "seq": record.seq,
        "expires": record.expires,
        "public_key": record.public_key.hex(),
        **(
            {"relays": [{"id": to_hex(i), "host": h, "port": p} for i, h, p in record.relays]}
            if record.relays
            else {}
        ),
    }


def clock_json(clock: vclock.VectorClock) -> dict[str, int]:
    return {to_hex(writer): counter for writer, counter in clock.entries}


def context_json(clock: vclock.VectorClock) -> list[list]:
    """A clock as JSON: ``[[writer id hex, counter], ...]`` (what a client passes back)."""
    return [[to_hex(writer), counter] for writer, counter in clock.entries]


def context_wire(context: object) -> list:
    """A client's context back in wire form; one clear line when it is not one."""
    try:
        wire = [[bytes.fromhex(w), c] for w, c in context]  # type: ignore[union-attr]
        vclock.from_wire(wire, MAX_CONTEXT_ENTRIES)
    except (TypeError, ValueError, KadnodeError):
        raise LocalProtocolError("context is not [[40-hex writer id, counter], ...]") from None
    return wire


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading), to the microsecond."""
    return round((time.perf_counter() - started) * 1000, 3)


def put_json(key: str, result: PutResult, started: float) -> dict[str, Any]:
    """A write's reply; a write below its quorum is an error, in one line."""
    if not result.quorum:
        why = f" (refused: {'; '.join(result.refused)})" if result.refused else ""
        mine = "this one included" if result.local else "this one not among them"
        error = QuorumError(
            f"only {result.acks} of the {result.replica_set} closest nodes ({mine}) hold it;"
            f" the write quorum is {result.needed}{why}; the value stays where it was"
            " acknowledged, and republishing retries"
        )
        log.warning("write of %r failed: %s", key, error)
        raise error
    return {
        "key": key,
        "stored": result.acks,
        "pending": result.pending,
        "asked": result.asked,
        "needed": result.needed,
        "local": result.local,
        "only_copy": result.only_copy,
        "refused": list(result.refused),
        "replicas": [contact_json(c) for c in result.replicas],
        "elapsed_ms": elapsed_ms(started),
    }


def _held_as(key: str, kind: Kind) -> str:
    """One line for a read of the wrong kind: what the key holds, how to read it."""
    how = {
        Kind.PLAIN: f"kadnode get {key}",
        Kind.SHARED: f"kadnode get {key} --shared",
        Kind.PEER: "kadnode find-peer <id>",
        Kind.SIGNED: "kadnode get --signed <public key> [--salt S]",
    }[kind]
    return f"key {key!r} holds a {kind.label} value; read it with `{how}`"


def read_json(result: ReadResult, started: float) -> dict[str, Any]:
    return {
        "replicas": result.replica_set,
        "answered": result.answered,
        "agreeing": result.agreeing,
        "repaired": result.repaired,
        "rejected": result.rejected,
        "needed": result.needed,
        "quorum": result.quorum,
        "elapsed_ms": elapsed_ms(started),
    }


def value_json(value: Value | None) -> Any:
    return value.hex() if isinstance(value, bytes) else value


R = TypeVar("R")


def timed(operation: str):
    """The method's time, failed calls too, in the latency histogram of
    ``operation`` (kadnode.shell.metrics.OPERATIONS)."""

    def wrap(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(method)
        async def run(self: NodeService, *args: Any) -> R:
            t = time.perf_counter()
            try:
                return await method(self, *args)
            finally:
                self.meters.observe(operation, time.perf_counter() - t)

        return run

    return wrap


class NodeService:
    """What the control API calls: one method per operation, answering in JSON."""

    def __init__(
        self,
        server: Server,
        store: SqliteStore,
        options: DaemonOptions,
        stop: asyncio.Event,
        tasks: asyncio.TaskGroup,
    ):
        self.server = server
        self.store = store
        self.options = options
        self.stop = stop
        # The daemon's TaskGroup: its background work and the hand-over run here.
        self.tasks = tasks
        self.started = clock.now()
        self._leaving: asyncio.Task[dict[str, Any]] | None = None
        self.stats: Counter[str] = Counter()  # the service's own counters
        self.watching = 0  # watch streams open
        self.meters = Metrics(self.counters, self.gauges)

    async def info(self) -> dict[str, Any]:
        core = self.server.core
        host, port = self.server.address
        return {
            "id": to_hex(core.id),
            "host": host,
            "port": port,
            "version": __version__,
            "peers": len(core.table),
            "values": len(self.store),
            "uptime_s": round(clock.now() - self.started, 3),
            "clock_step_s": round(clock.wall_step(), 3),
            "data_dir": str(self.options.data_dir),
            "network_id": core.config.network_id,
            "reach": reach_json(core),
            "stats": self.counters(),
        }

    async def seed_list(self) -> tuple[list[tuple[str, int]], list[str]]:
        """The seeds the operator configured, resolved, and one line per one
        that did not resolve (the daemon's; none here)."""
        return [], []

    async def doctor(self) -> dict[str, Any]:
        """Why this node may be lonely: each configured seed pinged now, and
        what the node knows of its address, reachability and clock, each
        judged with what to do about it (kadnode.shell.doctor)."""
        found, errors = await self.seed_list()
        pings = await asyncio.gather(*(self.ping(h, p) for h, p in found), return_exceptions=True)
        seeds = []
        for (host, port), got in zip(found, pings, strict=True):
            entry: dict[str, Any] = {"address": format_hostport(host, port)}
            if isinstance(got, KadnodeError):
                seeds.append({**entry, "answered": False, "error": str(got)})
            elif isinstance(got, BaseException):
                raise got
            else:
                seeds.append({**entry, "answered": got["alive"], "rtt_ms": got["rtt_ms"]})
        core = self.server.core
        facts = {
            "seeds": seeds,
            "seed_errors": errors,
            "peers": len(core.table),
            "port": self.server.address[1],
            "uptime_s": round(clock.now() - self.started, 3),
            "unsolicited_in": core.stats["unsolicited_in"],
            "reach": reach_json(core),
        }
        return {**facts, "checks": doctor.diagnose(facts)}

    def counters(self) -> dict[str, int]:
        """The node's counters, the store's (``corrupt_records``) and the service's."""
        return {**self.server.core.stats, **self.store.stats, **self.stats}

    def gauges(self) -> dict[str, float]:
        """What the node holds now, for /metrics (kadnode.shell.metrics.GAUGES)."""
        core = self.server.core
        return {
            "peers": len(core.table),
            "values": len(self.store),
            "stored_bytes": self.store.usage.bytes,
            "pending_requests": len(core.requests),
            "watch_streams": self.watching,
        }

    @timed("lookup")
    async def lookup(self, target: int) -> dict[str, Any]:
        t = time.perf_counter()
        result, found = await asyncio.gather(
            self.server.lookup(target), self.server.find_peer(target)
        )
        peer = result.peer
        record = records.from_wire(found.payload) if found.found else None
        if record is not None and record.deleted:  # it left: no address to give
            record = None
        if record is not None:  # a verified, signed address beats a contact's
            host, port = record.addresses[0]
            peer = Contact(target, host, port)
        if target == self.server.id:
            host, port = self.server.address
            peer = Contact(target, host, port)
        return {
            "target": to_hex(target),
            "found": peer is not None,
            "peer": contact_json(peer) if peer else None,
            "closest": [
                {**contact_json(c), "answered": c.node_id not in result.unheard}
                for c in result.closest
            ],
            "record": record_json(record) if record is not None else None,
            "queried": result.queried,
            "elapsed_ms": elapsed_ms(t),
        }

    @timed("put")
    async def put(self, key: str, value: str, ttl: float | None = None) -> dict[str, Any]:
        t = time.perf_counter()
        return put_json(key, await self.server.put(key, value, ttl), t)

    @timed("get")
    async def get(self, key: str) -> dict[str, Any]:
        t = time.perf_counter()
        result = await self.server.get(key)
        if result.other_kind is not None:
            raise LocalProtocolError(_held_as(key, result.other_kind))
        return {
            "key": key,
            "found": result.found,
            "value": value_json(result.value),
            "source": (contact_json(result.source) if result.source else "local")
            if result.found
            else None,
            "elapsed_ms": elapsed_ms(t),
        }

    async def peers(self) -> dict[str, Any]:
        now = clock.now()
        entries = sorted(self.server.core.table.entries(), key=lambda e: -e.last_seen)
        return {
            "count": len(entries),
            "peers": [
                {
                    **contact_json(e.contact),
                    "failures": e.failures,
                    "last_seen_s": round(now - e.last_seen, 3),
                }
                for e in entries
            ],
        }

    async def ping(self, host: str, port: int) -> dict[str, Any]:
        address = await resolve_host(host)
        own_host, own_port = self.server.address
        if port == own_port and address in (own_host, "127.0.0.1", "::1"):
            # Ourselves: a datagram to our own socket would claim our own id.
            return {
                "host": host,
                "port": port,
                "alive": True,
                "id": to_hex(self.server.id),
                "rtt_ms": 0.0,
                "self": True,
            }
        result = await self.server.ping((address, port))
        return {
            "host": host,
            "port": port,
            "alive": result.node_id is not None,
            "id": to_hex(result.node_id) if result.node_id is not None else None,
            "rtt_ms": round(result.rtt * 1000, 3) if result.rtt is not None else None,
        }

    async def register_self(self) -> PutResult:
        """Sign and store this node's peer record for the addresses it advertises."""
        if not self.server.core.addresses:
            raise LocalProtocolError(NO_ADDRESS)
        return await self.server.register()

    async def register(self) -> dict[str, Any]:
        t = time.perf_counter()
        result = await self.register_self()
        own = self.server.core.store.get(self.server.core.id_bytes)
        out = put_json(to_hex(self.server.id), result, t)
        out["record"] = record_json(records.from_wire(own.value)) if own else None
        return out

    async def deregister(self) -> dict[str, Any]:
        t = time.perf_counter()
        result = await self.server.deregister()
        own = self.server.core.store.get(self.server.core.id_bytes)
        out = put_json(to_hex(self.server.id), result, t)
        out["record"] = record_json(records.from_wire(own.value)) if own else None
        return out

    @timed("find_peer")
    async def find_peer(self, target: int) -> dict[str, Any]:
        t = time.perf_counter()
        found = await self.server.find_peer(target)
        record = records.from_wire(found.payload) if found.found else None
        return {
            "id": to_hex(target),
            "found": record is not None and not record.deleted,
            "left": record is not None and record.deleted,
            "record": record_json(record) if record is not None else None,
            **read_json(found, t),
        }

    @timed("put")
    async def put_signed(self, value: str | None, salt: str, cas: int | None) -> dict[str, Any]:
        t = time.perf_counter()
        raw_salt = salt.encode()
        result, seq = await self.server.put_signed(value, raw_salt, cas)
        public_key = self.server.core.identity.public_key
        out = put_json(signed.target(public_key, raw_salt).hex(), result, t)
        return {**out, "public_key": public_key.hex(), "salt": salt, "seq": seq}

    async def delete_signed(self, salt: str, cas: int | None) -> dict[str, Any]:
        return await self.put_signed(None, salt, cas)

    async def delete(self, key: str) -> dict[str, Any]:
        if not self.server.unpublish(key):
            raise LocalProtocolError(
                f"this node did not publish a plain value under {key!r}: a plain value has no"
                " owner, so no node can delete it from the others; they drop it when it expires"
            )
        hours = self.server.core.config.expire_after / 3600
        return {
            "key": key,
            "dropped": True,
            "replicas_keep_it_h": hours,
        }

    @timed("get")
    async def get_signed(self, public_key: str, salt: str) -> dict[str, Any]:
        t = time.perf_counter()
        owner = bytes.fromhex(public_key)
        found = await self.server.get_signed(owner, salt.encode())
        if found.other_kind is not None:
            raise LocalProtocolError(_held_as(found.key.hex(), found.other_kind))
        version = signed.from_wire(found.payload) if found.found else None
        return {
            "key": found.key.hex(),
            "public_key": public_key,
            "salt": salt,
            "found": version is not None and not version.deleted,
            "deleted": version is not None and version.deleted,
            "value": value_json(version.value) if version is not None else None,
            "seq": version.seq if version is not None else None,
            **read_json(found, t),
        }

    @timed("put")
    async def put_shared(self, key: str, value: str, context: list | None) -> dict[str, Any]:
        t = time.perf_counter()
        wire = context_wire(context) if context is not None else None
        return put_json(key, await self.server.put_shared(key, value, wire), t)

    @timed("put")
    async def delete_shared(self, key: str, context: list | None) -> dict[str, Any]:
        t = time.perf_counter()
        wire = context_wire(context) if context is not None else None
        return put_json(key, await self.server.delete_shared(key, wire), t)

    @timed("get")
    async def get_shared(self, key: str) -> dict[str, Any]:
        t = time.perf_counter()
        found = await self.server.get_shared(key)
        if found.other_kind is not None:
            raise LocalProtocolError(_held_as(key, found.other_kind))
        siblings = kinds.siblings_from_wire(found.payload) if found.found else ()
        values = kinds.live(siblings)
        return {
            "key": key,
            "found": bool(values),
            "deleted": bool(siblings) and not values,
            "siblings": [
                {"value": value_json(s.value), "clock": clock_json(s.clock)} for s in values
            ],
            # Tombstones' clocks included: a write naming it supersedes them too.
            "context": context_json(vclock.context(siblings)) if siblings else None,
            **read_json(found, t),
        }

    async def exists(self, key: str) -> dict[str, Any]:
        t = time.perf_counter()
        result = await self.server.exists(key)
        return {
            "key": key,
            "exists": result.exists,
            "kind": result.kind.label if result.kind is not None else None,
            "deleted": result.deleted,
            "holding": result.holding,
            "queried": result.queried,
            "elapsed_ms": elapsed_ms(t),
        }

    def watch(self, key: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._watch(partial(self.get, key), plain_version)

    def watch_shared(self, key: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._watch(partial(self.get_shared, key), shared_version)

    def watch_signed(self, public_key: str, salt: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._watch(partial(self.get_signed, public_key, salt), signed_version)

    async def _watch(
        self,
        read: Callable[[], Awaitable[dict[str, Any]]],
        version: Callable[[dict[str, Any]], Hashable],
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The reply of ``read`` now, then each new version (kadnode.shell.watch),
        None after a read that brought nothing new; until the daemon stops."""

        async def counted() -> dict[str, Any]:
            self.stats["watch_reads"] += 1
            return await read()

        self.watching += 1
        try:
            async with contextlib.aclosing(versions(counted, version, self.stop)) as replies:
                async for reply in replies:
                    yield reply
        finally:
            self.watching -= 1

    async def owner(self, key: str) -> dict[str, Any]:
        t = time.perf_counter()
        target = int.from_bytes(storage_key(key), "big")
        route, lookup = await asyncio.gather(
            self.server.find_successor(target), self.server.lookup(target, all_k=True)
        )
        successor = (route.successor or self.self_contact()) if route.ok else None
        return {
            "key": key,
            "key_id": to_hex(target),
            "successor": contact_json(successor) if successor else None,
            "successor_hops": route.hops,
            "closest": [contact_json(c) for c in self.with_self(target, lookup.closest)],
            "questions": QUESTIONS,
            "elapsed_ms": elapsed_ms(t),
        }

    async def ring(self) -> dict[str, Any]:
        core = self.server.core
        pred = core.ring.predecessor
        return {
            "self": contact_json(self.self_contact()),
            "predecessor": contact_json(pred) if pred else None,
            "successors": [contact_json(c) for c in core.ring.successors],
            "fingers": [{"index": i, **contact_json(c)} for i, c in core.fingers().table()],
        }

    async def leave(self) -> dict[str, Any]:
        """Hand every held value on (once, however often asked), then stop.

        The hand-over is a task of the daemon's TaskGroup, so a caller that
        goes away (an HTTP client hanging up) neither cancels nor loses it.
        """
        if self._leaving is None:
            self._leaving = self.tasks.create_task(self._hand_over())
        try:
            return await asyncio.shield(self._leaving)
        finally:
            self.stop.set()

    async def _hand_over(self) -> dict[str, Any]:
        t = time.perf_counter()
        try:
            result = await asyncio.wait_for(self.server.leave(), LEAVE_TIMEOUT)
            left: dict[str, Any] = {
                "keys": result.keys,
                "stores": result.stores,
                "acks": result.acks,
                "goodbyes": result.goodbyes,
            }
        except TimeoutError:
            left = {"keys": None, "stores": None, "acks": None, "goodbyes": None, "timed_out": True}
        left["elapsed_ms"] = elapsed_ms(t)
        if left.get("timed_out"):
            log.warning(
                "left the network: the hand-over timed out after %.0f ms", left["elapsed_ms"]
            )
        else:
            log.info(
                "left the network: %d keys handed on in %d stores (%d acknowledged),"
                " %d goodbyes, in %.0f ms",
                *(left[k] for k in ("keys", "stores", "acks", "goodbyes", "elapsed_ms")),
            )
        return left

    def self_contact(self) -> Contact:
        host, port = self.server.address
        return Contact(self.server.id, host, port)

    def with_self(self, target: int, closest: list[Contact]) -> list[Contact]:
        """The k closest to ``target`` counting this node too (it stores values)."""
        k = self.server.core.config.k
        return sorted([*closest, self.self_contact()], key=lambda c: c.node_id ^ target)[:k]

    async def fault(self, delay_ms: float, jitter_ms: float) -> dict[str, Any]:
        """Chaos testing: delay every datagram this node sends (0 clears)."""
        if not self.options.allow_fault_injection:
            raise LocalProtocolError(
                "fault injection is off: start the daemon with --allow-fault-injection"
            )
        if not (0 <= jitter_ms <= delay_ms <= 60_000):
            raise LocalProtocolError("need 0 <= jitter_ms <= delay_ms <= 60000")
        udp = self.server.udp
        udp.fault_delay = (delay_ms / 1000, jitter_ms / 1000) if delay_ms else None
        log.warning("fault injection: send delay %s ms +- %s ms", delay_ms, jitter_ms)
        return {
            "delay_ms": delay_ms,
            "jitter_ms": jitter_ms,
            "mechanism": "kadnode transport send delay (--allow-fault-injection)",
        }

    async def metrics(self) -> str:
        return self.meters.render()
