"""What a watch costs in datagrams, against what replica notification would. I/O.

    python bench/watch_cost.py --nodes 30 --idle 60 --updates 5 --spacing 10

Starts ``--nodes`` library nodes on 127.0.0.1 in this process, with every periodic
duty of a node (refresh, replicate, republish, stabilize, anti-entropy) set a day
apart, so that the only datagrams are the ones the run causes (``--idle`` s of
nobody watching, the quiet baseline, shows it: it should be 0); then, for each kind
of value (plain, shared, signed), one after the other:

1. a writer node (random) writes the value; the datagrams of that write round are
   the unit of the notification estimate below;
2. a watcher on the node farthest from the key (so it holds no copy and reads the
   network, as most nodes would) watches it through the daemon's own code
   (kadnode.shell.service.NodeService.watch*, which kadnode.shell.watch schedules)
   for ``--idle`` s of no change;
3. ``--updates`` writes ``--spacing`` s apart with nobody watching, then the same
   with the watcher, each write's version awaited at the watcher (its delay from
   the write's return is the latency).

Datagrams are summed over every node (``datagrams_out``). The watcher's cost is the
difference between the runs with and without it. Nothing here implements replica
notification: its cost is an estimate built from the measured parts, printed as one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kadnode.config import LOCAL_TEST, WATCH_POLL_MAX, WATCH_POLL_MIN, K
from kadnode.shell import loop
from kadnode.shell.library import Server, storage_key
from kadnode.shell.service import NodeService
from kadnode.stats import mean

DAY = 86400.0
# Every periodic duty a day away: the run's datagrams are the run's own.
QUIET = dataclasses.replace(
    LOCAL_TEST,
    refresh_interval=DAY,
    replicate_interval=DAY,
    republish_interval=DAY,
    stabilize_interval=DAY,
    anti_entropy_interval=DAY,
)
JOIN_S = 30.0  # a node's bootstrap, bounded
SETTLE_S = 3.0  # after joining, and after each write, for late datagrams to land
OP_S = 30.0  # one write, bounded
SEEN_S = WATCH_POLL_MAX + 5.0  # a write's version at the watcher, bounded
# OpenDHT's listen (include/opendht/dht.h): a listen lasts LISTEN_EXPIRE_TIME = 30 s
# and is renewed REANNOUNCE_MARGIN = 10 s before it expires, at LISTEN_NODES = 4 of
# the nodes nearest the key.
LISTEN_RENEW_S = 30.0 - 10.0
LISTEN_NODES = 4
SALT = b"watch-cost"


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def sent(nodes: list[Server]) -> int:
    return sum(node.core.stats["datagrams_out"] for node in nodes)


async def counted(
    nodes: list[Server], work: Awaitable[Any], settle: float = SETTLE_S, bound: float = OP_S
) -> int:
    """Datagrams sent by every node during ``work`` (at most ``bound`` s) and ``settle``
    s after it."""
    before = sent(nodes)
    await asyncio.wait_for(work, bound)
    await asyncio.sleep(settle)
    return sent(nodes) - before


@dataclasses.dataclass
class Kind:
    name: str
    write: Callable[[Server, str], Awaitable[Any]]
    watch: Callable[[NodeService], AsyncIterator[dict[str, Any] | None]]
    key: bytes  # where the value is stored
    shows: Callable[[dict[str, Any], str], bool]  # the reply holds this value


def kinds(writer: Server) -> list[Kind]:
    from kadnode.core import signed

    owner = writer.core.identity.public_key  # type: ignore[union-attr]
    return [
        Kind(
            "plain",
            lambda s, v: s.put("watch-cost plain", v),
            lambda svc: svc.watch("watch-cost plain"),
            storage_key("watch-cost plain"),
            lambda r, v: r["value"] == v,
        ),
        Kind(
            "shared",
            lambda s, v: s.put_shared("watch-cost shared", v, None),
            lambda svc: svc.watch_shared("watch-cost shared"),
            storage_key("watch-cost shared"),
            lambda r, v: v in [s["value"] for s in r["siblings"]],
        ),
        Kind(
            "signed",
            lambda s, v: s.put_signed(v, SALT),
            lambda svc: svc.watch_signed(owner.hex(), SALT.decode()),
            signed.target(owner, SALT),
            lambda r, v: r["value"] == v,
        ),
    ]


class Watcher:
    """A watch through the daemon's code, on one node; each version it yields, timed."""

    def __init__(self, node: Server, kind: Kind) -> None:
        self.stop = asyncio.Event()
        # Only the read path of the service is used: no store, options or tasks.
        self.service = NodeService(node, None, None, self.stop, None)  # type: ignore[arg-type]
        self.replies = kind.watch(self.service)
        self.seen: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for reply in self.replies:
            if reply is not None:
                self.seen.put_nowait((time.monotonic(), reply))

    @property
    def reads(self) -> int:
        return self.service.stats["watch_reads"]

    async def close(self) -> None:
        self.stop.set()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.replies.aclose()  # type: ignore[attr-defined]


async def updates(
    nodes: list[Server],
    writer: Server,
    kind: Kind,
    args: argparse.Namespace,
    tag: str,
    watcher: Watcher | None = None,
) -> tuple[int, list[float]]:
    """``--updates`` writes ``--spacing`` s apart: the datagrams of them all (and of
    the watcher, if one watches) and each version's delay at the watcher."""
    before, delays = sent(nodes), []
    for i in range(args.updates):
        started = time.monotonic()
        value = f"{tag}-{i}"
        await asyncio.wait_for(kind.write(writer, value), OP_S)
        written = time.monotonic()
        if watcher is not None:
            async with asyncio.timeout(SEEN_S):
                while not kind.shows((reply := await watcher.seen.get())[1], value):
                    pass
            delays.append(reply[0] - written)
        await asyncio.sleep(max(0.0, args.spacing - (time.monotonic() - started)))
    return sent(nodes) - before, delays


async def measure(nodes: list[Server], writer: Server, kind: Kind, args) -> dict[str, Any]:
    target = int.from_bytes(kind.key, "big")
    farthest = max((n for n in nodes if n is not writer), key=lambda n: n.id ^ target)
    say(f"{kind.name}: a first write")
    write = await counted(nodes, kind.write(writer, "first"))
    say(f"{kind.name}: {args.idle:g} s watched, nothing changing")
    before = sent(nodes)
    watcher = Watcher(farthest, kind)
    (_, first) = await asyncio.wait_for(watcher.seen.get(), SEEN_S)
    assert kind.shows(first, "first"), first
    await asyncio.sleep(args.idle)
    idle, idle_reads = sent(nodes) - before, watcher.reads
    say(f"{kind.name}: {args.updates} writes {args.spacing:g} s apart, nobody watching")
    await watcher.close()
    alone, _ = await updates(nodes, writer, kind, args, "alone")
    await asyncio.sleep(SETTLE_S)
    say(f"{kind.name}: the same, watched")
    watcher = Watcher(farthest, kind)
    await asyncio.wait_for(watcher.seen.get(), SEEN_S)
    await asyncio.sleep(WATCH_POLL_MAX)  # from the ramp of a new watch to its idle pace
    reads = watcher.reads
    watched, delays = await updates(nodes, writer, kind, args, "watched", watcher)
    watched_reads = watcher.reads - reads
    await watcher.close()
    await asyncio.sleep(SETTLE_S)
    return {
        "write": write,
        "idle": idle,
        "idle_reads": idle_reads,
        "alone": alone,
        "watched": watched,
        "watched_reads": watched_reads,
        "delays": delays,
    }


async def lookup_cost(nodes: list[Server], rng: random.Random) -> float:
    """Datagrams of one lookup of a random key (the search a listen starts with)."""
    costs = []
    for _ in range(5):
        target = rng.getrandbits(160)
        costs.append(await counted(nodes, rng.choice(nodes).lookup(target, all_k=True), 1.0))
    return mean(costs)


def report(
    kind: str, m: dict[str, Any], args: argparse.Namespace, lookup: float, listen: float
) -> list[str]:
    minutes = args.idle / 60
    per_read = m["idle"] / m["idle_reads"]
    watcher = m["watched"] - m["alone"]
    idle_pace = 60 / WATCH_POLL_MAX * per_read  # a minute, the backoff at its top
    delays = m["delays"]
    renewals = args.spacing / LISTEN_RENEW_S  # between two updates
    opendht = lookup + 2 * LISTEN_NODES
    # One replica's notification proves a signed version (its owner signed it); of a
    # plain or shared value it is one node's word, which a read of its kind must confirm.
    confirm = 0.0 if kind == "signed" else per_read
    spaced = f"per update {args.spacing:g} s apart"
    return [
        f"{kind}:",
        f"  its write: {m['write']} datagrams",
        f"  polling, idle: {m['idle']} datagrams in the first {args.idle:g} s of a watch"
        f" ({m['idle_reads']} reads: the first, then {WATCH_POLL_MIN:g}, 2, 4 s apart, then"
        f" {WATCH_POLL_MAX:g}) = {m['idle'] / minutes:.0f} a minute; {per_read:.1f} a read,"
        f" so {idle_pace:.0f} a minute at the {WATCH_POLL_MAX:g} s pace",
        f"  polling, updated: {args.updates} writes {args.spacing:g} s apart cost"
        f" {m['alone']} datagrams unwatched, {m['watched']} watched: the watcher's"
        f" {watcher} = {watcher / args.updates:.0f} {spaced} ({m['watched_reads']} reads)",
        f"  seen after the write returned: mean {mean(delays):.2f} s, max {max(delays):.2f} s"
        f" (bound {WATCH_POLL_MAX:g} s + one read)",
        "  notification (NOT IMPLEMENTED; an estimate from the measured parts above):",
        f"    listen at all k = {K} replicas, renewed every {LISTEN_RENEW_S:g} s, each renewal"
        f" a write round ({listen}): {listen * 60 / LISTEN_RENEW_S:.0f} a minute idle;"
        f" {K} notifications + {confirm:.0f} to confirm + renewals ="
        f" {K + confirm + listen * renewals:.0f} {spaced}",
        f"    OpenDHT's shape, {LISTEN_NODES} nodes, each renewal a lookup ({lookup:.0f}) +"
        f" {LISTEN_NODES} requests + {LISTEN_NODES} replies: {opendht * 60 / LISTEN_RENEW_S:.0f}"
        f" a minute idle; {LISTEN_NODES + confirm + opendht * renewals:.0f} {spaced}",
    ]


async def run(args: argparse.Namespace) -> list[str]:
    rng = random.Random(args.seed)
    nodes: list[Server] = []
    try:
        for _ in range(args.nodes):
            nodes.append(await Server.start("127.0.0.1", 0, config=QUIET, rng=rng))
        say(f"joining {args.nodes} nodes")
        for node in nodes[1:]:
            await asyncio.wait_for(node.bootstrap([nodes[0].address]), JOIN_S)
        await asyncio.sleep(SETTLE_S)
        writer = rng.choice(nodes)
        lookup = await lookup_cost(nodes, rng)
        # A listen registration has a plain write's shape: a search for the k nearest,
        # then a request to each and its reply.
        listen = await counted(nodes, writer.put("watch-cost listen", "x"))
        say(f"{args.idle:g} s quiet, nobody watching")
        quiet = await counted(nodes, asyncio.sleep(args.idle), 0, args.idle + OP_S)
        lines = [
            f"watch cost: {args.nodes} nodes on 127.0.0.1 (k = {K}), seed {args.seed},"
            f" {loop.name()}; polls every {WATCH_POLL_MIN:g} s doubling to"
            f" {WATCH_POLL_MAX:g} s; datagrams summed over every node",
            f"one lookup of the k nearest (mean of 5): {lookup:.1f} datagrams",
            f"one write round of a plain value (lookup, k stores, k acks): {listen} datagrams",
            f"quiet, nobody watching: {quiet} datagrams in {args.idle:g} s",
        ]
        for kind in kinds(writer):
            if kind.name in args.kinds:
                measured = await measure(nodes, writer, kind, args)
                lines += report(kind.name, measured, args, lookup, listen)
        return lines
    finally:
        for node in nodes:
            node.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle (default 60)")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--spacing", type=float, default=10.0, help="seconds between writes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default="plain,shared,signed")
    args = parser.parse_args()
    args.kinds = args.kinds.split(",")
    started = time.monotonic()
    try:
        lines = loop.run(run(args))
    except TimeoutError:  # a join, write, or version awaited past its bound
        print("watch_cost: a step did not finish within its bound", file=sys.stderr)
        return 1
    lines.append(f"({time.monotonic() - started:.0f} s)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
