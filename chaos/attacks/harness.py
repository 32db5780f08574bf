"""What every attack needs: the node under attack, forged sources, peers, reports. I/O.

- :class:`Target`: one ``kadnode run`` subprocess on loopback (the real daemon:
  SQLite store, the shell's transport), its log, its CPU time from
  /proc/PID/task/*/schedstat and its counters from the control API. Stopped
  by its pid. :class:`LocalTarget`: a node in this process instead, for a
  Config the daemon has no flag for.
- :class:`Forger`: UDP datagrams with any 127.x.y.z source address, from a
  raw socket with IP_HDRINCL (root); without root it sends from a socket bound
  to that address instead, which then receives the replies itself (the same
  bytes arrive, nothing is forged).
- :class:`Peer`: a minimal speaker of kadnode's wire on one 127.x address: it
  sends requests and awaits their replies, answers what it is asked (sybils,
  honest writers), or stays silent and only counts what arrives (a victim).
- :func:`honest_servers`: real kadnode nodes (``kadnode.shell.library.Server``,
  default Config) in this process, each on a /24 of its own (127.10.i.1).
- :class:`Result`: what an attack did, its figures in a table, what would
  count as held, and the verdict; rendered as text or JSON.

Every address is in 127.0.0.0/8; every wait has a deadline; processes are
ended by the pid this module started.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kadnode import config
from kadnode.cli.client import ApiClient
from kadnode.core import codec
from kadnode.core.codec import NATIVE_MAGIC, Request, Response
from kadnode.core.ids import ID_BITS, ID_BYTES, to_bytes
from kadnode.core.messages import (
    Ack,
    Addr,
    BucketList,
    Contact,
    Digest,
    FindNode,
    FindSuccessor,
    FindValue,
    KeyList,
    NodesReply,
    Ping,
    PingReply,
    Put,
    PutReply,
    ReplyMessage,
    RequestMessage,
    RingQuery,
    RingReply,
    Store,
    SuccessorReply,
)
from kadnode.errors import DecodeError
from kadnode.shell.datadir import TOKEN_FILE
from kadnode.shell.library import Server

# An IPv4 header (20 bytes, no options) and a UDP header (8): what every
# datagram adds on the wire to the bytes the socket sends.
WIRE_OVERHEAD = 28
TARGET_HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CALL_TIMEOUT = 1.0  # kadnode's own first RTO before any RTT sample (config.RTO_INITIAL)
CALL_ATTEMPTS = config.REQUEST_ATTEMPTS
STARTED = re.compile(r"node ([0-9a-f]{40}) on udp (\S+):(\d+), control api http://")


def on_wire(size: int) -> int:
    """Bytes on the wire of a datagram whose UDP payload is ``size`` bytes."""
    return size + WIRE_OVERHEAD


def host(a: int, b: int, c: int) -> str:
    """127.a.b.c"""
    return f"127.{a}.{b}.{c}"


def subnet(host_: str) -> str:
    """The /24 of an IPv4 address: '127.10.3'."""
    return host_.rsplit(".", 1)[0]


def configured(name: str) -> Any:
    """A limit from kadnode.config, or None where this kadnode has no such limit
    (the defenses of issue 13 bring them; every attack says which it looked for)."""
    return getattr(config, name, None)


def near(node_id: int, rng: random.Random, bits: int = 32) -> int:
    """A random id within 2**bits of ``node_id`` by XOR (an attacker's choice of id)."""
    return node_id ^ rng.getrandbits(bits) or node_id ^ 1


def random_id(rng: random.Random) -> int:
    return rng.getrandbits(ID_BITS)


def msg_id(rng: random.Random, native: bool) -> bytes:
    """A message id: kadnode's native prefix, or random as rpcudp/bmuller make them."""
    if native:
        return NATIVE_MAGIC + rng.randbytes(ID_BYTES - len(NATIVE_MAGIC))
    return rng.randbytes(ID_BYTES)


def datagram(rng: random.Random, message: RequestMessage, native: bool) -> bytes:
    return codec.encode(msg_id(rng, native), message)


# ---- reports -------------------------------------------------------------------------------


@dataclass
class Result:
    """One attack's report: what it did, its table, the target, the verdict."""

    attack: str
    did: str  # what the attack did, plainly
    target: str  # what would count as held (issue 13's target)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # the headline numbers
    held: bool | None = None  # None: could not run
    why: str = ""  # the verdict's reason, one line
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        if self.held is None:
            return "NOT RUN"
        return "HELD" if self.held else "BROKEN"

    def as_json(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "did": self.did,
            "target": self.target,
            "verdict": self.verdict,
            "why": self.why,
            "figures": self.figures,
            "table": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
        }

    def render(self) -> str:
        lines = [f"attack {self.attack}: {self.verdict}: {self.why}", f"  did: {self.did}"]
        if self.columns:
            cells = [[_cell(v) for v in row] for row in self.rows]
            widths = [
                max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)
            ]
            lines.append(
                "  " + "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))
            )
            lines += [
                "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells
            ]
        lines.append("  figures: " + ", ".join(f"{k} {_cell(v)}" for k, v in self.figures.items()))
        lines.append(f"  held would be: {self.target}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  ({self.seconds:.1f} s)")
        return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def not_run(attack: str, did: str, target: str, why: str) -> Result:
    return Result(attack, did, target, held=None, why=why)


# ---- the node under attack: a kadnode run subprocess -----------------------------------------


def free_port(kind: socket.SocketKind, host_: str = TARGET_HOST) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host_, 0))
        return sock.getsockname()[1]


def _proc_stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class Target:
    """``kadnode run`` on loopback, in a temporary data directory of its own.

    Every one started is stopped at interpreter exit too, should an attack end
    without leaving its ``async with`` (by its pid: :func:`stop_all`).
    """

    def __init__(self, host_: str = TARGET_HOST, bootstrap: Iterable[Addr] = ()):
        self.host = host_
        self.port = free_port(socket.SOCK_DGRAM, host_)
        self.api_port = free_port(socket.SOCK_STREAM)
        self.dir = Path(tempfile.mkdtemp(prefix="kadattack-"))
        self.log_path = self.dir / "kadnode.log"
        argv = [
            sys.executable, "-m", "kadnode.cli", "run", "--host", host_, "--port",
            str(self.port), "--data-dir", str(self.dir / "data"), "--api",
            f"127.0.0.1:{self.api_port}", "--log-level", "info",
        ]  # fmt: skip
        for h, p in bootstrap:
            argv += ["--bootstrap", f"{h}:{p}"]
        env = {k: v for k, v in os.environ.items() if k != "KADNODE_API"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip
        self.id = 0
        _RUNNING.add(self)

    @property
    def addr(self) -> Addr:
        return (self.host, self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ready(self) -> Target:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = STARTED.search(self.log())
            if found:
                self.id = int(found.group(1), 16)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"kadnode run exited {self.proc.returncode}: {self.log()[-500:]}"
                )
            await asyncio.sleep(0.05)
        raise RuntimeError(f"kadnode run did not listen within {START_TIMEOUT:g} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, timeout: float = 30.0) -> ApiClient:
        token = (self.dir / "data" / TOKEN_FILE).read_text().strip()
        return ApiClient(f"127.0.0.1:{self.api_port}", timeout=timeout, token=token)

    async def info(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.client().info)

    def cpu_seconds(self) -> float:
        """CPU time of the daemon so far, all its threads: nanoseconds on a CPU from
        /proc/PID/task/*/schedstat (user + system at the scheduler's resolution,
        not /proc/PID/stat's 10 ms ticks)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that just ended
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss_mb(self) -> float:
        return int(_proc_stat(self.pid)[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT: by the pid this object started."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)
        _RUNNING.discard(self)


_RUNNING: set[Target] = set()


@atexit.register
def stop_all() -> None:
    """Stop every Target still running (an attack interrupted mid-way)."""
    for node in list(_RUNNING):
        node.stop()


@contextlib.asynccontextmanager
async def target(host_: str = TARGET_HOST, bootstrap: Iterable[Addr] = ()):
    node = Target(host_, bootstrap)
    try:
        yield await node.ready()
    finally:
        await asyncio.to_thread(node.stop)


class LocalTarget:
    """The node under attack as a Server in this process, for a Config the daemon
    has no flag for (a small store, so a bounded run fills it). Same face as
    :class:`Target` where the attacks need it: ``addr``, ``id``, ``info()``."""

    def __init__(self, server: Server):
        self.server = server
        self.id = server.id
        self.addr = server.address

    async def info(self) -> dict[str, Any]:
        core = self.server.core
        return {"values": len(core.store), "peers": len(core.table), "stats": dict(core.stats)}


@contextlib.asynccontextmanager
async def local_target(cfg: config.Config, host_: str = TARGET_HOST):
    server = await Server.start(host_, 0, config=cfg)
    try:
        yield LocalTarget(server)
    finally:
        server.close()


# ---- forged sources ------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ip_udp_packet(src: Addr, dst: Addr, payload: bytes) -> bytes:
    """An IPv4 + UDP packet from ``src`` to ``dst`` (RFC 791, RFC 768), checksum included."""
    length = 8 + len(payload)
    s, d = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    pseudo = s + d + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    header = struct.pack("!HHHH", src[1], dst[1], length, 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", src[1], dst[1], length, checksum) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, socket.IPPROTO_UDP, 0, s, d
    )  # the kernel fills in the IP checksum and id with IP_HDRINCL
    return ip + udp


class Forger:
    """Sends datagrams with a source address of our choosing (127.0.0.0/8 only)."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.why = ""
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            self.why = "not root: no raw socket, so requests are sent from the victim's own socket"
        self.sent = 0

    @property
    def forging(self) -> bool:
        return self.sock is not None

    def send(self, data: bytes, src: Addr, dst: Addr, fallback: Peer | None = None) -> bool:
        """Send ``data`` to ``dst`` as if from ``src``; without a raw socket, from
        ``fallback`` (a peer bound to ``src``) if given. False when it cannot be sent."""
        _loopback(src[0])
        _loopback(dst[0])
        if self.sock is not None:
            self.sock.sendto(ip_udp_packet(src, dst, data), (dst[0], 0))
        elif fallback is not None and fallback.addr == src:
            fallback.send_raw(data, dst)
        else:
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def _loopback(address: str) -> None:
    if not address.startswith("127."):
        raise ValueError(f"the adversarial suite sends only within 127.0.0.0/8, not to {address}")


# ---- peers: requests, replies, victims -----------------------------------------------------


async def quiet(node, settle: float = 0.5, timeout: float = 30.0) -> bool:
    """Wait until ``node`` sends nothing for ``settle`` s (its datagrams_out counter);
    False if it was still sending after ``timeout`` s."""
    last = (await node.info())["stats"].get("datagrams_out", 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(settle)
        now = (await node.info())["stats"].get("datagrams_out", 0)
        if now == last:
            return True
        last = now
    return False


RCVBUF = 64 * 2**20  # a victim must not drop a burst of the node's datagrams unread
# Linux's SO_RCVBUFFORCE (root: past net.core.rmem_max); Python names it on few builds.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def big_buffer(sock: socket.socket) -> None:
    """Give ``sock`` a RCVBUF receive buffer: forced as root, else as large as allowed."""
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF)
            return


class Peer(asyncio.DatagramProtocol):
    """One id on one loopback address speaking kadnode's wire.

    ``answer``: reply to requests (as a minimal node: contacts from
    ``neighbours``, every write acknowledged and dropped); off, it is a victim
    that only counts what arrives (``arrivals``: time and bytes on the wire).
    """

    TOKEN = b"\x00" * config.TOKEN_BYTES

    def __init__(self, node_id: int, answer: bool = True, rng: random.Random | None = None):
        self.id = node_id
        self.answer = answer
        self.rng = rng or random.Random(node_id)
        self.neighbours: Callable[[int], list[Contact]] = lambda _target: []
        self.transport: asyncio.DatagramTransport | None = None
        self.addr: Addr = ("", 0)
        self.arrivals: list[tuple[float, int]] = []
        self.requests_in = 0
        self._pending: dict[bytes, asyncio.Future] = {}

    @classmethod
    async def open(cls, host_: str, port: int = 0, node_id: int | None = None, **kw) -> Peer:
        _loopback(host_)
        rng = kw.pop("rng", None) or random.Random()
        peer = cls(node_id if node_id is not None else random_id(rng), rng=rng, **kw)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: peer, local_addr=(host_, port))
        return peer

    @property
    def contact(self) -> Contact:
        return Contact(self.id, *self.addr, native=True)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.addr = transport.get_extra_info("sockname")[:2]
        big_buffer(transport.get_extra_info("socket"))

    def drops(self) -> int:
        """Datagrams the kernel dropped at this socket (its receive buffer was full):
        the ``drops`` column of /proc/net/udp for its port."""
        port = f"{self.addr[1]:04X}"
        ip = socket.inet_aton(self.addr[0])[::-1].hex().upper()
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1] == f"{ip}:{port}":
                    return int(fields[-1])
        return 0

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        self.arrivals.append((time.monotonic(), on_wire(len(data))))
        try:
            message = codec.decode(data, config.MAX_DATAGRAM)
        except DecodeError:
            return
        if type(message) is Response:
            fut = self._pending.get(message.msg_id)
            if fut is not None and not fut.done():
                fut.set_result(message.body)
            return
        self.requests_in += 1
        if self.answer:
            reply = self.reply_to(message)
            self.send_raw(codec.encode(message.msg_id, reply), addr)

    def reply_to(self, request: Request) -> ReplyMessage:
        m, native = request.message, request.native
        token = self.TOKEN if native else None
        kind = type(m)
        if kind is Ping:
            return PingReply(self.id, token)
        if kind in (FindNode, FindValue):
            target = m.target if kind is FindNode else int.from_bytes(m.key, "big")
            return NodesReply(self.neighbours(target), native, token)
        if kind is Put:
            return PutReply(None)
        if kind is RingQuery:
            return RingReply(None, [])
        if kind is FindSuccessor:
            return SuccessorReply(True, None)
        if kind in (Digest, KeyList):
            return BucketList([])
        return Ack(kind is Store)  # a store taken (and dropped); a goodbye not believed

    def send_raw(self, data: bytes, addr: Addr) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def send(self, addr: Addr, message: RequestMessage, native: bool = True) -> int:
        """Fire and forget; the datagram's bytes on the wire."""
        data = datagram(self.rng, message, native)
        self.send_raw(data, addr)
        return on_wire(len(data))

    async def call(
        self,
        addr: Addr,
        message: RequestMessage,
        native: bool = True,
        timeout: float = CALL_TIMEOUT,
        attempts: int = CALL_ATTEMPTS,
    ) -> ReplyMessage | None:
        """A request and its decoded reply; None when none came (retransmitted with the
        same id, as kadnode does) or the reply was malformed."""
        mid = msg_id(self.rng, native)
        data = codec.encode(mid, message)
        fut = asyncio.get_running_loop().create_future()
        self._pending[mid] = fut
        try:
            for _ in range(attempts):
                self.send_raw(data, addr)
                with contextlib.suppress(TimeoutError):
                    body = await asyncio.wait_for(asyncio.shield(fut), timeout)
                    return codec.decode_reply(message, body)
            return None
        except DecodeError:
            return None
        finally:
            self._pending.pop(mid, None)
            fut.cancel()

    async def token(self, addr: Addr) -> bytes | None:
        """A write token from ``addr`` for this peer's address (a native find_node)."""
        reply = await self.call(addr, FindNode(self.id, self.id))
        return getattr(reply, "token", None)

    async def store(
        self, addr: Addr, key: bytes, value: object, token: bytes, ttl: float = 86400.0
    ) -> bool:
        """A native STORE with a token: True when acknowledged."""
        reply = await self.call(addr, Store(self.id, key, value, ttl, token))
        return isinstance(reply, Ack) and reply.ok

    def received(self, since: float = 0.0, until: float = float("inf")) -> tuple[int, int]:
        """(datagrams, bytes on the wire) that arrived in [since, until) (monotonic)."""
        got = [b for t, b in self.arrivals if since <= t < until]
        return len(got), sum(got)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def peers(hosts: Iterable[tuple[str, int]], ids: Iterable[int], **kw) -> list[Peer]:
    return [await Peer.open(h, p, i, **kw) for (h, p), i in zip(hosts, ids, strict=True)]


def close_all(items: Iterable[Any]) -> None:
    for item in items:
        item.close()


# ---- honest nodes: real kadnode nodes in this process --------------------------------------


def honest_host(i: int) -> str:
    """Honest node ``i`` (from 1) on a /24 of its own: 127.10.i.1, then 127.11.(i-250).1..."""
    return host(10 + (i - 1) // 250, (i - 1) % 250 + 1, 1)


async def honest_servers(n: int, seed: Addr | None = None, first: int = 1) -> list[Server]:
    """``n`` kadnode nodes (default Config) on distinct /24s, each joined through
    ``seed`` (else through the first of them)."""
    started: list[Server] = []
    try:
        for i in range(first, first + n):
            server = await Server.start(honest_host(i), 0)
            started.append(server)
            via = seed or started[0].address
            if server.address != via:
                await asyncio.wait_for(server.bootstrap([via]), 60)
    except BaseException:
        close_all(started)
        raise
    return started


def id_bytes(node_id: int) -> bytes:
    return to_bytes(node_id)


def dump(results: list[Result]) -> str:
    return json.dumps([r.as_json() for r in results], indent=2)
