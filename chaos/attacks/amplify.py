"""amplify: every request type with a forged source, and what reaches the victim. I/O.

The node under attack (``kadnode run``) knows ``peers`` honest contacts
(127.10.i.1, each on its own /24) and holds ``values`` plain values whose keys
lie in its own neighbourhood, so that it is their nearest holder (as a node is
for the keys nearest its id); an attacker at 127.66.0.1 plants one large value
(as large as a datagram carries) from its own address. Then, for each request
type, one request is sent with a forged source: the victim's address
(127.77.ROW.1 or .2, where a socket of ours counts every datagram that
arrives). Each request goes twice, to two victims:

- ``known id``: the request names the id of one of the node's honest contacts
  (which it knows at another address), so the node sees no newcomer: what
  reaches the victim is the reply, and whatever the request itself causes;
- ``new id``: a sender id never seen before, next to the node's own id (an
  attacker picks it so), so the request is also a first contact: join handoff,
  pings, ring and anti-entropy traffic to the newcomer.

Figure: bytes on the wire (IP and UDP headers, 28 bytes a datagram, included)
that reach the victim within ``window`` seconds after the request, divided by
the request's bytes on the wire. Held: every figure at most 3.0 (issue 13,
must-show 1; QUIC's anti-amplification limit).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable

from kadnode.config import AE_BUCKETS, AE_HASH_BYTES, MAX_DATAGRAM, TOKEN_BYTES
from kadnode.core.codec import NONCE_BYTES
from kadnode.core.ids import to_bytes
from kadnode.core.messages import (
    Dial,
    Dialed,
    Digest,
    FindNode,
    FindSuccessor,
    FindValue,
    Goodbye,
    KeyList,
    Kind,
    Ping,
    Put,
    Reach,
    RequestMessage,
    RingQuery,
    Store,
)

from . import harness
from .harness import Forger, Peer, Result, host, on_wire

NAME = "amplify"
TARGET = "every request type, known or new sender id: at most 3.0x within the window"
LIMIT = 3.0
ATTACKER = host(66, 0, 1)
VICTIM_PORT = 0  # any free port: two runs at once do not collide
REQUEST_SETTLE = 0.3  # seconds before checking the node counted the request
LARGE_VALUE = MAX_DATAGRAM - 200  # bytes: what one STORE datagram can carry
# Where a forged kn_dial asks the node to send its dial-back: on loopback,
# like every address here; the row counts what reaches the forged source.
DIAL_TARGET = host(77, 250, 1), 9


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=float, default=600.0, help="seconds counted (%(default)s)")
    p.add_argument("--values", type=int, default=1000, help="values held (%(default)s)")
    p.add_argument("--value-bytes", type=int, default=100, help="each (%(default)s)")
    p.add_argument("--peers", type=int, default=24, help="honest contacts (%(default)s)")
    p.add_argument(
        "--gap",
        type=float,
        default=5.0,
        help="seconds between new ids: a newcomer whose victim never answers is dropped "
        "from the table by then, so it hands over nothing in the next one's place (%(default)s)",
    )


Make = Callable[[int, random.Random, bytes], RequestMessage]


def requests(large_key: bytes) -> list[tuple[str, bool, Make]]:
    """(label, native dialect, message for a sender id): every request type."""

    def key(rng: random.Random) -> bytes:
        return rng.randbytes(20)

    def token(rng: random.Random) -> bytes:
        return rng.randbytes(TOKEN_BYTES)

    def shared(s: int, rng: random.Random) -> Put:
        payload = [[b"x", [[to_bytes(s), 1]]]]
        return Put(s, key(rng), Kind.SHARED, payload, 60.0, token(rng))

    return [
        ("ping", False, lambda s, r, _: Ping(s)),
        ("ping (native)", True, lambda s, r, _: Ping(s)),
        ("store, 3 args", False, lambda s, r, _: Store(s, key(r), b"x")),
        ("store, 5 args (native)", True, lambda s, r, _: Store(s, key(r), b"x", 60.0, token(r))),
        ("find_node", False, lambda s, r, _: FindNode(s, harness.random_id(r))),
        ("find_node (native)", True, lambda s, r, _: FindNode(s, harness.random_id(r))),
        ("find_value", False, lambda s, r, _: FindValue(s, key(r))),
        ("find_value (native)", True, lambda s, r, _: FindValue(s, key(r))),
        ("find_value, large value", False, lambda s, r, large: FindValue(s, large)),
        ("find_value, large (native)", True, lambda s, r, large: FindValue(s, large)),
        ("kn_put (shared)", True, lambda s, r, _: shared(s, r)),
        ("kn_ring", True, lambda s, r, _: RingQuery(s)),
        ("kn_find_successor", True, lambda s, r, _: FindSuccessor(s, harness.random_id(r))),
        ("kn_digest", True, lambda s, r, _: Digest(s, [bytes(AE_HASH_BYTES)] * AE_BUCKETS)),
        ("kn_keys (all buckets)", True, lambda s, r, _: KeyList(s, list(range(AE_BUCKETS)), [])),
        ("kn_bye", True, lambda s, r, _: Goodbye(s, token(r))),
        # The reachability dial-back (kadnode.core.reach): a forger asks the
        # node to have a stranger dial it, or to dial an address itself.
        ("kn_reach", True, lambda s, r, _: Reach(s, r.randbytes(NONCE_BYTES), token(r))),
        ("kn_dial", True, lambda s, r, _: Dial(s, DIAL_TARGET, r.randbytes(NONCE_BYTES), token(r))),
        ("kn_dialed", True, lambda s, r, _: Dialed(s, r.randbytes(NONCE_BYTES))),
    ]


async def plant(target_addr, writers: list[Peer], keys: list[bytes], value: bytes) -> int:
    """Native STOREs (with tokens) from honest writers, spread over them; how many taken."""
    tokens = await asyncio.gather(*(w.token(target_addr) for w in writers))
    gate = asyncio.Semaphore(32)

    async def one(i: int, key: bytes) -> bool:
        w, tok = writers[i % len(writers)], tokens[i % len(writers)]
        if tok is None:
            return False
        async with gate:
            return await w.store(target_addr, key, value, tok)

    return sum(await asyncio.gather(*(one(i, k) for i, k in enumerate(keys))))


async def plant_large(attacker: Peer, target_addr, rng: random.Random) -> tuple[bytes, str]:
    """One large value from the attacker's own address: native first, else 3 args."""
    key = rng.randbytes(20)
    value = rng.randbytes(LARGE_VALUE)
    tok = await attacker.token(target_addr)
    if tok is not None and await attacker.store(target_addr, key, value, tok):
        return key, "native STORE with the attacker's own token"
    reply = await attacker.call(target_addr, Store(attacker.id, key, value), native=False)
    if getattr(reply, "ok", False):
        return key, "3-argument STORE"
    return key, "refused"


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    did = (
        f"node holds {args.values} x {args.value_bytes}-byte values near its id and knows "
        f"{args.peers} honest contacts; one request of each type with a forged source "
        f"(the victim's address), counted at the victim for {args.window:g} s"
    )
    result = Result(NAME, did, TARGET)
    forger = Forger()
    if not forger.forging:
        result.notes.append(forger.why)
    opened: list[Peer] = []
    lost = 0
    async with harness.target() as node:
        try:
            honest = await harness.peers(
                [(harness.honest_host(i), 0) for i in range(1, args.peers + 1)],
                [harness.random_id(rng) for _ in range(args.peers)],
            )
            opened += honest
            await asyncio.gather(*(p.call(node.addr, Ping(p.id)) for p in honest))
            keys = [harness.id_bytes(harness.near(node.id, rng, 150)) for _ in range(args.values)]
            taken = await plant(node.addr, honest, keys, rng.randbytes(args.value_bytes))
            attacker = await Peer.open(ATTACKER, rng=rng)
            opened.append(attacker)
            large_key, how = await plant_large(attacker, node.addr, rng)
            info = await node.info()
            result.notes.append(
                f"values held before the attack: {info['values']} ({taken} planted by honest "
                f"writers); large value ({LARGE_VALUE} bytes) planted by the attacker: {how}; "
                f"contacts known: {info['peers']}"
            )
            rows = requests(large_key)
            victims: list[tuple[Peer, Peer]] = []
            for row in range(len(rows)):
                pair = (
                    await Peer.open(host(77, row + 1, 1), VICTIM_PORT, answer=False),
                    await Peer.open(host(77, row + 1, 2), VICTIM_PORT, answer=False),
                )
                victims.append(pair)
                opened += pair
            sends: list[tuple[int, int, float, int]] = []  # row, column, at, bytes on the wire
            lost = 0
            jobs = [(row, 0) for row in range(len(rows))] + [(row, 1) for row in range(len(rows))]
            for row, column in jobs:
                _label, native, make = rows[row]
                # Known ids first (none is a newcomer), then each new id alone. Every
                # request waits until the node is quiet, so it is neither lost behind
                # a burst nor handed over to in a previous newcomer's place.
                await harness.quiet(node)
                sender = honest[row % len(honest)].id if column == 0 else harness.near(node.id, rng)
                victim = victims[row][column]
                for _attempt in range(2):  # once more if the node did not get it
                    data = harness.datagram(rng, make(sender, rng, large_key), native)
                    handled = (await node.info())["stats"]["requests_in"]
                    if not forger.send(data, victim.addr, node.addr, fallback=victim):
                        break
                    at = time.monotonic()
                    await asyncio.sleep(REQUEST_SETTLE)
                    if (await node.info())["stats"]["requests_in"] > handled:
                        sends.append((row, column, at, on_wire(len(data))))
                        break
                    lost += 1
                await asyncio.sleep(args.gap if column else 0.0)
            last = max(at for _, _, at, _ in sends)
            await asyncio.sleep(max(0.0, last + args.window - time.monotonic()))
            figures: dict[tuple[int, int], tuple[int, int, int]] = {}
            for row, column, at, size in sends:
                count, size_in = victims[row][column].received(at - 0.001, at + args.window)
                figures[row, column] = (size, count, size_in)
            after = await node.info()
        finally:
            harness.close_all(opened)
            forger.close()
    result.columns = [
        "request",
        "request B",
        "known id: dgrams",
        "B",
        "x",
        "new id: dgrams",
        "B",
        "x",
    ]
    worst = (0.0, "")
    for row, (label, _native, _make) in enumerate(rows):
        cells: list = [label, figures.get((row, 0), (0,))[0]]
        for column, who in ((0, "known id"), (1, "new id")):
            size, count, size_in = figures.get((row, column), (0, 0, 0))
            ratio = size_in / size if size else None
            cells += [count, size_in, ratio]
            if ratio is not None and ratio > worst[0]:
                worst = (ratio, f"{label}, {who}")
        result.rows.append(cells)
    stats = after["stats"]
    result.figures = {
        "max amplification": round(worst[0], 1),
        "worst": worst[1],
        "first contact (ping, new id)": _ratio(figures, 0),
        "large value reply": _ratio(figures, 8, 0),
    }
    result.notes.append(
        f"node counters after: keys_handed_on_join {stats.get('keys_handed_on_join', 0)}, "
        f"ae_pushed {stats.get('ae_pushed', 0)}, datagrams_out {stats.get('datagrams_out', 0)}"
    )
    drops = sum(v.drops() for pair in victims for v in pair)
    result.notes.append(
        f"forged source: {'raw socket (IP_HDRINCL)' if forger.forging else 'none (not root)'}; "
        "victims never answer; each victim counts only its own request's window; "
        f"datagrams dropped at the victims' sockets: {drops}; requests the node did not "
        f"get (sent again): {lost}"
    )
    result.held = worst[0] <= LIMIT
    result.why = f"worst {worst[0]:.1f}x ({worst[1]}) against at most {LIMIT}x"
    return result


def _ratio(figures: dict, row: int, column: int = 1) -> float | None:
    size, _count, size_in = figures.get((row, column), (0, 0, 0))
    return round(size_in / size, 1) if size else None
