"""forge: forged-source writes of every kind against a publisher's keys. I/O.

``nodes`` real kadnode nodes (in this process, default Config, each on a /24
of its own). One of them, the publisher, puts a plain value, puts a shared
value and registers its signed peer record. An attacker at 127.66.0.1 then
writes over them on every node, each write with the publisher's own address
as its forged source (the attacker fetched write tokens for its own address
first, and uses them):

- a plain 3-argument STORE (bmuller's; it carries no token);
- a native STORE with the attacker's token;
- a kn_put of a shared value whose clock supersedes the publisher's;
- a kn_put of a peer record for the publisher's id (signed by the attacker's key);
- a kn_bye in the publisher's name (every node would drop it from its table).

Figure: writes accepted (nodes holding the attacker's value, record or
sibling afterwards, or no longer knowing the publisher), replicas left
holding the attacker's value, and whether a node that holds nothing reads
the publisher's values back. Then two overwrites from
the attacker's own address (not forged: plain and native STOREs), after
which the publisher's own copy must still be its own. Held: 0 forged writes
accepted, every read returns the publisher's value, its own copy unchanged
(issue 13, must-show 4).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable

from kadnode.core import records, vclock
from kadnode.core.identity import Identity
from kadnode.core.ids import key_digest, to_bytes
from kadnode.core.kinds import siblings_from_wire, siblings_to_wire
from kadnode.core.messages import Goodbye, Kind, Put, Store
from kadnode.shell.library import Server

from . import harness
from .harness import Forger, Peer, Result, host

NAME = "forge"
TARGET = "0 forged writes accepted; the publisher's values read back intact; its own copy kept"
ATTACKER = host(66, 0, 1)
SETTLE = 1.0  # seconds for the forged datagrams to be handled
PLAIN, SHARED = "forge-plain", "forge-shared"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=12, help="honest nodes (%(default)s)")


def counted(servers: list[Server], name: str) -> int:
    return sum(s.core.stats[name] for s in servers)


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    did = (
        f"{args.nodes} nodes; the publisher puts a plain and a shared value and registers; "
        "every node gets each kind of write with the publisher's address as forged source"
    )
    result = Result(NAME, did, TARGET)
    forger = Forger()
    servers = await harness.honest_servers(args.nodes)
    attacker = await Peer.open(ATTACKER, rng=rng)
    reader: Server | None = None
    try:
        publisher = servers[0]
        await asyncio.sleep(0.5)
        await publisher.put(PLAIN, "genuine")
        await publisher.put_shared(SHARED, "genuine")
        await publisher.register()
        plain_key, shared_key = key_digest(PLAIN), key_digest(SHARED)
        tokens = await asyncio.gather(*(attacker.token(s.address) for s in servers))
        held = publisher.core.store.get(shared_key)
        clock = vclock.context(siblings_from_wire(held.value)).increment(attacker.id)
        shared_payload = siblings_to_wire((vclock.Versioned("forged", clock),))
        mallory = Identity.generate(rng.randbytes)
        fake = records.sign_record(mallory, [(ATTACKER, 4000)], 2**40, time.time() + 3600)
        record = records.to_wire(fake)
        record[0] = to_bytes(publisher.id)  # claims the publisher's id
        src, pid = publisher.address, publisher.id
        anyone = harness.random_id(rng)  # the sender id of a forged write: any will do

        def holds(value: str, key: bytes = plain_key) -> Callable[[Server], bool]:
            return lambda s: (r := s.core.store.get(key)) is not None and r.value == value

        def has_sibling(s: Server) -> bool:
            r = s.core.store.get(shared_key)
            return r is not None and any(v.value == "forged" for v in siblings_from_wire(r.value))

        def record_moved(s: Server) -> bool:
            r = s.core.store.get(to_bytes(pid))
            return r is not None and records.from_wire(r.value).addresses != (src,)

        kinds = [
            ("plain STORE, 3 args", holds("forged-3"), False,
             lambda t: Store(anyone, plain_key, "forged-3")),
            ("native STORE + token", holds("forged-native"), True,
             lambda t: Store(anyone, plain_key, "forged-native", 3600.0, t)),
            ("kn_put shared (newer clock)", has_sibling, True,
             lambda t: Put(anyone, shared_key, Kind.SHARED, shared_payload, 3600.0, t)),
            ("kn_put peer record", record_moved, True,
             lambda t: Put(anyone, to_bytes(pid), Kind.PEER, record, 3600.0, t)),
            ("kn_bye for the publisher", lambda s: pid not in s.core.table, True,
             lambda t: Goodbye(pid, t)),
        ]  # fmt: skip
        result.columns = ["write", "source", "sent", "accepted"]
        forged_accepted = 0
        for label, accepted_by, native, make in kinds:
            sent = 0
            for server, token in zip(servers, tokens, strict=True):
                if make is kinds[-1][3] and server is publisher:
                    continue  # a goodbye in its own name means nothing to the publisher
                data = harness.datagram(rng, make(token or bytes(8)), native)
                sent += forger.send(data, src, server.address)
            await asyncio.sleep(SETTLE)
            others = servers[1:] if make is kinds[-1][3] else servers
            accepted = sum(1 for s in others if accepted_by(s))
            forged_accepted += accepted
            result.rows.append([label, "forged", sent, accepted if sent else None])
        poisoned = sum(
            1
            for s in servers
            if (r := s.core.store.get(plain_key)) is not None and r.value.startswith("forged")
        )
        reader = await Server.start(harness.honest_host(args.nodes + 1), 0)
        await reader.bootstrap([servers[1].address])
        got = await reader.get(PLAIN)
        shared = await reader.get_shared(SHARED)
        peer = await reader.find_peer(pid)
        values = [s.value for s in siblings_from_wire(shared.payload)] if shared.payload else []
        addresses = records.from_wire(peer.payload).addresses if peer.payload else ()
        in_tables = sum(1 for s in servers[1:] if pid in s.core.table)
        # Overwrites from the attacker's own address: not forged, still not the publisher.
        own = [
            ("plain STORE, 3 args", False, lambda t: Store(attacker.id, plain_key, "overwritten")),
            (
                "native STORE + token",
                True,
                lambda t: Store(attacker.id, plain_key, "overwritten", 3600.0, t),
            ),
        ]
        for label, native, make in own:
            for server, token in zip(servers, tokens, strict=True):
                attacker.send(server.address, make(token or bytes(8)), native)
            await asyncio.sleep(SETTLE)
            accepted = sum(1 for s in servers if holds("overwritten")(s))
            result.rows.append([label, "attacker's own", len(servers), accepted])
        kept = publisher.core.store.get(plain_key)
        own_copy = kept.value if kept is not None else None
    finally:
        harness.close_all([*servers, attacker, *([reader] if reader else [])])
        forger.close()
    if not forger.forging:
        result.notes.append(f"forged rows not run: {forger.why}")
    read_ok = got.value == "genuine" and values == ["genuine"] and addresses == (src,)
    result.figures = {
        "forged writes accepted": forged_accepted,
        "replicas holding a forged plain value": f"{poisoned}/{len(servers)}",
        "reader's plain get": got.value,
        "reader's shared get": values,
        "peer record found": bool(addresses),
        "nodes still knowing the publisher": f"{in_tables}/{len(servers) - 1}",
        "publisher's own copy after overwrites": own_copy,
    }
    if not forger.forging:
        result.held = None
        result.why = "cannot forge a source address here (not root)"
        return result
    result.held = forged_accepted == 0 and read_ok and own_copy == "genuine"
    result.why = (
        f"{forged_accepted} forged writes accepted, {poisoned}/{len(servers)} replicas poisoned, "
        f"the reader got {got.value!r}, the publisher's own copy is {own_copy!r}"
    )
    return result
