"""Endpoint proof before amplification. Pure, no I/O.

A UDP source address proves nothing: anyone can forge it, and a node that
answers a forged request with more than it received reflects traffic at the
forged address. Until a host has proven that it receives at its address,
everything a node sends it because of its requests stays within
:data:`AMPLIFICATION` times the bytes it sent (QUIC's anti-amplification
limit, RFC 9000 section 8; discv4 bonding and BEP 5 tokens are the DHT
precedents). A host proves itself by a round trip:

- it answered a request we sent to it (a reply is matched on message id and
  the address asked, so it came from there), or
- it echoed a write token we gave its address (BEP 5: tokens are an HMAC of
  the host, so only a host that received one can send it back).

Proof is kept per host for :data:`PROOF_LIFETIME` after the last one.
Bytes are counted on the wire, IP and UDP headers included.

Bounded: O(1) per datagram; at most :data:`MAX_TRACKED` hosts in each map,
the oldest proofs and credits dropped first.
"""

from __future__ import annotations

from collections import Counter

from kadnode.config import (
    AMPLIFICATION,
    MAX_DIAL_BACKS,
    MAX_TRACKED_HOSTS,
    PER_SUBNET_TABLE,
    PROOF_LIFETIME,
)
from kadnode.core.addresses import Exempt, subnet_of
from kadnode.core.messages import Addr, Contact

MAX_TRACKED = MAX_TRACKED_HOSTS
# A host proven again this soon keeps its place and its time: every reply
# proves its host, and the order of proofs only decides which is dropped
# first when MAX_TRACKED are held.
REPROVE_AFTER = 1.0


def wire_bytes(payload: int, host: str) -> int:
    """A UDP payload's size on the wire: with its IPv4 (20) or IPv6 (40) and UDP (8) headers."""
    return payload + (48 if ":" in host else 28)


class Proof:
    def __init__(self) -> None:
        self._proven: dict[str, float] = {}  # host -> proven until
        self._credit: dict[str, float] = {}  # unproven host -> bytes it may still be sent

    def proven(self, host: str, now: float) -> bool:
        until = self._proven.get(host)
        return until is not None and until > now

    def prove(self, host: str, now: float) -> None:
        proven = self._proven
        until = proven.get(host)
        if until is not None and until - now > PROOF_LIFETIME - REPROVE_AFTER:
            return  # proven within the last REPROVE_AFTER: kept as it is (the hot path)
        if host not in proven and len(proven) >= MAX_TRACKED:
            del proven[next(iter(proven))]  # the oldest proof
        proven.pop(host, None)  # re-inserted: the dict stays in proof order
        proven[host] = now + PROOF_LIFETIME
        self._credit.pop(host, None)

    def received(self, host: str, payload: int) -> None:
        """An unproven host sent us a datagram: it may be sent AMPLIFICATION times as much."""
        credit = self._credit
        if host not in credit and len(credit) >= MAX_TRACKED:
            del credit[next(iter(credit))]
        credit[host] = credit.get(host, 0.0) + AMPLIFICATION * wire_bytes(payload, host)

    def spend(self, host: str, payload: int, keep: float = 0.0) -> bool:
        """Take a datagram's wire bytes from an unproven host's credit, leaving
        at least ``keep``; False (nothing taken) when it has not earned that much."""
        cost = wire_bytes(payload, host)
        left = self._credit.get(host, 0.0)
        if cost + keep > left:
            return False
        self._credit[host] = left - cost
        return True

    def credit(self, host: str) -> float:
        return self._credit.get(host, 0.0)


class Welcomes:
    """Newcomers on proven hosts waiting WELCOME_DELAY for their ping back
    (kadnode.core.answers), in due order (the delay is one constant).

    At most MAX_DIAL_BACKS in all and, outside the exempt ranges,
    PER_SUBNET_TABLE from one /24 (/48): as many as the routing table would
    ever take from there. Requests forged from one proven subnet, each with a
    port and an id of its own, would otherwise fill the queue and keep
    newcomers elsewhere unwelcomed. O(1) per datagram.
    """

    def __init__(self, exempt: Exempt) -> None:
        self.exempt = exempt
        self._due: dict[Addr, tuple[float, Contact]] = {}
        self._per_subnet: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, addr: Addr) -> bool:
        return addr in self._due

    def add(self, addr: Addr, due: float, sender: Contact) -> bool:
        """Queue ``sender`` at ``addr`` unless it is queued or there is no room."""
        if addr in self._due or len(self._due) >= MAX_DIAL_BACKS:
            return False
        subnet = self._subnet(addr)
        if subnet is not None:
            if self._per_subnet[subnet] >= PER_SUBNET_TABLE:
                return False
            self._per_subnet[subnet] += 1
        self._due[addr] = (due, sender)
        return True

    def pop(self, addr: Addr) -> tuple[float, Contact] | None:
        entry = self._due.pop(addr, None)
        subnet = self._subnet(addr) if entry is not None else None
        if subnet is not None:
            self._per_subnet[subnet] -= 1
            if not self._per_subnet[subnet]:
                del self._per_subnet[subnet]
        return entry

    def first(self) -> tuple[Addr, float, Contact] | None:
        """The next one due, or None."""
        for addr, (due, sender) in self._due.items():
            return addr, due, sender
        return None

    def next_due(self) -> float | None:
        """When the next one is due, or None (:meth:`first` without the tuple:
        the node's timer asks after every datagram)."""
        for due, _ in self._due.values():
            return due
        return None

    def _subnet(self, addr: Addr) -> str | None:
        return None if addr[0] in self.exempt else subnet_of(addr[0])
