"""Wire compatibility with bmuller/kademlia 2.2.3 and rpcudp 5.0.1, on 127.0.0.1.

Real nodes of both implementations in one event loop: a mixed network that
stores and finds values across implementations, rpcudp's own client as the
proof of the wire format of the four base RPCs, the native dialect a kadnode
requester gets instead, and malformed requests that must be dropped without a
reply. Every test runs under :func:`asyncio.timeout` and stops what it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from kademlia.network import Server as KademliaServer
from kademlia.node import Node as KademliaNode
from kademlia.protocol import KademliaProtocol
from rpcudp.protocol import RPCProtocol

from kadnode.config import LOCAL_TEST
from kadnode.core import codec
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.ids import ID_BYTES, to_bytes
from kadnode.core.messages import Addr, FindNode
from kadnode.shell.library import Server

HOST = "127.0.0.1"
# Each test finishes in a few seconds; this bounds a hang.
TEST_BUDGET = 20.0
# rpcudp's own default is 5 s; kadnode answers on loopback in milliseconds.
RPCUDP_TIMEOUT = 2.0
# Malformed requests must get no reply: wait this long for one that never comes.
SILENCE_WINDOW = 0.5
# What a stock node serves (kademlia/protocol.py, rpc_stun aside).
BASE_RPCS = {"ping", "store", "find_node", "find_value"}


def sha1(key: str) -> bytes:
    return hashlib.sha1(key.encode("utf-8")).digest()


def random_id() -> bytes:
    return os.urandom(ID_BYTES)


class RecordingProtocol(KademliaProtocol):
    """bmuller's protocol, unchanged, counting the methods it is asked."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.asked: Counter[str] = Counter()

    async def _accept_request(self, msg_id, data, address):
        if isinstance(data, list) and len(data) == 2 and isinstance(data[0], str):
            self.asked[data[0]] += 1
        return await super()._accept_request(msg_id, data, address)


class StockServer(KademliaServer):
    protocol_class = RecordingProtocol


def bmuller_address(server: KademliaServer) -> Addr:
    host, port = server.transport.get_extra_info("sockname")[:2]
    return (host, port)


def bmuller_ids(server: KademliaServer) -> set[int]:
    return {n.long_id for b in server.protocol.router.buckets for n in b.get_nodes()}


def bmuller_blind_to(server: KademliaServer, key: bytes) -> bool:
    """True when the bmuller node cannot start a lookup for ``key`` at all.

    kademlia 2.2.3's ``TableTraverser`` (routing.py) stops at the first empty
    left bucket when no bucket lies to the right, so ``find_neighbors`` can
    return ``[]`` from a non-empty table; ``get`` then returns None and
    ``set`` False without sending anything. A bmuller bug, not a wire one.
    """
    return not server.protocol.router.find_neighbors(KademliaNode(key))


def kadnode_ids(server: Server) -> set[int]:
    return {c.node_id for c in server.core.table.contacts()}


async def quiesce(bmullers: list[KademliaServer], kadnodes: list[Server]) -> None:
    """Wait (bounded) until no request of either implementation is in flight.

    bmuller/kademlia fires stores and pings in bare tasks; stopping while they
    wait would leave them pending when the loop closes.
    """
    for _ in range(100):
        busy = any(b.protocol._outstanding for b in bmullers)
        busy = busy or any(len(k.core.requests) for k in kadnodes)
        if not busy:
            return
        await asyncio.sleep(0.05)


class PingingRPC(RPCProtocol):
    """rpcudp's own RPC endpoint, answering ``ping`` as any node does: a node
    takes writes only from an address that answered its ping back."""

    def __init__(self, wait_timeout: float):
        super().__init__(wait_timeout=wait_timeout)
        self.node_id = random_id()

    def rpc_ping(self, _sender, _node_id):
        return self.node_id


@asynccontextmanager
async def rpcudp_client(wait_timeout: float = RPCUDP_TIMEOUT) -> AsyncIterator[PingingRPC]:
    """rpcudp's own RPC endpoint: its calls are the bmuller wire format."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: PingingRPC(wait_timeout), local_addr=(HOST, 0)
    )
    try:
        yield protocol
    finally:
        for future, timer in protocol._outstanding.values():
            timer.cancel()
            future.cancel()
        transport.close()


async def proven(node: Server, rpc: PingingRPC) -> None:
    """Ping the node as a stock node does; its ping back to our address
    proves it and puts us in its table (bounded wait)."""
    ok, reply = await rpc.ping(node.address, rpc.node_id)
    assert ok and reply == to_bytes(node.id)
    addr = rpc.transport.get_extra_info("sockname")[:2]
    for _ in range(100):
        if node.core.table.holds(int.from_bytes(rpc.node_id, "big"), addr):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the node never took the client in after its ping back")


class RawPeer(asyncio.DatagramProtocol):
    """Sends hand-built request datagrams and keeps the replies by message id."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[bytes, asyncio.Future] = {}

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        reply = codec.decode(data, codec.HEADER + 65536)
        assert isinstance(reply, codec.Response)
        future = self.waiting.pop(reply.msg_id, None)
        if future is not None and not future.done():
            future.set_result(reply.body)

    async def call(self, addr: Addr, msg_id: bytes, method: str, args: list) -> object:
        future = asyncio.get_running_loop().create_future()
        self.waiting[msg_id] = future
        assert self.transport is not None
        self.transport.sendto(codec.encode_request(msg_id, method, args), addr)
        async with asyncio.timeout(RPCUDP_TIMEOUT):
            return await future


@asynccontextmanager
async def raw_peer() -> AsyncIterator[RawPeer]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(RawPeer, local_addr=(HOST, 0))
    try:
        yield protocol
    finally:
        transport.close()


def native_id() -> bytes:
    return NATIVE_MAGIC + os.urandom(20 - len(NATIVE_MAGIC))


def plain_id() -> bytes:
    """A random message id, as rpcudp makes them, that is not kadnode's."""
    while (msg_id := os.urandom(20)).startswith(NATIVE_MAGIC):
        pass
    return msg_id


@asynccontextmanager
async def kadnode_network(count: int) -> AsyncIterator[list[Server]]:
    """``count`` kadnode nodes, each bootstrapped from the first."""
    nodes = [await Server.start(HOST, 0, config=LOCAL_TEST) for _ in range(count)]
    try:
        for node in nodes[1:]:
            result = await node.bootstrap([nodes[0].address])
            assert result.answered == 1
        yield nodes
    finally:
        for node in nodes:
            node.close()


# ---- 1. a mixed network ----------------------------------------------------


@pytest.mark.parametrize(
    "k",
    [
        pytest.param(20, id="k20-every-node-stores"),
        # With k=4 most nodes do not hold the value, so gets cross
        # implementations through find_value rather than hitting their store.
        pytest.param(4, id="k4-values-found-remotely"),
    ],
)
async def test_mixed_network_stores_and_finds_across_implementations(k: int) -> None:
    bmullers = [StockServer(ksize=k) for _ in range(6)]
    kadnodes: list[Server] = []
    try:
        async with asyncio.timeout(TEST_BUDGET):
            for b in bmullers:
                await b.listen(0, interface=HOST)
            kadnodes = [
                await Server.start(HOST, 0, config=replace(LOCAL_TEST, k=k)) for _ in range(6)
            ]
            kad_seed = kadnodes[0].address
            bm_seed = bmuller_address(bmullers[0])

            # bmuller nodes join through a kadnode node, kadnode nodes through
            # a bmuller node, interleaved so both seeds learn everyone.
            for b, kn in zip(bmullers, kadnodes, strict=True):
                found = await b.bootstrap([kad_seed])
                assert found, "a bmuller node found nobody through a kadnode seed"
                joined = await kn.bootstrap([bm_seed])
                assert joined.answered == 1

            all_bm = {int.from_bytes(b.node.id, "big") for b in bmullers}
            all_kad = {kn.id for kn in kadnodes}
            for kn in kadnodes:
                assert kadnode_ids(kn) & all_bm, "a kadnode table holds no bmuller node"
                assert kadnode_ids(kn) <= all_bm | all_kad
            for b in bmullers:
                assert bmuller_ids(b) & all_kad, "a bmuller table holds no kadnode node"
                assert bmuller_ids(b) <= all_bm | all_kad

            # bmuller set -> every kadnode get.
            key_b = sha1("set-by-bmuller")
            setter = next(b for b in bmullers if not bmuller_blind_to(b, key_b))
            assert await setter.set("set-by-bmuller", "value from bmuller") is True
            await quiesce(bmullers, kadnodes)
            local = [kn.core.store.get(key_b) is not None for kn in kadnodes]
            results = await asyncio.gather(*(kn.get("set-by-bmuller") for kn in kadnodes))
            for result in results:
                assert result.found
                assert result.value == "value from bmuller"
                assert result.key == key_b
            for held, result in zip(local, results, strict=True):
                if not held:  # found through another node's find_value reply
                    assert result.source is not None
            if k < len(bmullers):
                assert not all(local), "every kadnode held the value: find_value untested"

            # kadnode put -> every bmuller get.
            stored = await kadnodes[3].put("put-by-kadnode", "value from kadnode")
            key_k = sha1("put-by-kadnode")
            # Stored on exactly the k nodes nearest the key, whichever kind.
            others = (all_bm | all_kad) - {kadnodes[3].id}
            nearest = sorted(others, key=lambda i: i ^ int.from_bytes(key_k, "big"))[:k]
            # (a put returns once W acknowledged: the rest are pending)
            assert {c.node_id for c in stored.replicas} <= set(nearest)
            # Those in the replica set count, and the writer's own copy when it is one.
            in_set = sorted(
                [*others, kadnodes[3].id], key=lambda i: i ^ int.from_bytes(key_k, "big")
            )
            in_reach = len(set(nearest) & set(in_set[:k])) + stored.local
            assert stored.acks + stored.pending == in_reach
            assert stored.local == (kadnodes[3].id in in_set[:k])
            await quiesce(bmullers, kadnodes)
            holders = [b for b in bmullers if b.storage.get(key_k) is not None]
            seekers = [b for b in bmullers if b not in holders and not bmuller_blind_to(b, key_k)]
            values = await asyncio.gather(*(b.get("put-by-kadnode") for b in holders + seekers))
            assert values == ["value from kadnode"] * (len(holders) + len(seekers))
            if k < len(kadnodes):
                assert seekers, "no bmuller getter had to use find_value"
            await quiesce(bmullers, kadnodes)

            # kadnode spoke to the stock nodes only in their four RPCs: any
            # other name goes unanswered, times out and counts as a failure.
            asked: Counter[str] = Counter()
            for b in bmullers:
                asked.update(b.protocol.asked)
            assert set(asked) <= BASE_RPCS, f"stock nodes were sent {dict(asked)}"
            assert asked["ping"] and asked["find_node"] and asked["store"]
    finally:
        for b in bmullers:
            b.stop()
        for kn in kadnodes:
            kn.close()


async def test_a_kadnode_and_a_bmuller_node_serve_each_other_all_four_rpcs() -> None:
    """Two nodes, so every request has one possible destination."""
    stock = StockServer()
    node: Server | None = None
    try:
        async with asyncio.timeout(TEST_BUDGET):
            await stock.listen(0, interface=HOST)
            node = await Server.start(HOST, 0, config=LOCAL_TEST)
            stock_addr = bmuller_address(stock)
            stock_id = int.from_bytes(stock.node.id, "big")

            # kadnode as the client: ping, find_node, store, find_value.
            joined = await node.bootstrap([stock_addr])
            assert joined.answered == 1
            assert not node.core.table.get(stock_id).contact.native
            assert (await node.ping(stock_addr)).node_id == stock_id
            assert (await node.lookup(stock_id)).peer.addr == stock_addr
            put = await node.put("put-by-kadnode", "v1")
            assert (put.acks, put.local) == (2, True)  # the stock node's copy and its own
            assert put.replicas[0].node_id == stock_id
            assert stock.storage.get(sha1("put-by-kadnode")) == "v1"
            stock.storage[sha1("only-on-bmuller")] = "v2"
            got = await node.get("only-on-bmuller")
            assert (got.found, got.value) == (True, "v2")
            assert got.source.node_id == stock_id
            missing = await node.get("stored nowhere")
            assert (missing.found, missing.value) == (False, None)
            assert stock.protocol.asked.keys() == BASE_RPCS

            # bmuller as the client of the same four.
            found = await stock.bootstrap([node.address])
            assert [n.long_id for n in found] == [node.id]
            assert await stock.set("set-by-bmuller", "v3") is True
            assert node.core.store.get(sha1("set-by-bmuller")).value == "v3"
            ok, stored = await stock.protocol.store(node.address, stock.node.id, sha1("k"), "v4")
            assert (ok, stored) == (True, True)
            assert await stock.get("k") == "v4"  # through find_value
            assert await stock.get("stored nowhere") is None
            await quiesce([stock], [node])
    finally:
        stock.stop()
        if node is not None:
            node.close()


# ---- 2. rpcudp's own client against a kadnode node --------------------------


async def test_rpcudp_client_speaks_the_four_base_rpcs() -> None:
    async with asyncio.timeout(TEST_BUDGET), kadnode_network(3) as nodes, rpcudp_client() as rpc:
        node = nodes[0]
        my_id = rpc.node_id  # a stock node speaks under its own id throughout
        await proven(node, rpc)
        assert my_id in {to_bytes(c.node_id) for c in node.core.table.contacts()}

        key = sha1("rpcudp key")
        assert await rpc.store(node.address, my_id, key, "v") == (True, True)
        assert node.core.store.get(key).value == "v"

        ok, reply = await rpc.find_value(node.address, my_id, key)
        assert ok
        assert reply == {"value": "v"}  # bmuller's shape: no ttl, no nodes

        target = random_id()
        ok, reply = await rpc.find_node(node.address, my_id, target)
        assert ok
        assert isinstance(reply, list)
        assert all(isinstance(entry, list) and len(entry) == 3 for entry in reply)
        # The other two nodes, and never the requester itself.
        expected = sorted([to_bytes(n.id), HOST, n.address[1]] for n in nodes[1:])
        assert sorted(reply) == expected

        # find_value for a key nobody stored falls back to find_node's list.
        ok, reply = await rpc.find_value(node.address, my_id, sha1("nobody stored this"))
        assert ok
        assert sorted(reply) == expected


@pytest.mark.parametrize(
    "value",
    [b"\x00\xffbytes", "str \u00e9", 0, -(2**63), 2**64 - 1, 3.25, True, False],
    ids=repr,
)
async def test_rpcudp_store_and_find_value_keep_each_value_type(value) -> None:
    """kademlia.utils.check_dht_value_type allows int, float, bool, str, bytes."""
    async with asyncio.timeout(TEST_BUDGET), kadnode_network(1) as nodes, rpcudp_client() as rpc:
        node, my_id, key = nodes[0], rpc.node_id, random_id()
        await proven(node, rpc)
        assert await rpc.store(node.address, my_id, key, value) == (True, True)
        ok, reply = await rpc.find_value(node.address, my_id, key)
        assert ok
        assert reply == {"value": value}
        assert type(reply["value"]) is type(value)


# ---- 3. the native dialect ----------------------------------------------------


async def test_native_requester_gets_native_replies_and_plain_requester_bmullers() -> None:
    async with (
        asyncio.timeout(TEST_BUDGET),
        kadnode_network(3) as nodes,
        rpcudp_client() as rpc,
        raw_peer() as raw,
    ):
        node = nodes[0]
        # A plain rpcudp contact in the table, next to the two kadnode peers.
        rpc_id = rpc.node_id
        await proven(node, rpc)  # a stock node: in the table once it answered our ping
        rpc_port = rpc.transport.get_extra_info("sockname")[1]

        my_id, target = random_id(), random_id()
        native = await raw.call(node.address, native_id(), "find_node", [my_id, target])
        assert isinstance(native, dict)
        assert set(native) == {"nodes", "token"}
        entries = {bytes(e[0]): e for e in native["nodes"]}
        assert all(len(e) == 4 for e in entries.values())
        assert entries[rpc_id] == [rpc_id, HOST, rpc_port, 0]  # flag 0: not kadnode
        for peer in nodes[1:]:
            assert entries[to_bytes(peer.id)] == [to_bytes(peer.id), HOST, peer.address[1], 1]
        assert len(entries) == 3
        parsed = codec.decode_reply(FindNode(0, 0), native)
        assert parsed.native
        assert {c.node_id for c in parsed.contacts if c.native} == {n.id for n in nodes[1:]}

        # The same request under a random message id gets bmuller's shape.
        plain = await raw.call(node.address, plain_id(), "find_node", [my_id, target])
        assert sorted(plain) == sorted(e[:3] for e in native["nodes"])

        # A native store carries the remaining lifetime and the write token the
        # native reply gave this address; find_value returns the lifetime.
        token = native["token"]
        key = random_id()
        args = [my_id, key, "v", 120.0, token]
        stored = await raw.call(node.address, native_id(), "store", args)
        assert stored is True
        native = await raw.call(node.address, native_id(), "find_value", [my_id, key])
        assert set(native) == {"value", "ttl", "token"}
        assert native["value"] == "v"
        assert 110.0 < native["ttl"] <= 120.0
        plain = await raw.call(node.address, plain_id(), "find_value", [my_id, key])
        assert plain == {"value": "v"}

        # Native find_value for an absent key: the contacts, in the map form.
        native = await raw.call(node.address, native_id(), "find_value", [my_id, random_id()])
        assert set(native) == {"nodes", "token"}
        assert len(native["nodes"]) == 3


async def test_kadnode_peers_are_native_and_rpcudp_contacts_are_not() -> None:
    """Between kadnode nodes the native dialect is used; with rpcudp it never is."""
    async with asyncio.timeout(TEST_BUDGET), kadnode_network(2) as nodes, rpcudp_client() as rpc:
        a, b = nodes
        assert a.core.table.get(b.id).contact.native
        assert b.core.table.get(a.id).contact.native
        rpc_id = rpc.node_id
        await proven(a, rpc)
        assert not a.core.table.get(int.from_bytes(rpc_id, "big")).contact.native


# ---- 4. malformed requests --------------------------------------------------


async def test_malformed_requests_get_no_reply_and_the_node_keeps_answering() -> None:
    async with (
        asyncio.timeout(TEST_BUDGET),
        kadnode_network(1) as nodes,
        rpcudp_client(wait_timeout=SILENCE_WINDOW) as rpc,
    ):
        node = nodes[0]
        addr = node.address
        my_id, key = rpc.node_id, random_id()
        stats = node.core.stats
        bad_before, requests_before = stats["bad_datagrams"], stats["requests_in"]
        stored_before = len(node.core.store)

        calls = [
            rpc.ping(addr),  # too few arguments
            rpc.ping(addr, my_id, "extra"),  # too many
            rpc.ping(addr, b"short-id"),  # an id that is not 20 bytes
            rpc.store(addr, my_id, b"12345", "v"),  # a 5-byte key
            rpc.store(addr, my_id, key, {"a": 1}),  # a value bmuller cannot store
            rpc.store(addr, my_id, key, None),
            rpc.store(addr, my_id, key),  # no value
            rpc.find_node(addr, my_id),  # no target
            rpc.find_node(addr, my_id, "not bytes"),
            rpc.find_value(addr, my_id, b"\x00" * 21),
            rpc.stun(addr),  # a bmuller RPC that kadnode does not serve
            rpc.no_such_method(addr, my_id),
            rpc.ping(addr, to_bytes(node.id)),  # claims the node's own id
        ]
        results = await asyncio.gather(*calls)
        assert results == [(False, None)] * len(calls)

        # Bodies rpcudp itself would never send: undecodable, wrong shapes.
        assert rpc.transport is not None
        for body in (b"\xc1", b"\x93\x01\x02\x03", b"\x92\xa4ping\x01", b""):
            rpc.transport.sendto(b"\x00" + plain_id() + body, addr)
        rpc.transport.sendto(b"\x07" + plain_id() + b"\x90", addr)
        await asyncio.sleep(SILENCE_WINDOW)

        assert stats["bad_datagrams"] - bad_before == len(calls) + 5
        assert stats["requests_in"] == requests_before
        assert len(node.core.store) == stored_before
        assert stats["internal_errors"] == 0

        await proven(node, rpc)
        assert await rpc.store(addr, my_id, key, "still fine") == (True, True)
