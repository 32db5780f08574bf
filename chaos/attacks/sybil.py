"""sybil: 500 identities from one /24 against 40 honest nodes on distinct /24s. I/O.

``honest`` real kadnode nodes (in this process, default Config, 127.10.i.1:
one /24 each) join, and one of them puts a value. Then ``sybils`` identities
from ONE /24 (127.66.6.x, two ports per address) arrive: each answers pings
and find_node with the sybils nearest the target, never holds a value
(find_value gets contacts), takes and drops every write; ``near`` of them
have ids right next to the value's key. Each sybil pings every honest node;
then every honest node looks up ``lookups`` random ids and the key, and
``fresh`` new honest nodes join through honest nodes.

Figure: the most sybils in any honest routing table and in any one bucket,
their mean share of the tables, the sybils among the k closest a lookup of
the key returns, and the share of gets of the value that find it, from
every honest node that does not hold it (fresh ones included). Held: at most
10 sybils in any table, 2 in any bucket, and >= 99 % of those gets find the
value (issue 13, must-show 3; geth's limits).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter

from kadnode.core.ids import key_digest
from kadnode.core.messages import Contact, Ping
from kadnode.shell.library import Server

from . import harness
from .harness import Peer, Result

NAME = "sybil"
TARGET = "<= 10 sybils in any table, <= 2 in any bucket, >= 99 % of gets find the value"
SYBIL_NET = "127.66.6"
KEY = "sybil-target"
OP_TIMEOUT = 60.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--honest", type=int, default=40, help="honest nodes (%(default)s)")
    p.add_argument("--sybils", type=int, default=500, help="from one /24 (%(default)s)")
    p.add_argument("--near", type=int, default=30, help="sybil ids next to the key (%(default)s)")
    p.add_argument("--lookups", type=int, default=3, help="per honest node (%(default)s)")
    p.add_argument("--fresh", type=int, default=5, help="nodes joining after (%(default)s)")


def sybil_addresses(n: int) -> list[tuple[str, int]]:
    """Two ports on each address of the one /24 (port 0: the kernel picks)."""
    per = -(-n // 254)
    return [(f"{SYBIL_NET}.{i // per + 1}", 0) for i in range(n)]


def is_sybil(contact: Contact) -> bool:
    return harness.subnet(contact.host) == SYBIL_NET


def table_counts(server: Server) -> tuple[int, int, int]:
    """(sybils in the table, the most in one bucket, contacts in the table)."""
    table = server.core.table
    per_bucket: Counter[int] = Counter()
    for contact in table.contacts():
        if is_sybil(contact):
            per_bucket[table.bucket_index(contact.node_id)] += 1
    return sum(per_bucket.values()), max(per_bucket.values(), default=0), len(table)


async def gets(servers: list[Server], key: bytes) -> dict[int, tuple[bool, float]]:
    """A get from every server not holding ``key``, by server id: (found, the sybils'
    share of the k closest a lookup of the key returns)."""
    askers = [s for s in servers if s.core.store.get(key) is None]

    async def one(s: Server) -> tuple[bool, float]:
        got = await asyncio.wait_for(s.get(KEY), OP_TIMEOUT)
        closest = (await asyncio.wait_for(s.lookup(int.from_bytes(key, "big")), OP_TIMEOUT)).closest
        share = sum(map(is_sybil, closest)) / len(closest) if closest else 0.0
        return got.found, share

    results = await asyncio.gather(*(one(s) for s in askers))
    return {s.id: r for s, r in zip(askers, results, strict=True)}


def found(results: dict[int, tuple[bool, float]], among: list[Server] | None = None) -> str:
    ids = results.keys() if among is None else [s.id for s in among if s.id in results]
    return f"{sum(results[i][0] for i in ids)}/{len(ids)}"


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    did = (
        f"{args.sybils} sybils from {SYBIL_NET}.0/24 ({args.near} next to the key) against "
        f"{args.honest} honest nodes on distinct /24s; {args.fresh} fresh nodes join after"
    )
    result = Result(NAME, did, TARGET)
    key = key_digest(KEY)
    target = int.from_bytes(key, "big")
    servers = await harness.honest_servers(args.honest)
    sybils: list[Peer] = []
    fresh: list[Server] = []
    try:
        await asyncio.wait_for(servers[0].put(KEY, "genuine"), OP_TIMEOUT)
        holders = sum(1 for s in servers if s.core.store.get(key) is not None)
        before = await gets(servers, key)
        args.say(f"sybil: before: {found(before)} gets found the value")
        ids = [target ^ rng.getrandbits(120) for _ in range(args.near)]
        ids += [harness.random_id(rng) for _ in range(args.sybils - args.near)]
        sybils = await harness.peers(sybil_addresses(args.sybils), ids, answer=True)
        everyone = [s.contact for s in sybils]

        def nearest(t: int) -> list[Contact]:
            return sorted(everyone, key=lambda c: c.node_id ^ t)[:20]

        for s in sybils:
            s.neighbours = nearest
        for s in sybils:  # every sybil meets every honest node
            for h in servers:
                s.send(h.address, Ping(s.id))
            await asyncio.sleep(0.002)
        await asyncio.sleep(1.0)
        lookups = [harness.random_id(rng) for _ in range(args.lookups)] + [target]
        await asyncio.gather(
            *(asyncio.wait_for(h.lookup(t), OP_TIMEOUT) for h in servers for t in lookups)
        )
        fresh = await harness.honest_servers(
            args.fresh, seed=servers[-1].address, first=args.honest + 1
        )
        args.say("sybil: attack in place; measuring tables and gets")
        counts = [table_counts(s) for s in [*servers, *fresh]]
        after = await gets([*servers, *fresh], key)
    finally:
        harness.close_all([*servers, *fresh, *sybils])
    most = max(c[0] for c in counts)
    per_bucket = max(c[1] for c in counts)
    share = sum(c[0] / c[2] for c in counts if c[2]) / len(counts)
    got = sum(f for f, _ in after.values()) / len(after) if after else 0.0
    shares = [share for _, share in after.values()]
    result.columns = ["measure", "value"]
    result.rows = [
        ["honest nodes holding the value (before)", f"{holders}/{args.honest}"],
        ["gets finding it before the sybils (non-holders)", found(before)],
        ["most sybils in one honest table", most],
        ["most sybils in one bucket", per_bucket],
        ["mean sybil share of honest tables", f"{share:.0%}"],
        ["gets finding it after (non-holders)", found(after)],
        ["  of which from fresh nodes", found(after, fresh)],
        ["mean sybils among a key lookup's k closest", f"{sum(shares) / max(1, len(shares)):.0%}"],
    ]
    result.figures = {
        "max sybils per table": most,
        "max per bucket": per_bucket,
        "gets found": f"{got:.0%}",
    }
    result.held = most <= 10 and per_bucket <= 2 and got >= 0.99
    result.why = (
        f"up to {most} sybils in a table and {per_bucket} in a bucket; {found(after)} gets "
        "found the value"
    )
    return result
