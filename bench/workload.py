"""One implementation's share of the benchmark, in a process of its own. I/O.

    python bench/workload.py kadnode --nodes 200 --values 200 --seed 1

Starts ``--nodes`` nodes of one implementation (kadnode, bmuller/kademlia
2.2.3 or OpenDHT) in this process, each on its own UDP socket on 127.0.0.1,
joins them all through the first one, then, one operation at a time, stores
``--values`` values from random nodes and reads each back from another
random node. The node choices come from ``--seed`` alone, so every
implementation gets the same workload. Prints one JSON line on stdout;
progress lines go to stderr.

Peak memory per node is (VmHWM at the end - VmRSS just before the first node
was created) / N, read from /proc/self/status: the process holds nothing but
this one implementation.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from kadnode.cli.demo import JOIN_BATCH
from kadnode.config import LOCAL_TEST
from kadnode.shell import loop
from kadnode.shell.library import Server
from kadnode.stats import mean, percentiles_ms

IMPLEMENTATIONS = ("kadnode", "kadnode8", "bmuller", "opendht")

# Every wait is bounded: one put, get or batch of joins gives up after this.
OP_TIMEOUT = 30.0
# bmuller/kademlia (rpcudp) waits 5 s for a reply; a large batch of joins on
# one event loop would push replies past that. kadnode's demo uses 4 too.
BMULLER_JOIN_BATCH = 4
# OpenDHT has no "joined" callback. A node counts as joined when OpenDHT
# itself would call it connected: at least one good (answering) node in its
# routing table (Dht::getStatus, src/dht.cpp). It goes on filling its table
# in the background, work that kadnode's and bmuller's bootstrap() finish
# before they return.
OPENDHT_JOINED_GOOD = 1
OPENDHT_JOIN_TIMEOUT = 300.0
OPENDHT_POLL = 0.02
OPENDHT_REPORT_EVERY = 5.0
# A private network id: these nodes never talk to OpenDHT's public network.
OPENDHT_NETWORK = 0xBE7C
# Progress lines during joins: about this many per run.
PROGRESS_STEPS = 5


def status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM); 0 where absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def udp_datagrams_sent() -> int:
    """UDP datagrams this network namespace has sent (/proc/net/snmp,
    OutDatagrams); -1 where unreadable. Counts every process in the
    namespace: bench/run.py gives each run a namespace of its own where it
    can (root), so that only the benchmark's nodes are counted."""
    try:
        with open("/proc/net/snmp") as f:
            udp = [line.split() for line in f if line.startswith("Udp:")]
        return int(udp[1][udp[0].index("OutDatagrams")])
    except (OSError, IndexError, ValueError):
        return -1


def make_progress(tag: str) -> Callable[[str], None]:
    def say(msg: str) -> None:
        print(f"[{tag}] {msg}", file=sys.stderr, flush=True)

    return say


async def join_in_batches(
    nodes: Sequence, join_one: Callable[[object], Awaitable], batch: int, say
) -> None:
    """Join nodes[1:] through nodes[0], ``batch`` at a time, each batch bounded."""
    total = len(nodes)
    step = max(1, total // PROGRESS_STEPS)
    next_report = step
    for start in range(1, total, batch):
        group = nodes[start : start + batch]
        try:
            await asyncio.wait_for(asyncio.gather(*(join_one(n) for n in group)), OP_TIMEOUT)
        except TimeoutError:
            raise TimeoutError(
                f"joining nodes {start}-{start + len(group) - 1} took over {OP_TIMEOUT:.0f} s"
            ) from None
        done = min(start + batch, total)
        if done >= next_report or done == total:
            say(f"joined {done}/{total} nodes")
            next_report = done + step


# ---- the three implementations, behind one small interface ------------------


class Kadnode:
    name = "kadnode"
    config = LOCAL_TEST

    def __init__(self) -> None:
        self.nodes: list[Server] = []

    async def start(self, n: int) -> None:
        for _ in range(n):
            self.nodes.append(await Server.start("127.0.0.1", 0, config=self.config))

    async def join(self, say) -> None:
        first = self.nodes[0].address
        await join_in_batches(self.nodes, lambda s: s.bootstrap([first]), JOIN_BATCH, say)

    async def put(self, i: int, key: str, value: str) -> bool:
        return (await self.nodes[i].put(key, value)).acks > 0

    async def get(self, i: int, key: str) -> str | None:
        result = await self.nodes[i].get(key)
        return result.value if result.found else None

    def diagnose(self) -> str:
        totals = Counter()
        for s in self.nodes:
            totals.update(s.core.stats)
        keys = ("internal_errors", "timeouts", "bad_datagrams", "requests_refused")
        return ", ".join(f"{k} {totals[k]}" for k in keys)

    def close(self) -> None:
        for s in self.nodes:
            s.close()


class Kadnode8(Kadnode):
    """kadnode with OpenDHT's replica count: k = 8 (its routing-table buckets
    hold 8 too, as OpenDHT's do); write and read quorums are then a majority
    of the 8 (kadnode.core.operations.quorum)."""

    name = "kadnode8"
    config = dataclasses.replace(LOCAL_TEST, k=8)


class Bmuller:
    name = "bmuller"

    def __init__(self) -> None:
        from kademlia.network import Server as KademliaServer

        # Timeouts are part of what is measured; their log lines are noise.
        for name in ("kademlia", "rpcudp"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.server_class = KademliaServer
        self.nodes: list = []

    async def start(self, n: int) -> None:
        for _ in range(n):
            s = self.server_class()
            await s.listen(0, interface="127.0.0.1")
            self.nodes.append(s)

    async def join(self, say) -> None:
        first = self.nodes[0].transport.get_extra_info("sockname")[:2]
        await join_in_batches(self.nodes, lambda s: s.bootstrap([first]), BMULLER_JOIN_BATCH, say)

    async def put(self, i: int, key: str, value: str) -> bool:
        return bool(await self.nodes[i].set(key, value))

    async def get(self, i: int, key: str) -> str | None:
        return await self.nodes[i].get(key)

    def close(self) -> None:
        for s in self.nodes:
            s.stop()


class OpenDht:
    """OpenDHT's C++ runners, each with its own threads; results come back
    to the event loop through ``call_soon_threadsafe``."""

    name = "opendht"

    def __init__(self) -> None:
        import opendht

        self.dht = opendht
        self.nodes: list = []

    async def start(self, n: int) -> None:
        for _ in range(n):
            config = self.dht.DhtConfig()
            config.setPeerDiscovery(False, False)  # no multicast: loopback only
            # Every node shares 127.0.0.1, which OpenDHT's per-IP rate limit
            # would throttle; its own tests lift the limits the same way.
            config.setRateLimit(-1, -1)
            config.setNetwork(OPENDHT_NETWORK)
            runner = self.dht.DhtRunner()
            runner.run(port=0, ipv4="127.0.0.1", config=config)
            self.nodes.append(runner)

    def _good(self, runner) -> int:
        return runner.getRoutingTablesLog(socket.AF_INET).count("[good]")

    async def join(self, say) -> None:
        port = str(self.nodes[0].getBound(socket.AF_INET).getPort())
        for runner in self.nodes[1:]:
            runner.bootstrap("127.0.0.1", port)
        waiting = self.nodes[1:]  # the seed, like kadnode's and bmuller's, joins nobody
        start = time.monotonic()
        deadline = start + OPENDHT_JOIN_TIMEOUT
        report_at = start + OPENDHT_REPORT_EVERY
        while True:
            waiting = [r for r in waiting if self._good(r) < OPENDHT_JOINED_GOOD]
            now = time.monotonic()
            if not waiting or now >= report_at:
                report_at = now + OPENDHT_REPORT_EVERY
                say(f"joined {len(self.nodes) - len(waiting)}/{len(self.nodes)} nodes")
            if not waiting:
                return
            if now > deadline:
                raise TimeoutError(
                    f"{len(waiting)} nodes not connected after {OPENDHT_JOIN_TIMEOUT:.0f} s"
                )
            await asyncio.sleep(OPENDHT_POLL)

    async def put(self, i: int, key: str, value: str) -> bool:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(ok, _nodes) -> None:
            loop.call_soon_threadsafe(_settle, fut, bool(ok))

        self.nodes[i].put(self.dht.InfoHash.get(key), self.dht.Value(value.encode()), done)
        return await fut

    async def get(self, i: int, key: str) -> str | None:
        """The first value found, as kadnode's and bmuller's gets return."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def got(v) -> bool:
            loop.call_soon_threadsafe(_settle, fut, bytes(v.data).decode(errors="replace"))
            return False  # stop the search: one value is what was asked for

        def done(_ok, _nodes) -> None:
            loop.call_soon_threadsafe(_settle, fut, None)

        self.nodes[i].get(self.dht.InfoHash.get(key), got, done)
        return await fut

    def close(self) -> None:
        # DhtRunner.join() can block for minutes; the process exits instead.
        pass


def _settle(fut: asyncio.Future, result) -> None:
    if not fut.done():
        fut.set_result(result)


def load(name: str):
    impls = {"kadnode": Kadnode, "kadnode8": Kadnode8, "bmuller": Bmuller, "opendht": OpenDht}
    return impls[name]()


# ---- the workload ---------------------------------------------------------------


async def _timed(op: Awaitable, samples: list[float], sent: list[int]) -> tuple[object, bool]:
    """Await one bounded operation; record its latency and the datagrams sent
    meanwhile; (result, timed_out)."""
    before = udp_datagrams_sent()
    t = time.perf_counter()
    try:
        result, timed_out = await asyncio.wait_for(op, OP_TIMEOUT), False
    except TimeoutError:
        result, timed_out = None, True
    samples.append(time.perf_counter() - t)
    if before >= 0:
        sent.append(udp_datagrams_sent() - before)
    return result, timed_out


async def run_workload(impl, nodes: int, values: int, seed: int, say) -> dict:
    rng = random.Random(seed)
    base_kb = status_kb("VmRSS")
    try:
        t0 = time.perf_counter()
        await impl.start(nodes)
        started_s = time.perf_counter() - t0
        say(f"started {nodes} nodes in {started_s:.2f} s")
        t0 = time.perf_counter()
        await impl.join(say)
        join_s = time.perf_counter() - t0

        put_times: list[float] = []
        get_times: list[float] = []
        put_sent: list[int] = []
        get_sent: list[int] = []
        found = acked = timeouts = 0
        step = max(1, values // PROGRESS_STEPS)
        for i in range(values):
            key, value = f"bench-key-{seed}-{i}", f"bench value {i:05d} of run {seed}"
            writer, reader = rng.sample(range(nodes), 2) if nodes > 1 else (0, 0)
            ok, late = await _timed(impl.put(writer, key, value), put_times, put_sent)
            acked += bool(ok)
            timeouts += late
            got, late = await _timed(impl.get(reader, key), get_times, get_sent)
            found += got == value
            timeouts += late
            if (i + 1) % step == 0 or i + 1 == values:
                say(f"stored and read back {i + 1}/{values} values ({found} found)")
        hwm_kb = status_kb("VmHWM")
        return {
            "impl": impl.name,
            "nodes": nodes,
            "values": values,
            "seed": seed,
            "start_s": round(started_s, 3),
            "join_s": round(join_s, 3),
            "put_ms": percentiles_ms(put_times),
            "get_ms": percentiles_ms(get_times),
            # Mean datagrams sent while a put (a get) ran, by every node.
            "put_datagrams": round(mean(put_sent), 1) if put_sent else None,
            "get_datagrams": round(mean(get_sent), 1) if get_sent else None,
            "acked": acked,
            "found": found,
            "timeouts": timeouts,
            "base_kb": base_kb,
            "hwm_kb": hwm_kb,
            "mem_per_node_kb": round((hwm_kb - base_kb) / nodes, 1),
        }
    except Exception as exc:
        # One line for the report's "n/a (reason)", with what the nodes counted.
        detail = getattr(impl, "diagnose", lambda: "")()
        raise RuntimeError(
            f"{type(exc).__name__}: {exc}" + (f" [{detail}]" if detail else "")
        ) from exc
    finally:
        impl.close()


def emit(result: dict) -> None:
    """The worker's answer: one JSON line on stdout, then exit at once
    (OpenDHT's runner threads would otherwise keep the process alive)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if "error" not in result else 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("impl", choices=IMPLEMENTATIONS)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--values", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    say = make_progress(args.tag or f"{args.impl} N={args.nodes}")
    try:
        impl = load(args.impl)
    except ImportError as exc:
        emit({"error": f"not installed: {exc}"})
    try:
        result = loop.run(run_workload(impl, args.nodes, args.values, args.seed, say))
    except Exception as exc:  # reported as this cell's "n/a (reason)"
        emit({"error": str(exc)[:300]})
    emit(result)


if __name__ == "__main__":
    main()
