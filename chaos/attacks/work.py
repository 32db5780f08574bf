"""work: the node's CPU per crafted datagram, side by side with find_node. I/O.

The node under attack (``kadnode run``) is filled with ``values`` small values
by ``writers`` honest writers (each on a /24 of its own, met while the store
was empty, so their own first contacts cost nothing). Then, measured by the
daemon's CPU time (/proc/PID/stat) and its datagram counter:

- find_node in bulk: ``requests`` ordinary requests from a known sender,
  ``window`` in flight: the node's throughput (its loop wakes once for many);
- find_node one at a time, from a sender met for the first time (as every
  crafted kind is): the baseline; and from the known sender, for comparison;
- a new sender id next to the node's own id (before issue 13: join handoff
  scanned the store);
- a new sender id anywhere (for comparison: outside the node's neighbourhood);
- kn_digest and kn_keys (anti-entropy: the records shared with the sender),
  naming the id of the node's nearest contact (the most records shared).

The baseline and each crafted kind are sent the same way, side by side, in
``crafted`` interleaved rounds: a burst of ``burst`` datagrams of the kind
(crafted ones from hosts of 127.66.1.0/24 that never answer, each its own),
followed by a ping from a known prober whose reply waits behind them (the
loop's blocked time) and pauses in which the node's retransmissions end; the
least CPU of the same window without a datagram is subtracted from each kind's
least, and the rest divided by the burst. A burst, not one datagram: the
node's upkeep in a window of 3 s varies by a few ms, as much as one
first-contact datagram costs, so one at a time the ratio was that noise
(CI at e9acde0 failed the bound with nothing changed); and the least of the
rounds, not their median: bursts of 16 and medians of 5 still failed once on
CI (2c2cec8, kn_digest), where 16 first-contact datagrams cost no more than
the window's idle CPU varied by. Figure: CPU ms per datagram, its ratio
to the first-contact find_node's, datagrams the node sent per datagram.
Held: every crafted kind costs at most 2x a find_node (issue 13, must-show
6). The bulk figure is not the baseline: a datagram alone pays for a wake of
the loop that a batch shares.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

from kadnode.config import AE_BUCKETS, AE_HASH_BYTES
from kadnode.core.messages import Digest, FindNode, KeyList, Ping

from . import harness
from .harness import Forger, Peer, Result, host

NAME = "work"
TARGET = "every crafted kind at most 2x the CPU of a find_node"
LIMIT = 2.0
BASELINE = "find_node, first contact (baseline)"
KNOWN = "find_node, known sender"
ATTACKER = host(66, 0, 1)
PROBER = host(10, 250, 3)
SETTLE = 1.5  # after a datagram's reply: the node's ping back times out (RTO_INITIAL 1 s)
PROBE_TIMEOUT = 120.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--values", type=int, default=100_000, help="values held (%(default)s)")
    p.add_argument("--writers", type=int, default=200, help="honest writers (%(default)s)")
    p.add_argument("--requests", type=int, default=5000, help="find_node baseline (%(default)s)")
    p.add_argument("--crafted", type=int, default=10, help="rounds of each kind (%(default)s)")
    p.add_argument("--window", type=int, default=64, help="requests in flight (%(default)s)")
    p.add_argument(
        "--burst", type=int, default=64, help="datagrams of a kind in one window (%(default)s)"
    )


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


async def sample(node, prober: Peer, send, burst: int, rng) -> tuple[float, int, float]:
    """``burst`` datagrams sent by ``send(rng, i)`` (None: nothing, the idle window),
    then a probe ping and a pause: the node's (CPU s, datagrams out, blocked s) over it."""
    out = (await node.info())["stats"]["datagrams_out"]
    await asyncio.sleep(SETTLE)
    before = node.cpu_seconds()
    for i in range(burst if send is not None else 0):
        send(rng, i)
    started = time.monotonic()
    await prober.call(node.addr, Ping(prober.id), timeout=PROBE_TIMEOUT, attempts=1)
    blocked = time.monotonic() - started
    await asyncio.sleep(SETTLE)
    cpu = node.cpu_seconds() - before
    # Less the probe's reply and the info call's own counting.
    return cpu, (await node.info())["stats"]["datagrams_out"] - out - 2, blocked


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    did = (
        f"node holds {args.values:,} values; {args.requests:,} find_node against "
        f"{args.crafted} rounds of {args.burst} find_node and {args.burst} of each crafted kind, "
        "CPU from /proc"
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
            result.columns = ["datagram", "CPU ms each", "x find_node", "sent each", "blocked ms"]
            per_bulk = cpu / args.requests
            bulk = ["find_node in bulk", per_bulk * 1000, None, sent / args.requests, None]
            # Anti-entropy names the sender's id: the node's own nearest contact shares
            # the most records with it (any reply to find_node names it).
            nearest = await prober.call(node.addr, FindNode(prober.id, node.id))
            peer = nearest.contacts[0].node_id if nearest and nearest.contacts else prober.id

            def forged(make):
                # Each datagram of a burst from a host of its own (without a raw
                # socket, all from the sink's: the node dials back one, queues the rest).
                def send(r: random.Random, i: int) -> None:
                    data = harness.datagram(r, make(r), True)
                    src = (host(66, 1 + i // 250, 1 + i % 250), sink.addr[1])
                    forger.send(data, src if forger.forging else sink.addr, node.addr, sink)

                return send

            kinds = [
                ("new sender id, next to the node's", lambda r: Ping(harness.near(node.id, r))),
                ("new sender id, anywhere", lambda r: Ping(harness.random_id(r))),
                ("kn_digest", lambda r: Digest(peer, [bytes(AE_HASH_BYTES)] * AE_BUCKETS)),
                ("kn_keys, all buckets", lambda r: KeyList(peer, list(range(AE_BUCKETS)), [])),
            ]
            first = lambda r: FindNode(harness.random_id(r), harness.random_id(r))  # noqa: E731
            known = lambda r, i: prober.send(node.addr, FindNode(prober.id, harness.random_id(r)))  # noqa: E731
            sends = {"idle": None, BASELINE: forged(first), KNOWN: known}
            sends.update((label, forged(make)) for label, make in kinds)
            # Interleaved rounds, so that what the node does meanwhile (its upkeep)
            # falls on every kind alike; of each kind the least CPU and blocked time
            # of its rounds: what else the node does in a window only ever adds to
            # them (one of its own anti-entropy scans may fall into any window), so
            # the least is the nearest to the kind's own cost, as timeit
            # takes the least of its repeats. Datagrams sent: the median.
            samples: dict[str, list[tuple[float, int, float]]] = {k: [] for k in sends}
            for _ in range(args.crafted):
                for label, send in sends.items():
                    samples[label].append(await sample(node, prober, send, args.burst, rng))
            least = {
                label: (
                    min(cpu for cpu, _, _ in got),
                    statistics.median(sent for _, sent, _ in got),
                    min(blocked for _, _, blocked in got),
                )
                for label, got in samples.items()
            }
            idle = least.pop("idle")
            per_find = max(0.0, least[BASELINE][0] - idle[0]) / args.burst
            worst = (0.0, "")
            for label, (cpu, sent, blocked) in least.items():
                each = max(0.0, cpu - idle[0]) / args.burst
                ratio = each / per_find if per_find else float("inf")
                blocked_ms = max(0.0, blocked - idle[2]) * 1000
                row = [label, each * 1000, ratio, (sent - idle[1]) / args.burst, blocked_ms]
                result.rows.append(row)
                if label == KNOWN:
                    result.rows.append(bulk)
                elif label != BASELINE and ratio > worst[0]:
                    worst = (ratio, label)
                args.say(f"work: {label}: {each * 1000:.2f} ms CPU")
        finally:
            harness.close_all([*writers, prober, sink])
            forger.close()
    result.figures = {
        "values held": info["values"],
        "find_node CPU us": round(per_find * 1e6, 1),
        "known sender's find_node CPU us": round(
            max(0.0, least[KNOWN][0] - idle[0]) / args.burst * 1e6, 1
        ),
        "find_node in bulk CPU us": round(per_bulk * 1e6, 1),
        "find_node per s": round(args.requests / wall),
        "worst ratio": round(worst[0], 1),
        "worst": worst[1],
    }
    result.notes.extend(
        [
            "CPU is the daemon's time on a CPU (/proc/PID/task/*/schedstat) over the whole "
            "exchange, retransmissions to the silent sender included, less the same exchange "
            "without the datagrams, over the burst, the least of the rounds; find_node and "
            "each crafted kind are sent the same way, each datagram from a host of its own "
            "(bulk: many in flight from one sender, not the baseline); 'sent each' is its "
            "datagrams_out counter",
            "the baseline is a find_node from a sender met for the first time, as every crafted "
            "kind is: each costs the node a ping back to prove the address (and that ping's "
            "timeout), which a known sender's find_node does not; that row is shown for it",
            "not measured here: a neighbour's anti-entropy round (kn_digest, kn_keys from a "
            "contact among the node's 2k nearest, echoing its token) scans the store in the "
            "background by design, at most 8 times per neighbour per minute (docs/security.md)",
        ]
    )
    if not forger.forging:
        result.notes.append(forger.why)
    result.held = worst[0] <= LIMIT
    result.why = f"worst {worst[1]}: {worst[0]:.1f}x a find_node (at most {LIMIT}x)"
    return result
