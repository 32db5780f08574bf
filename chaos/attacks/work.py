"""work: the node's CPU per crafted datagram, side by side with find_node. I/O.

The node under attack (``kadnode run``) is filled with ``values`` small values
by ``writers`` honest writers (each on a /24 of its own, met while the store
was empty, so their own first contacts cost nothing). Then, measured by the
daemon's CPU time (/proc/PID/stat) and its datagram counter:

- find_node: ``requests`` ordinary requests from a known sender, ``window`` in
  flight: the baseline;
- a new sender id next to the node's own id (join handoff scans the store);
- a new sender id anywhere (for comparison: outside the node's neighbourhood);
- kn_digest and kn_keys (anti-entropy: the records shared with the sender),
  naming the id of the node's nearest contact (the most records shared).

Each crafted kind is sent ``crafted`` times, one at a time from 127.66.0.1
(a socket that never answers), each followed by a ping from a known prober
whose reply waits behind it (the loop's blocked time) and a pause; the same
exchange without the crafted datagram is subtracted. Figure: CPU ms per
datagram, its ratio to find_node's, datagrams the node sent per datagram.
Held: every crafted kind costs at most 2x a find_node (issue 13, must-show 6).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from kadnode.config import AE_BUCKETS, AE_HASH_BYTES
from kadnode.core.messages import Digest, FindNode, KeyList, Ping

from . import harness
from .harness import Forger, Peer, Result, host

NAME = "work"
TARGET = "every crafted kind at most 2x the CPU of a find_node"
LIMIT = 2.0
ATTACKER = host(66, 0, 1)
PROBER = host(10, 250, 3)
SETTLE = 1.0  # after a crafted datagram's reply: the node's retransmissions end
PROBE_TIMEOUT = 120.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--values", type=int, default=100_000, help="values held (%(default)s)")
    p.add_argument("--writers", type=int, default=200, help="honest writers (%(default)s)")
    p.add_argument("--requests", type=int, default=5000, help="find_node baseline (%(default)s)")
    p.add_argument("--crafted", type=int, default=3, help="datagrams of each kind (%(default)s)")
    p.add_argument("--window", type=int, default=64, help="requests in flight (%(default)s)")


async def fill(node, writers: list[Peer], count: int, window: int, rng: random.Random) -> int:
    tokens = await asyncio.gather(*(w.token(node.addr) for w in writers))
    taken = 0
    cursor = iter(range(count))

    async def worker(i: int) -> None:
        nonlocal taken
        for n in cursor:
            w, t = writers[n % len(writers)], tokens[n % len(writers)] or bytes(8)
            ok = await w.store(node.addr, rng.randbytes(20), n.to_bytes(4, "big"), t)
            taken += ok  # after the await: ``taken += await ...`` would lose updates

    await asyncio.gather(*(worker(i) for i in range(window)))
    return taken


async def baseline(node, prober: Peer, count: int, window: int, rng) -> tuple[float, int, float]:
    """find_node from a known sender: (CPU s, datagrams out, wall s) for ``count``."""
    before, out = node.cpu_seconds(), (await node.info())["stats"]["datagrams_out"]
    started = time.monotonic()
    cursor = iter(range(count))

    async def worker() -> None:
        for _ in cursor:
            await prober.call(node.addr, FindNode(prober.id, harness.random_id(rng)), attempts=1)

    await asyncio.gather(*(worker() for _ in range(window)))
    wall = time.monotonic() - started
    sent = (await node.info())["stats"]["datagrams_out"] - out
    return node.cpu_seconds() - before, sent, wall


async def crafted(node, prober: Peer, forger: Forger, sink: Peer, make, count: int):
    """``count`` crafted datagrams, one at a time, each followed by a probe ping and a
    pause (``make`` None: the probes and pauses alone, the idle cost to subtract):
    (CPU s, datagrams out, blocked s)."""
    rng = random.Random(count)
    await asyncio.sleep(SETTLE)
    before, out = node.cpu_seconds(), (await node.info())["stats"]["datagrams_out"]
    blocked = 0.0
    for _ in range(count):
        if make is not None:
            data = harness.datagram(rng, make(rng), True)
            forger.send(data, sink.addr, node.addr, fallback=sink)
        started = time.monotonic()
        await prober.call(node.addr, Ping(prober.id), timeout=PROBE_TIMEOUT, attempts=1)
        blocked += time.monotonic() - started
        await asyncio.sleep(SETTLE)
    # Less the probes' replies and the info call's own counting.
    sent = (await node.info())["stats"]["datagrams_out"] - out - count
    return node.cpu_seconds() - before, sent, blocked


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    did = (
        f"node holds {args.values:,} values; {args.requests:,} find_node against "
        f"{args.crafted} of each crafted kind, CPU from /proc"
    )
    result = Result(NAME, did, TARGET)
    forger = Forger()
    async with harness.target() as node:
        writers = await harness.peers(
            [(harness.honest_host(i), 0) for i in range(1, args.writers + 1)],
            [harness.random_id(rng) for _ in range(args.writers)],
        )
        prober = await Peer.open(PROBER, rng=rng)
        sink = await Peer.open(ATTACKER, answer=False, rng=rng)
        try:
            await asyncio.gather(*(p.call(node.addr, Ping(p.id)) for p in [*writers, prober]))
            started = time.monotonic()
            taken = await fill(node, writers, args.values, args.window, rng)
            args.say(f"work: {taken:,} values stored in {time.monotonic() - started:.1f} s")
            info = await node.info()
            cpu, sent, wall = await baseline(node, prober, args.requests, args.window, rng)
            per_find = cpu / args.requests
            result.columns = ["datagram", "CPU ms each", "x find_node", "sent each", "blocked ms"]
            result.rows.append(
                ["find_node (baseline)", per_find * 1000, 1.0, sent / args.requests, None]
            )
            # Anti-entropy names the sender's id: the node's own nearest contact shares
            # the most records with it (any reply to find_node names it).
            nearest = await prober.call(node.addr, FindNode(prober.id, node.id))
            peer = nearest.contacts[0].node_id if nearest and nearest.contacts else prober.id
            kinds = [
                ("new sender id, next to the node's", lambda r: Ping(harness.near(node.id, r))),
                ("new sender id, anywhere", lambda r: Ping(harness.random_id(r))),
                ("kn_digest", lambda r: Digest(peer, [bytes(AE_HASH_BYTES)] * AE_BUCKETS)),
                ("kn_keys, all buckets", lambda r: KeyList(peer, list(range(AE_BUCKETS)), [])),
            ]
            idle, _, idle_blocked = await crafted(node, prober, forger, sink, None, args.crafted)
            worst = (0.0, "")
            for label, make in kinds:
                cpu, sent, blocked = await crafted(node, prober, forger, sink, make, args.crafted)
                blocked = max(0.0, blocked - idle_blocked)
                each = max(0.0, cpu - idle) / args.crafted
                ratio = each / per_find if per_find else float("inf")
                result.rows.append(
                    [label, each * 1000, ratio, sent / args.crafted, blocked / args.crafted * 1000]
                )
                if ratio > worst[0]:
                    worst = (ratio, label)
                args.say(f"work: {label}: {each * 1000:.1f} ms CPU each")
        finally:
            harness.close_all([*writers, prober, sink])
            forger.close()
    result.figures = {
        "values held": info["values"],
        "find_node CPU us": round(per_find * 1e6, 1),
        "find_node per s": round(args.requests / wall),
        "worst ratio": round(worst[0], 1),
        "worst": worst[1],
    }
    result.notes.append(
        "CPU is the daemon's time on a CPU (/proc/PID/task/*/schedstat) over the whole "
        "exchange, retransmissions to the silent sender included, less the same exchange "
        "without the crafted datagram; 'sent each' is its datagrams_out counter; records "
        "touched are not counted by the node"
    )
    if not forger.forging:
        result.notes.append(forger.why)
    result.held = worst[0] <= LIMIT
    result.why = f"worst {worst[1]}: {worst[0]:.1f}x a find_node (at most {LIMIT}x)"
    return result
