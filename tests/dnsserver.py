"""A tiny authoritative DNS server for tests, stdlib only. Does network I/O (UDP).

It answers A, AAAA and SRV questions from a dict zone (RFC 1035 section 4,
RFC 2782 for SRV rdata): NXDOMAIN for a name it does not know, an empty
NOERROR answer for a known name without records of the asked type. Every
question it sees is recorded in :attr:`DnsServer.queries`, so a test can assert
that no DNS traffic happened at all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

TYPE_A = 1
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA", TYPE_SRV: "SRV"}
CLASS_IN = 1
RCODE_NXDOMAIN = 3
TTL = 60


@dataclass(frozen=True, slots=True)
class Srv:
    """One SRV record: RFC 2782 field order."""

    priority: int
    weight: int
    port: int
    target: str


# name -> record type ("A", "AAAA", "SRV") -> records ("1.2.3.4", "::1", Srv(...))
Zone = dict[str, dict[str, list[str | Srv]]]


def encode_name(name: str) -> bytes:
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def _parse_question(query: bytes) -> tuple[str, int, int]:
    """Return (name, qtype, end offset of the question section)."""
    offset, labels = 12, []
    while query[offset]:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, _qclass = struct.unpack_from("!HH", query, offset + 1)
    return ".".join(labels).lower(), qtype, offset + 5


def _rdata(record: str | Srv) -> bytes:
    if isinstance(record, Srv):
        head = struct.pack("!HHH", record.priority, record.weight, record.port)
        return head + encode_name(record.target)
    return ipaddress.ip_address(record).packed


def answer(zone: Zone, query: bytes) -> tuple[bytes, str]:
    """Build the reply to one query; also return "NAME TYPE" for the log."""
    ident, flags = struct.unpack_from("!HH", query)
    name, qtype, end = _parse_question(query)
    records = zone.get(name)
    rcode = RCODE_NXDOMAIN if records is None else 0
    found = (records or {}).get(TYPE_NAMES.get(qtype, ""), [])
    # QR, AA and RA set; opcode and RD copied from the query.
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
    out = [struct.pack("!HHHHHH", ident, reply_flags, 1, len(found), 0, 0), query[12:end]]
    for record in found:
        data = _rdata(record)
        # 0xC00C: a pointer to the question name right after the header.
        out.append(struct.pack("!HHHIH", 0xC00C, qtype, CLASS_IN, TTL, len(data)) + data)
    return b"".join(out), f"{name} {TYPE_NAMES.get(qtype, qtype)}"


@dataclass(slots=True)
class DnsServer(asyncio.DatagramProtocol):
    zone: Zone
    silent: bool = False
    ignore: frozenset[str] = frozenset()  # record types never answered ("SRV")
    queries: list[str] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> str:
        """The "ip:port" string a resolver's nameserver list takes."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast: CPython 3.11's selector datagram transport is not a subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        reply, question = answer(self.zone, data)
        self.queries.append(question)
        if not self.silent and question.rsplit(" ", 1)[1] not in self.ignore:
            self.transport.sendto(reply, addr)


@asynccontextmanager
async def serve(
    zone: Zone, *, silent: bool = False, ignore: frozenset[str] = frozenset()
) -> AsyncIterator[DnsServer]:
    """Run a server on 127.0.0.1, port 0; ``silent`` records but never replies,
    ``ignore`` names record types it never replies to (as a forwarder whose
    upstream is unreachable)."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: DnsServer(zone, silent, ignore), local_addr=("127.0.0.1", 0)
    )
    try:
        yield server
    finally:
        transport.close()
