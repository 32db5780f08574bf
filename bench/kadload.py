"""kadnode under load: FIND_NODE replies one node serves, lookups a network
sustains. I/O, loopback only. Each role runs in a process of its own:

    python bench/kadload.py serve --limit 60
        One kadnode Server. Prints {"host", "port", "id"} on stdout, serves
        until its stdin closes (or ``--limit`` seconds), then prints its
        counters and routing-table size.
    python bench/kadload.py load --port P --id HEX --seconds 5
        Fills the server's routing table with ``--contacts`` live contacts
        (kadnode nodes with ids spread over its farthest buckets ping it,
        then close), then sends valid find_node requests with random targets
        from one UDP socket as fast as the server answers, keeping
        ``--window`` in flight, and counts replies for ``--seconds``.
    python bench/kadload.py lookups --nodes 200 --clients 16 --seconds 5
        An N-node kadnode network in this process; ``--clients`` tasks each
        run lookups of random ids from random nodes back to back; completed
        lookups per second over ``--seconds``.

On a machine with two cores or more, the server and the load generator are
pinned to different cores, so "one core" is what the server gets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import socket
import sys
import time
from dataclasses import replace

from workload import OP_TIMEOUT, Kadnode, emit, make_progress, status_kb

from kadnode.config import LOCAL_TEST, WELCOME_DELAY, K
from kadnode.core.codec import NATIVE_MAGIC, RESPONSE, encode_request
from kadnode.core.ids import ID_BITS, ID_BYTES
from kadnode.shell import loop
from kadnode.shell.library import Server

PING_BATCH = 16
WARMUP_S = 0.5
# Distinct pre-built requests cycled through (random targets, message ids).
REQUEST_POOL = 2048
# With this many requests unanswered for a whole quiet interval, the rest
# are counted lost and the window reopens.
QUIET_S = 0.05
SERVER_CPU, LOAD_CPU = 0, 1

UNLIMITED = replace(LOCAL_TEST, requests_total=1e9)


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


# ---- serve --------------------------------------------------------------------


async def serve(limit: float) -> dict:
    pin(SERVER_CPU)
    # Capacity, not policy: the load generator shares 127.0.0.1 with every node,
    # so the per-address limits are lifted for loopback and the node's total
    # request rate is unbounded here (the page says so).
    server = await Server.start("127.0.0.1", 0, config=UNLIMITED)
    host, port = server.address
    print(json.dumps({"host": host, "port": port, "id": f"{server.id:040x}"}), flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the orchestrator closes our stdin, at most ``limit`` seconds.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), limit)
    stats = server.core.stats
    result = {
        "table": len(server.core.table),
        "requests_in": stats["requests_in"],
        "bad_datagrams": stats["bad_datagrams"],
        "internal_errors": stats["internal_errors"],
        "hwm_kb": status_kb("VmHWM"),
    }
    server.close()
    return result


# ---- load -----------------------------------------------------------------------


def spread_ids(owner: int, count: int, rng: random.Random) -> list[int]:
    """``count`` ids filling ``owner``'s buckets from the farthest inward,
    k to a bucket: a table that holds every one of them."""
    ids = []
    for n in range(count):
        bucket = ID_BITS - 1 - n // K
        ids.append(owner ^ ((1 << bucket) | rng.getrandbits(bucket)))
    return ids


async def fill_table(addr: tuple[str, int], owner: int, count: int, rng: random.Random) -> int:
    """Have ``count`` kadnode nodes ping the server; return how many answered."""
    nodes = [
        await Server.start(
            "127.0.0.1",
            0,
            node_id=i,
            rng=random.Random(rng.getrandbits(64)),
            config=LOCAL_TEST,
        )
        for i in spread_ids(owner, count, rng)
    ]
    answered = 0
    try:
        # The first ping alone: its ping back proves the address every node
        # shares (kadnode.core.proof). The others, new on a proven address,
        # are pinged back WELCOME_DELAY later: the nodes stay up to answer.
        for start, end in [(0, 1), *((i, i + PING_BATCH) for i in range(1, count, PING_BATCH))]:
            batch = nodes[start:end]
            results = await asyncio.wait_for(
                asyncio.gather(*(n.ping(addr) for n in batch)), OP_TIMEOUT
            )
            answered += sum(r.node_id == owner for r in results)
        await asyncio.sleep(WELCOME_DELAY + 1.0)
    finally:
        for n in nodes:
            n.close()
    return answered


def blast(addr: tuple[str, int], owner: int, seconds: float, window: int, rng) -> dict:
    """Send find_node as fast as replies come back; count replies for ``seconds``."""
    # One client id in a bucket far below the filled ones, so being seen
    # never makes the server ping anyone.
    sender = (owner ^ ((1 << 64) | rng.getrandbits(64))).to_bytes(ID_BYTES, "big")
    pool = [
        encode_request(
            NATIVE_MAGIC + rng.randbytes(16), "find_node", [sender, rng.randbytes(ID_BYTES)]
        )
        for _ in range(REQUEST_POOL)
    ]
    reply_kind = bytes((RESPONSE,))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(addr)
    sock.setblocking(False)
    sent = replies = counted = lost = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    measure_from = start + WARMUP_S
    end = measure_from + seconds
    try:
        while (now := time.perf_counter()) < end:
            while sent - replies - lost < window:
                try:
                    sock.send(pool[sent % REQUEST_POOL])
                except BlockingIOError:
                    break
                sent += 1
            if not select.select([sock], [], [], QUIET_S)[0]:
                lost = sent - replies  # nothing for a while: the rest are gone
                continue
            while True:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                if data[:1] == reply_kind:
                    replies += 1
                    if measure_from <= now:
                        counted += 1
            # ``now`` is at most one select() old: good enough at 5 s.
    finally:
        sock.close()
    busy = (time.process_time() - cpu0) / (time.perf_counter() - start)
    return {
        "seconds": seconds,
        # Well under 1: the generator was not the bottleneck.
        "generator_cpu_share": round(busy, 2),
        "sent": sent,
        "replies": replies,
        "lost": lost,
        "replies_per_s": round(counted / seconds, 1),
    }


def load(args) -> dict:
    pin(LOAD_CPU)
    rng = random.Random(args.seed)
    addr = ("127.0.0.1", args.port)  # loopback only, whatever else is asked
    owner = int(args.id, 16)
    say = make_progress("kadnode find_node load")
    answered = loop.run(fill_table(addr, owner, args.contacts, rng))
    say(f"{answered}/{args.contacts} contacts pinged the server; sending for {args.seconds} s")
    result = blast(addr, owner, args.seconds, args.window, rng)
    say(
        f"{result['replies_per_s']:.0f} replies/s "
        f"(the generator used {result['generator_cpu_share']:.0%} of its core)"
    )
    return {"contacts_answered": answered, "window": args.window, **result}


# ---- lookups ---------------------------------------------------------------------


async def lookups(nodes: int, clients: int, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    say = make_progress(f"kadnode lookups N={nodes}")
    net = Kadnode()
    try:
        await net.start(nodes)
        await net.join(say)
        say(f"{clients} clients looking up random ids for {seconds} s")
        # Timeouts counted from here on: the join's are not the clients'.
        timeouts0 = sum(s.core.stats["timeouts"] for s in net.nodes)
        completed = failed = 0
        start = time.perf_counter()
        end = start + seconds

        async def client() -> None:
            nonlocal completed, failed
            while time.perf_counter() < end:
                asker = rng.choice(net.nodes)
                try:
                    await asyncio.wait_for(asker.lookup(rng.getrandbits(ID_BITS)), OP_TIMEOUT)
                    completed += 1
                except TimeoutError:
                    failed += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        timeouts = sum(s.core.stats["timeouts"] for s in net.nodes) - timeouts0
        say(f"{completed / elapsed:.0f} lookups/s")
        return {
            "nodes": nodes,
            "clients": clients,
            "seconds": round(elapsed, 3),
            "completed": completed,
            "failed": failed,
            "request_timeouts": timeouts,
            "lookups_per_s": round(completed / elapsed, 1),
        }
    finally:
        net.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--limit", type=float, default=120.0)
    p = sub.add_parser("load")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--id", required=True, help="the server's id, hex")
    p.add_argument("--contacts", type=int, default=200)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("lookups")
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.role == "serve":
            result = loop.run(serve(args.limit))
        elif args.role == "load":
            result = load(args)
        else:
            result = loop.run(lookups(args.nodes, args.clients, args.seconds, args.seed))
    except Exception as exc:  # reported as this cell's "n/a (reason)"
        emit({"error": f"{type(exc).__name__}: {exc}"[:200]})
    emit(result)


if __name__ == "__main__":
    main()
