"""A daemon in-process among real nodes on 127.0.0.1, asked over HTTP: GET /owner and
GET /ring against brute force over every node id, then POST /leave loses no value.

Loopback only, ports from port 0, every wait bounded. 24 nodes plus the daemon: more than
k = 20, so "the k closest" is a real choice and not simply every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kadnode.cli.client import ApiClient
from kadnode.config import Config
from kadnode.core.ids import ID_BITS, ID_SPACE, key_digest, key_id, ring_distance, to_hex
from kadnode.core.messages import Addr
from kadnode.core.ring import brute_successor
from kadnode.errors import ApiError
from kadnode.shell.api import QUESTIONS
from kadnode.shell.daemon import Daemon, DaemonOptions, run_daemon
from kadnode.shell.library import Server

NODES = 24
KEYS = 50
VALUES = 20
K = Config().k
SUCCESSORS = Config().successors
TEST_BUDGET_S = 30.0
# The daemon places itself on the ring as it joins; stabilize (every 15 s) mends what
# joining missed, so one round is the most a correct view may take.
RING_BUDGET_S = Config().stabilize_interval + 3.0


@contextlib.asynccontextmanager
async def network(n: int) -> AsyncIterator[list[Server]]:
    """``n`` nodes, each bootstrapped from the first."""
    nodes = [await Server.start("127.0.0.1", 0)]
    try:
        for _ in range(n - 1):
            nodes.append(await Server.start("127.0.0.1", 0))
            await nodes[-1].bootstrap([nodes[0].address])
        yield nodes
    finally:
        for node in nodes:
            node.close()


@contextlib.asynccontextmanager
async def daemon(
    tmp_path, seed: Addr
) -> AsyncIterator[tuple[Daemon, ApiClient, asyncio.Task[None]]]:
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[Daemon, int]] = asyncio.get_running_loop().create_future()
    options = DaemonOptions(
        host="127.0.0.1", port=0, data_dir=tmp_path, api_port=0, bootstrap=[seed]
    )
    task = asyncio.create_task(
        run_daemon(options, stop=stop, on_ready=lambda d, port: ready.set_result((d, port)))
    )
    try:
        node, api_port = await asyncio.wait_for(ready, 10)
        yield node, ApiClient(f"127.0.0.1:{api_port}", timeout=10), task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def http(call: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """One blocking ApiClient call, off the event loop the daemon runs on."""
    return await asyncio.to_thread(call, *args)


async def poll(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Await ``check`` until true; return how long it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def contact(server: Server) -> dict[str, Any]:
    host, port = server.address
    return {"id": to_hex(server.id), "host": host, "port": port}


def clockwise(origin: int, ids: set[int]) -> list[int]:
    """``ids`` other than ``origin``, nearest clockwise from it first."""
    return sorted(ids - {origin}, key=lambda i: ring_distance(origin, i))


def xor_closest(target: int, ids: set[int], k: int = K) -> list[int]:
    return sorted(ids, key=lambda i: i ^ target)[:k]


def ids_of(contacts: list[dict[str, Any]]) -> list[int]:
    return [int(c["id"], 16) for c in contacts]


def fingers(origin: int, ids: set[int]) -> list[tuple[int, int]]:
    """Chord's finger table over ``ids``: finger i is the first node at or after
    ``origin + 2**i``; each node listed once, at its lowest index."""
    table: list[tuple[int, int]] = []
    for i in range(ID_BITS):
        start = (origin + (1 << i)) % ID_SPACE
        finger = brute_successor(start, ids)
        if ring_distance(origin, finger) < 1 << i:
            break  # wrapped past origin: no node at or after origin + 2**i
        if not table or table[-1][1] != finger:
            table.append((i, finger))
    return table


async def settled_view(client: ApiClient) -> tuple[dict[str, Any], set[int]]:
    """GET /ring and the ids the daemon knows (its peers and its ring view), read
    while its routing table holds still (joining may still be adding contacts)."""
    for _ in range(50):
        before = await http(client.peers)
        ring = await http(client.ring)
        after = await http(client.peers)
        if ids_of(before["peers"]) == ids_of(after["peers"]):
            pred = [ring["predecessor"]] if ring["predecessor"] else []
            return ring, set(ids_of(after["peers"] + ring["successors"] + pred))
        await asyncio.sleep(0.1)
    raise AssertionError("the daemon's routing table never held still")


async def test_owner_and_ring_match_brute_force_and_leave_loses_no_value(tmp_path):
    rng = random.Random(20240611)
    async with (
        asyncio.timeout(TEST_BUDGET_S),
        network(NODES) as nodes,
        daemon(tmp_path, nodes[0].address) as (node, client, task),
    ):
        by_id = {n.id: contact(n) for n in nodes} | {node.server.id: contact(node.server)}
        everyone = set(by_id)
        me = node.server.id
        assert len(everyone) == NODES + 1

        # -- GET /ring: the daemon's place on the ring, once it has joined -------------
        async def placed() -> bool:
            ring = await http(client.ring)
            pred, succ = ring["predecessor"], ring["successors"][:1]
            return ids_of(succ) == clockwise(me, everyone)[:1] and (
                pred is not None and int(pred["id"], 16) == clockwise(me, everyone)[-1]
            )

        took = await poll(placed, RING_BUDGET_S, "the daemon's ring successor and predecessor")
        print(f"  ring placed {took:.2f} s after start")
        ring, known = await settled_view(client)
        assert ring["self"] == by_id[me]
        assert ring["predecessor"] == by_id[clockwise(me, everyone)[-1]]
        assert ring["successors"][0] == by_id[clockwise(me, everyone)[0]]
        # The rest of the view is brute force over the nodes the daemon knows so far (it
        # may not have met all of them yet; stabilize fills the successor list later).
        assert known <= everyone - {me}
        assert ring["successors"] == [by_id[i] for i in clockwise(me, known)[:SUCCESSORS]]
        assert ring["fingers"] == [{"index": i, **by_id[f]} for i, f in fingers(me, known)]
        assert len(ring["fingers"]) >= 2  # it knows nodes across the ring, not one neighbour
        print(f"  ring view: knows {len(known)} of {NODES} nodes, {len(ring['fingers'])} fingers")

        # -- GET /owner: both answers for random keys ------------------------------------
        hops = []
        for _ in range(KEYS):
            key = f"peer/{rng.getrandbits(64):016x}"
            target = key_id(key)
            reply = await http(client.owner, key)
            assert reply["key"] == key and reply["key_id"] == to_hex(target)
            assert reply["questions"] == QUESTIONS
            assert reply["successor"] == by_id[brute_successor(target, everyone)], key
            assert reply["closest"] == [by_id[i] for i in xor_closest(target, everyone)], key
            hops.append(reply["successor_hops"])
        # Chord routes through fingers only, about 1/2 log2 N hops (paper, section 5); a
        # walk along successors would take up to N.
        assert max(hops) <= 2 * (NODES + 1).bit_length(), hops
        print(f"  owner: {KEYS} keys right, successor hops {sorted(hops)}")

        # -- PUT through the daemon, then POST /leave ------------------------------------
        values = {f"service/{i}": f"198.51.100.{i}:30303" for i in range(VALUES)}
        others = everyone - {me}
        for key, value in values.items():
            put = await http(client.put, key, value)
            assert put["stored"] == K
            assert sorted(ids_of(put["replicas"])) == sorted(xor_closest(key_id(key), others))
        # Wipe every other copy: after this, only the daemon's leave can save a value.
        for n in nodes:
            for key in values:
                n.core.store.delete(key_digest(key))
        assert all(node.store.get(key_digest(key)) is not None for key in values)

        # Leave hands each value to the k closest nodes the daemon knows: on this small
        # loopback network it has met every node by now.
        assert (await http(client.info))["peers"] == NODES
        left = await http(client.leave)
        assert left.keys() == {"keys", "stores", "acks", "elapsed_ms"}, left
        # The values, and the daemon's own signed peer record (it registers
        # when it joins): each to the k closest remaining.
        held = VALUES + 1
        assert (left["keys"], left["stores"], left["acks"]) == (held, held * K, held * K)
        await asyncio.wait_for(task, 10)  # the daemon stops by itself once it has replied
        assert task.exception() is None
        try:
            await http(client.info)
        except ApiError as exc:
            assert str(exc).startswith("no kadnode daemon answering"), exc
        else:
            raise AssertionError("the daemon still answers after leaving")

        # Every value held by exactly the k nodes now closest, and found from every node.
        for key in values:
            holders = {n.id for n in nodes if n.core.store.get(key_digest(key)) is not None}
            assert holders == set(xor_closest(key_id(key), others)), key
        keys = list(values)
        got = await asyncio.gather(*(n.get(key) for n in nodes for key in keys))
        assert [(g.found, g.value) for g in got] == [(True, values[k]) for _ in nodes for k in keys]
