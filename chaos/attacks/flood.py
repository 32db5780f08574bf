"""flood: one IP at 10,000 requests/s, honest requests beside it. I/O.

The node under attack (``kadnode run``) first serves ``honest`` clients alone
(each on a /24 of its own, one request every ``interval`` s each, cycling
lookup = find_node, put = a native STORE with its token, get = find_value of
a key it put): the baseline, with the node's CPU. Then one IP (127.66.0.1, a
process of its own) sends find_node from one sender id, with the same honest
load beside it, for ``seconds`` at each of two rates: the node's configured
per-IP rate (all of it answered: what serving that rate costs), then ``rate``
per second (the flood).

Figure: requests the flooder got answered per second once the flood is a
second old (a rate limiter's burst is spent by then), reply bytes, honest
success (a reply within kadnode's own timeout and attempts: 1 s, 2 sends),
and the node's CPU in each phase (/proc/PID/stat), the flood's set against
serving the configured rate. Held: answered per
second at most the node's configured per-IP rate (``--rate-limit``, else
kadnode.config.REQUESTS_PER_IP), honest success >= 99 % (issue 13,
must-show 2).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import time
from collections import Counter
from itertools import cycle

from kadnode.core.codec import NATIVE_MAGIC, RESPONSE, encode_request
from kadnode.core.ids import to_bytes
from kadnode.core.messages import Ack, FindNode, FindValue, NodesReply, Ping, Store, ValueReply

from . import harness
from .harness import Peer, Result, host

NAME = "flood"
LIMIT_NAME = "REQUESTS_PER_IP"
TARGET = f"answered/s <= the configured per-IP rate ({LIMIT_NAME}); honest >= 99 %"
FLOODER = host(66, 0, 1)
HONEST_TARGET = 0.99
POOL = 4096  # distinct pre-built requests the flooder cycles through
# The answered rate is counted after the first second, once a token bucket's
# burst is spent; replies in flight at the window's edges may add 1 %.
WARMUP = 1.0
EDGE = 0.01


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=int, default=10_000, help="requests/s (%(default)s)")
    p.add_argument("--seconds", type=float, default=30.0, help="of flood, > 1 (%(default)s)")
    p.add_argument("--honest", type=int, default=10, help="honest clients (%(default)s)")
    p.add_argument("--interval", type=float, default=0.1, help="s between one's (%(default)s)")
    p.add_argument("--rate-limit", type=float, default=None, help="the node's per-IP rate")


def flooder(target: tuple[str, int], rate: int, seconds: float, out) -> None:
    """In a process of its own: find_node at ``rate``/s for ``seconds``; report counts."""
    rng = random.Random(7)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((FLOODER, 0))
    sock.setblocking(False)
    harness.big_buffer(sock)  # count replies, not what a small buffer dropped
    sender = to_bytes(rng.getrandbits(160))
    pool = [
        encode_request(NATIVE_MAGIC + rng.randbytes(16), "find_node", [sender, rng.randbytes(20)])
        for _ in range(POOL)
    ]
    sent = answered = steady = reply_bytes = errors = 0
    start = time.monotonic()
    end = start + seconds
    settled = start + WARMUP
    requests = cycle(pool)
    while (now := time.monotonic()) < end:
        due = int((now - start) * rate)
        while sent < due:
            try:
                sock.sendto(next(requests), target)
            except (BlockingIOError, OSError):
                errors += 1
            sent += 1
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, OSError):
                break
            if data[:1] == bytes((RESPONSE,)):
                answered += 1
                steady += now >= settled
                reply_bytes += harness.on_wire(len(data))
        time.sleep(0.0005)
    drain = time.monotonic() + 0.5
    while time.monotonic() < drain:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, OSError):
            time.sleep(0.005)
            continue
        answered += data[:1] == bytes((RESPONSE,))
    report = {"sent": sent, "answered": answered, "steady": steady, "reply_bytes": reply_bytes}
    out.send(report | {"errors": errors})
    out.close()


async def honest_load(node, clients: list[Peer], seconds: float, interval: float) -> Counter:
    """Each client: lookup, put, get in turn, one every ``interval`` s, for ``seconds``."""
    tally: Counter = Counter()
    tokens = await asyncio.gather(*(c.token(node.addr) for c in clients))
    end = time.monotonic() + seconds

    async def client(c: Peer, token: bytes | None) -> None:
        rng = random.Random(c.id)
        key = rng.randbytes(20)
        await c.store(node.addr, key, b"honest", token or bytes(8))
        for kind in cycle(("lookup", "put", "get")):
            if time.monotonic() >= end:
                return
            started = time.monotonic()
            if kind == "lookup":
                reply = await c.call(node.addr, FindNode(c.id, harness.random_id(rng)))
                ok = isinstance(reply, NodesReply)
            elif kind == "put":
                reply = await c.call(node.addr, _store(c, rng, token))
                ok = isinstance(reply, Ack) and reply.ok
            else:
                reply = await c.call(node.addr, FindValue(c.id, key))
                ok = isinstance(reply, ValueReply)
            tally[kind, ok] += 1
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    await asyncio.gather(*(client(c, t) for c, t in zip(clients, tokens, strict=True)))
    return tally


def _store(c: Peer, rng: random.Random, token: bytes | None) -> Store:
    return Store(c.id, rng.randbytes(20), b"honest", 3600.0, token or bytes(8))


def success(tally: Counter, kind: str | None = None) -> float:
    kinds = ("lookup", "put", "get") if kind is None else (kind,)
    good = sum(tally[k, True] for k in kinds)
    total = good + sum(tally[k, False] for k in kinds)
    return good / total if total else 0.0


async def phase(node, clients, seconds, interval, flood: dict | None):
    """Honest load for ``seconds`` (with the flooder beside it if ``flood``): tally, CPU %."""
    cpu, wall = node.cpu_seconds(), time.monotonic()
    proc = receive = None
    if flood is not None:
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=flooder, args=(node.addr, flood["rate"], seconds, send))
        proc.start()
        send.close()
    tally = await honest_load(node, clients, seconds, interval)
    report = None
    if proc is not None:
        try:
            report = await asyncio.to_thread(receive.recv) if receive.poll(seconds + 30) else None
        except EOFError:  # the flooder died: its traceback is on stderr
            report = None
        await asyncio.to_thread(proc.join, 10)
        if proc.is_alive():
            os.kill(proc.pid, 9)
    used = (node.cpu_seconds() - cpu) / (time.monotonic() - wall)
    return tally, used, report


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)
    limit = args.rate_limit if args.rate_limit is not None else harness.configured(LIMIT_NAME)
    did = (
        f"one IP sends find_node at {args.rate:,}/s for {args.seconds:g} s; {args.honest} honest "
        f"clients on other /24s send lookups, puts and gets every {args.interval:g} s each"
    )
    result = Result(NAME, did, TARGET)
    async with harness.target() as node:
        clients = await harness.peers(
            [(harness.honest_host(i), 0) for i in range(1, args.honest + 1)],
            [harness.random_id(rng) for _ in range(args.honest)],
        )
        try:
            await asyncio.gather(*(c.call(node.addr, Ping(c.id)) for c in clients))
            base, base_cpu, _ = await phase(node, clients, args.seconds, args.interval, None)
            args.say(f"flood: baseline {success(base):.1%} honest, CPU {base_cpu:.0%}")
            at_rate = None
            if limit is not None:
                at_rate = await phase(
                    node, clients, args.seconds, args.interval, {"rate": round(limit)}
                )
                args.say(f"flood: at the configured rate, CPU {at_rate[1]:.0%}")
            tally, cpu, report = await phase(
                node, clients, args.seconds, args.interval, {"rate": args.rate}
            )
        finally:
            harness.close_all(clients)
    if report is None:
        result.held = None
        result.why = "the flooder process did not report"
        return result
    answered_s = report["steady"] / (args.seconds - WARMUP)
    sent_s = report["sent"] / args.seconds
    result.columns = [
        "phase",
        "flood sent/s",
        "answered/s",
        "honest lookups",
        "puts",
        "gets",
        "CPU",
    ]
    phases = [("honest only", base, base_cpu, None, None)]
    rate_cpu = None
    if at_rate is not None and at_rate[2] is not None:
        rate_t, rate_cpu, rate_report = at_rate
        rate_sent = rate_report["sent"] / args.seconds
        rate_answered = rate_report["steady"] / (args.seconds - WARMUP)
        phases.append(("its rate + honest", rate_t, rate_cpu, rate_sent, rate_answered))
    phases.append(("flood + honest", tally, cpu, sent_s, answered_s))
    for name, t, c, sent, answered in phases:
        result.rows.append(
            [name, sent, answered]
            + [f"{success(t, k):.1%}" for k in ("lookup", "put", "get")]
            + [f"{c:.0%}"]
        )
    honest = success(tally)
    result.figures = {
        "flood answered/s": round(answered_s),
        "answered": f"{report['answered'] / max(1, report['sent']):.1%}",
        "reply MB/s": round(report["reply_bytes"] / args.seconds / 1e6, 2),
        "honest success": f"{honest:.1%}",
        "node CPU (flood)": f"{cpu:.0%}",
        "node CPU (honest only)": f"{base_cpu:.0%}",
        "node CPU (one IP at its configured rate)": "not measured"
        if rate_cpu is None
        else f"{rate_cpu:.0%}",
        "configured per-IP rate": limit,
    }
    if limit is None:
        result.notes.append(f"no per-IP request rate configured (kadnode.config.{LIMIT_NAME})")
    if rate_cpu is not None:
        result.figures["answered/s at its rate"] = round(rate_answered)
    if rate_cpu:
        result.figures["CPU flood / at its rate"] = round(cpu / rate_cpu, 2)
    result.held = limit is not None and answered_s <= limit * (1 + EDGE) and honest >= HONEST_TARGET
    result.why = (
        f"{answered_s:,.0f} answered/s of {sent_s:,.0f} sent/s against a limit of "
        f"{limit if limit is not None else 'none'}; honest success {honest:.1%}"
    )
    return result
