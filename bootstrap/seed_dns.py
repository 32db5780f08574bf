#!/usr/bin/env python3
"""A small authoritative DNS server for kadnode seed names, stdlib only. Does network I/O (UDP).

It serves the A, AAAA and SRV records of one zone file (RFC 1035 master-file
syntax, the subset in ``bootstrap/kadnode.zone``) and nothing else: NXDOMAIN
for a name outside the zone data, an empty NOERROR answer for a known name
without records of the asked type (RFC 2308). That is exactly what
``kadnode run --dns-seed NAME`` asks: SRV ``_kadnode._udp.NAME`` first, then
A/AAAA of NAME.

Two uses:

- check a zone before publishing it, on loopback::

      bootstrap/seed_dns.py --zone my.zone --listen 127.0.0.1:5353 &
      python -c 'import asyncio; from kadnode.shell.dns import resolve_seed; print(asyncio.run(
          resolve_seed("seeds.my.example", 8467, nameservers=["127.0.0.1:5353"])))'

  (resolving only: a daemon started with such a seed would send to the
  addresses in the zone);

- beside docker's embedded DNS (deploy/compose.yaml, chaos/run.py): as the
  containers' upstream server it answers, with NXDOMAIN, the SRV question the
  embedded DNS cannot answer itself, so nodes fall back to the A records of
  the network alias at once instead of waiting for an unreachable upstream.

Not a general DNS server: no TCP, no zone transfers, no recursion, no
multi-line records; an answer that would not fit 512 bytes is sent truncated
(TC) and empty.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TYPE_A, TYPE_AAAA, TYPE_SRV = 1, 28, 33
SERVED = {"A": TYPE_A, "AAAA": TYPE_AAAA, "SRV": TYPE_SRV}
CLASS_IN = 1
RCODE_FORMERR, RCODE_NXDOMAIN, RCODE_NOTIMP = 1, 3, 4
MAX_UDP_REPLY = 512  # RFC 1035 section 4.2.1, without EDNS
DEFAULT_TTL = 300


class ZoneError(Exception):
    """A zone file line this server cannot use; the message names the line."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # lower case, no final dot
    rtype: int
    ttl: int
    rdata: bytes
    text: str  # the record as the zone file gave it, for --check


def encode_name(name: str) -> bytes:
    labels = [label.encode("ascii") for label in name.rstrip(".").split(".") if label]
    if any(len(label) > 63 for label in labels):
        raise ValueError(f"label too long in {name!r}")
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def _absolute(name: str, origin: str) -> str:
    if name == "@":
        return origin
    if name.endswith("."):
        return name.rstrip(".").lower()
    return f"{name}.{origin}".strip(".").lower() if origin else name.lower()


def _rdata(rtype: str, fields: list[str], origin: str) -> bytes:
    if rtype == "A":
        (text,) = fields
        return ipaddress.IPv4Address(text).packed
    if rtype == "AAAA":
        (text,) = fields
        return ipaddress.IPv6Address(text).packed
    priority, weight, port, target = fields  # RFC 2782 field order
    numbers = [int(priority), int(weight), int(port)]
    if not all(0 <= n <= 65535 for n in numbers):
        raise ValueError("SRV priority, weight and port are 0..65535")
    return struct.pack("!HHH", *numbers) + encode_name(_absolute(target, origin))


def parse_zone(text: str, origin: str = "") -> list[Record]:
    """The A, AAAA and SRV records of a zone file; other types (SOA, NS, TXT) are skipped.

    Understands ``$ORIGIN``, ``$TTL``, ``@``, relative names, a blank owner
    (the previous one), optional TTL and class fields and ``;`` comments.
    """
    origin = origin.rstrip(".").lower()
    ttl = DEFAULT_TTL
    owner = ""
    records = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].rstrip()
        if not line.strip():
            continue
        try:
            fields = line.split()
            if fields[0] == "$ORIGIN":
                origin = fields[1].rstrip(".").lower()
                continue
            if fields[0] == "$TTL":
                ttl = int(fields[1])
                continue
            if fields[0].startswith("$"):
                raise ValueError(f"directive {fields[0]} is not supported")
            if "(" in line:
                raise ValueError("multi-line records are not supported")
            if not line[0].isspace():
                owner = _absolute(fields.pop(0), origin)
            elif not owner:
                raise ValueError("no owner name yet")
            record_ttl = ttl
            if fields and fields[0].isdigit():
                record_ttl = int(fields.pop(0))
            if fields and fields[0].upper() == "IN":
                fields.pop(0)
            rtype = fields.pop(0).upper()
            if rtype in SERVED:
                rdata = _rdata(rtype, fields, origin)
                text = f"{owner}. {record_ttl} IN {rtype} {' '.join(fields)}"
                records.append(Record(owner, SERVED[rtype], record_ttl, rdata, text))
        except (ValueError, IndexError) as exc:
            raise ZoneError(f"line {number}: {line.strip()!r}: {exc or 'too few fields'}") from None
    return records


class Zone:
    """Records by (name, type), and the set of names that exist."""

    def __init__(self, records: Iterable[Record]):
        self.records: dict[tuple[str, int], list[Record]] = {}
        self.names: set[str] = set()
        for record in records:
            self.records.setdefault((record.name, record.rtype), []).append(record)
            # Every ancestor inside the data is an empty non-terminal (RFC 8020).
            labels = record.name.split(".")
            self.names.update(".".join(labels[i:]) for i in range(len(labels)))

    def answer(self, query: bytes) -> bytes | None:
        """The reply datagram to ``query``; None for something not worth a reply."""
        if len(query) < 12:
            return None
        qid, flags, qdcount = struct.unpack_from("!HHH", query)
        if flags & 0x8000:  # a response, not a question
            return None
        rd = flags & 0x0100
        if qdcount != 1 or flags & 0x7800:  # one QUERY (opcode 0) only
            return struct.pack("!HHHHHH", qid, 0x8000 | rd | RCODE_NOTIMP, 0, 0, 0, 0)
        try:
            name, qtype, qclass, end = _question(query)
        except (IndexError, UnicodeDecodeError, struct.error):
            return struct.pack("!HHHHHH", qid, 0x8000 | rd | RCODE_FORMERR, 0, 0, 0, 0)
        question = query[12:end]
        answers = self.records.get((name, qtype), []) if qclass == CLASS_IN else []
        rcode = 0 if name in self.names else RCODE_NXDOMAIN
        body = b"".join(
            encode_name(r.name)
            + struct.pack("!HHIH", r.rtype, CLASS_IN, r.ttl, len(r.rdata))
            + r.rdata
            for r in answers
        )
        flags_out = 0x8000 | 0x0400 | rd | rcode  # QR, AA
        if 12 + len(question) + len(body) > MAX_UDP_REPLY:
            flags_out |= 0x0200  # TC: we have no TCP; the client gets nothing better
            answers, body = [], b""
        header = struct.pack("!HHHHHH", qid, flags_out, 1, len(answers), 0, 0)
        return header + question + body


def _question(query: bytes) -> tuple[str, int, int, int]:
    """(name, qtype, qclass, end offset of the question)."""
    offset, labels = 12, []
    while query[offset]:
        length = query[offset]
        if length > 63:
            raise IndexError("compressed or bad label")
        labels.append(query[offset + 1 : offset + 1 + length].decode("ascii"))
        offset += 1 + length
    qtype, qclass = struct.unpack_from("!HH", query, offset + 1)
    return ".".join(labels).lower(), qtype, qclass, offset + 5


class SeedDnsProtocol(asyncio.DatagramProtocol):
    """Answers each datagram from the zone; a malformed one gets no reply or FORMERR."""

    def __init__(self, zone: Zone):
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.zone.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve(zone: Zone, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: SeedDnsProtocol(zone), local_addr=(host, port)
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = transport.get_extra_info("sockname")
    print(f"seed-dns: serving {len(zone.records)} name/type sets on udp {bound[0]}:{bound[1]}")
    try:
        await stop.wait()
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seed_dns.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zone", type=Path, help="zone file (default: serve no names at all)")
    parser.add_argument("--origin", default="", help="origin if the file has no $ORIGIN")
    parser.add_argument("--listen", default="127.0.0.1:5353", help="IP:PORT (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="parse the zone, print it, exit")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        text = args.zone.read_text() if args.zone else ""
        records = parse_zone(text, args.origin)
    except (OSError, ZoneError) as exc:
        print(f"seed-dns: {args.zone}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for record in records:
            print(record.text)
        return 0
    try:
        asyncio.run(serve(Zone(records), host.strip("[]"), int(port)))
    except (OSError, ValueError) as exc:
        print(f"seed-dns: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
