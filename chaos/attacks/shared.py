"""shared: attacks on shared values and on the keys of peer records. I/O.

The node under attack (``kadnode run``) is written to and read from through its
control API, as a user does (``kadnode put-shared``, ``get --shared``). An
attacker at 127.66.0.1, with a write token for its own address, sends kn_put:

- pinning: a sibling whose clock holds the node's own counter at 2**63-1 (the
  largest a counter may be); then the node's user reads the key and writes
  with that context, and writes blind;
- full clock: a sibling naming 32 writers (the most a clock may name),
  concurrent with the user's version; then the user reads the key, and writes
  with the context the read gave;
- squatting: a shared value stored under the id of a node that has not yet
  registered; then that node (a real kadnode node) registers, and the node
  under attack is asked for its peer record.

Figure: for each, whether the attacker's write was taken and what the honest
operations after it did. Held: every honest write and read succeeds; the
peer record is taken and found (issue 13, item 7: no pinning, a full clock
never makes a key unreadable, a shared value cannot squat a record's key).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Callable
from typing import Any

from kadnode.config import MAX_CLOCK_ENTRIES, MAX_WIRE_INT
from kadnode.core.identity import Identity
from kadnode.core.ids import to_bytes, to_hex
from kadnode.core.messages import Kind, Put, PutReply
from kadnode.errors import KadnodeError
from kadnode.shell.library import Server, storage_key

from . import harness
from .harness import Peer, Result, host

NAME = "shared"
TARGET = "no pinning: every honest write and read succeeds; the squatted record is still taken"
ATTACKER = host(66, 0, 1)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--writes", type=int, default=3, help="honest writes after each (%(default)s)")


async def api(call: Callable[[], dict[str, Any]]) -> tuple[bool, str]:
    """An API call from a thread: (succeeded, its error line or a short summary)."""
    try:
        await asyncio.to_thread(call)
    except KadnodeError as exc:
        return False, str(exc)
    return True, "ok"


async def kn_put(attacker: Peer, addr, key: bytes, payload: list, token: bytes) -> str:
    reply = await attacker.call(addr, Put(attacker.id, key, Kind.SHARED, payload, 3600.0, token))
    if not isinstance(reply, PutReply):
        return "no answer"
    return "taken" if reply.reason is None else f"refused: {reply.reason}"


def clock(entries: dict[int, int]) -> list:
    return [[to_bytes(w), c] for w, c in sorted(entries.items())]


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    did = "kn_put from an attacker with a token, then the node's user writes and reads via its API"
    result = Result(NAME, did, TARGET)
    result.columns = ["attack", "attacker's write", "honest operations after it", "failed"]
    outcomes: dict[str, bool] = {}
    async with harness.target() as node:
        attacker = await Peer.open(ATTACKER, rng=rng)
        squatted: Server | None = None
        try:
            client = node.client()
            token = await attacker.token(node.addr) or bytes(8)

            # -- pinning: the node's own counter at its largest --------------------------
            await api(lambda: client.put_shared("pinned", "v0"))
            evil = [["pin", clock({node.id: MAX_WIRE_INT, attacker.id: 1})]]
            taken = await kn_put(attacker, node.addr, storage_key("pinned"), evil, token)
            failures: list[str] = []
            for i in range(args.writes):
                ok, line = await api(lambda: client.get_shared("pinned"))
                context = client.get_shared("pinned")["context"] if ok else None
                ok, line = await api(lambda c=context, i=i: client.put_shared("pinned", f"v{i}", c))
                failures += [] if ok else [line]
                ok, line = await api(lambda i=i: client.put_shared("pinned", f"blind{i}"))
                failures += [] if ok else [line]
            outcomes["pinning"] = not failures
            result.rows.append(
                ["counter 2**63-1", taken, f"{2 * args.writes} writes", _failed(failures)]
            )

            # -- a full clock: 32 writers, concurrent with the user's version -------------
            await api(lambda: client.put_shared("full", "v0"))
            writers = {harness.random_id(rng): 1 for _ in range(MAX_CLOCK_ENTRIES)}
            full = [["full", clock(writers)]]
            taken = await kn_put(attacker, node.addr, storage_key("full"), full, token)
            failures = []
            for i in range(args.writes):
                ok, line = await api(lambda: client.get_shared("full"))
                failures += [] if ok else [f"read: {line}"]
                context = client.get_shared("full")["context"] if ok else None
                if ok:
                    ok, line = await api(
                        lambda c=context, i=i: client.put_shared("full", f"v{i}", c)
                    )
                    failures += [] if ok else [f"write: {line}"]
            outcomes["full clock"] = not failures
            result.rows.append(
                [
                    f"clock of {MAX_CLOCK_ENTRIES} writers",
                    taken,
                    f"{args.writes} reads + context writes",
                    _failed(failures),
                ]
            )

            # -- squatting a peer record's key --------------------------------------------
            identity = Identity.generate(rng.randbytes)
            squatted = await Server.start(harness.honest_host(1), 0, identity=identity)
            payload = [["squat", clock({attacker.id: 1})]]
            taken = await kn_put(attacker, node.addr, to_bytes(squatted.id), payload, token)
            await squatted.ping(node.addr)
            registered = await squatted.register()
            found = await asyncio.to_thread(client.find_peer, to_hex(squatted.id))
            refusals = list(registered.refused)
            failures = refusals + ([] if found["found"] else ["find-peer at the node: not found"])
            outcomes["squatting"] = found["found"] and not refusals
            result.rows.append(
                [
                    "shared value at a node's id",
                    taken,
                    "register, then find-peer at the node",
                    _failed(failures),
                ]
            )
        finally:
            harness.close_all([attacker, *([squatted] if squatted else [])])
    result.figures = {name: "held" if ok else "broken" for name, ok in outcomes.items()}
    result.held = all(outcomes.values())
    broken = [name for name, ok in outcomes.items() if not ok]
    result.why = (
        "every honest operation succeeded" if result.held else "broken: " + ", ".join(broken)
    )
    return result


def _failed(lines: list[str]) -> str:
    if not lines:
        return "none"
    return f"{len(lines)}: {lines[0][:90]}"
