"""Addresses as a hostile network sees them: subnets, and ranges exempt from
per-subnet limits. Pure, no I/O (the stdlib ``ipaddress`` only parses).

An attacker can usually get many addresses in one subnet, rarely many
subnets: limits that must not be multiplied by buying addresses are kept per
/24 for IPv4 and per /48 for IPv6 (go-ethereum's ``netutil.DistinctNetSet``
uses /24; /48 is the usual end-site allocation for IPv6, RFC 6177).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from kadnode.errors import LocalProtocolError

IPV4_SUBNET = 24
IPV6_SUBNET = 48

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=65536)
def subnet_of(host: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) that ``host`` is in, as text; a host that
    is not an IP address (a name from a peer's reply) is its own subnet."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_SUBNET if ip.version == 4 else IPV6_SUBNET
    return str(ipaddress.ip_network((ip, prefix), strict=False))


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """CIDR ranges a user named (``127.0.0.0/8``, ``fd00::/8``); one line if bad."""
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise LocalProtocolError(
                f"bad network {text!r}: expected CIDR like 10.0.0.0/8"
            ) from None
    return tuple(out)


class Exempt:
    """The ranges whose addresses are exempt from per-subnet limits (a LAN,
    loopback for local test networks), with a memo per host."""

    def __init__(self, networks: Iterable[str] = ()):
        self.networks = parse_networks(networks)
        self._memo: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, host: str) -> bool:
        if not self.networks:
            return False
        known = self._memo.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                known = False
            else:
                known = any(ip.version == n.version and ip in n for n in self.networks)
            if len(self._memo) >= 65536:
                self._memo.clear()
            self._memo[host] = known
        return known
