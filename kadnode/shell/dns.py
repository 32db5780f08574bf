"""Bootstrap by DNS name. Does network I/O: DNS queries through aiodns (c-ares).

A seed name is looked up as ``_kadnode._udp.<name>`` SRV (RFC 2782), so an
operator can publish nodes with their own UDP ports, and at the same time as
the name's own A and AAAA records: SRV targets win when SRV records exist,
else the A/AAAA addresses are used with the default port, also when the SRV
question failed or timed out. Every failure comes back as one line in a
:class:`SeedResolutionError`, and each seed is bounded in time, so the daemon
logs a bad seed and goes on.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import aiodns
import pycares

from kadnode.config import DNS_SEED_SRV_PREFIX, DNS_SEED_TIMEOUT, DNS_SEED_TRIES
from kadnode.errors import KadnodeError, LocalProtocolError
from kadnode.inputs import Address, is_host_name, is_ip, parse_nameserver

# c-ares errors meaning "this name or type has no records", not a failure.
_NO_RECORDS = frozenset({pycares.errno.ARES_ENOTFOUND, pycares.errno.ARES_ENODATA})
_RECORD_TYPES = {
    "A": pycares.QUERY_TYPE_A,
    "AAAA": pycares.QUERY_TYPE_AAAA,
    "SRV": pycares.QUERY_TYPE_SRV,
}
_ADDRESS_TYPES = ("A", "AAAA")  # IPv4 first, then IPv6


class SeedResolutionError(KadnodeError):
    """A seed name gave no address; the message is one line naming the seed."""


async def resolve_seed(
    name: str,
    default_port: int,
    *,
    nameservers: Sequence[str] | None = None,
    timeout: float = DNS_SEED_TIMEOUT,
) -> list[Address]:
    """The deduplicated addresses of one seed name, SRV targets first if any.

    A literal IP address comes back as is, without DNS. ``nameservers`` are
    "ip" or "ip:port" ("[v6]:port") strings; None uses the system resolver
    configuration. Raises :class:`SeedResolutionError` (no records, timeout,
    server failure) or :class:`LocalProtocolError` (bad ``nameservers``).
    """
    return await _resolve_seed(name, default_port, _server_list(nameservers), timeout)


async def resolve_seeds(
    names: Iterable[str],
    default_port: int,
    *,
    nameservers: Sequence[str] | None = None,
    timeout: float = DNS_SEED_TIMEOUT,
) -> tuple[list[Address], list[str]]:
    """Resolve several seed names concurrently: (all addresses, one error line per bad seed).

    Only a bad ``nameservers`` list raises (:class:`LocalProtocolError`),
    since it would fail every seed alike.
    """
    servers = _server_list(nameservers)
    results = await asyncio.gather(
        *(_resolve_seed(name, default_port, servers, timeout) for name in names),
        return_exceptions=True,
    )
    addresses: list[Address] = []
    errors: list[str] = []
    for result in results:
        if isinstance(result, SeedResolutionError):
            errors.append(str(result))
        elif isinstance(result, BaseException):
            raise result
        else:
            addresses.extend(result)
    return _unique(addresses), errors


async def _resolve_seed(
    name: str, default_port: int, servers: list[str] | None, timeout: float
) -> list[Address]:
    if is_ip(name):
        return [(name, default_port)]
    if not is_host_name(name):
        raise SeedResolutionError(f"dns seed {name!r}: not a valid host name")
    try:
        # c-ares doubles its wait on each retry: timeout/3 then 2*timeout/3
        # spends the budget on DNS_SEED_TRIES (2) sends; _lookup's wait_for
        # calls are the bound.
        async with aiodns.DNSResolver(
            nameservers=servers, timeout=timeout / 3, tries=DNS_SEED_TRIES
        ) as resolver:
            return await _lookup(resolver, name, default_port, timeout)
    except (TimeoutError, aiodns.error.DNSError, pycares.AresError) as exc:
        raise _failure(name, exc, timeout) from None


async def _lookup(
    resolver: aiodns.DNSResolver, name: str, default_port: int, timeout: float
) -> list[Address]:
    """SRV targets if the name has SRV records, else its own A and AAAA records.

    Both are asked at once, each bounded by ``timeout``: a server that never
    answers the SRV question (docker's embedded DNS forwards it upstream)
    still leaves the A/AAAA answers. Raises only when neither gives addresses.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    srv_result, own_result = await asyncio.gather(
        asyncio.wait_for(_records(resolver, f"{DNS_SEED_SRV_PREFIX}.{name}", "SRV"), timeout),
        asyncio.wait_for(_host_addresses(resolver, name, default_port), timeout),
        return_exceptions=True,
    )
    for result in (srv_result, own_result):
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation and the like
    if isinstance(srv_result, list) and srv_result:
        # RFC 2782: lower priority first; higher weight first is our
        # deterministic stand-in for the weighted random choice. Target "."
        # means "no service here".
        srv_result.sort(key=lambda rec: (rec.priority, -rec.weight))
        targets = [(rec.target, rec.port) for rec in srv_result if rec.target.rstrip(".")]
        found = await asyncio.wait_for(
            asyncio.gather(
                *(_host_addresses(resolver, host, port) for host, port in targets),
                return_exceptions=True,
            ),
            max(deadline - loop.time(), 0.001),
        )
        addresses = _unique(a for result in found if isinstance(result, list) for a in result)
        if addresses:
            return addresses
        for result in found:
            if isinstance(result, BaseException):
                raise result
        raise SeedResolutionError(f"dns seed {name!r}: SRV targets with no A/AAAA records")
    if isinstance(own_result, list) and own_result:
        return _unique(own_result)
    for result in (srv_result, own_result):
        if isinstance(result, BaseException):
            raise result
    raise SeedResolutionError(f"dns seed {name!r}: no A/AAAA/SRV records")


async def _host_addresses(resolver: aiodns.DNSResolver, host: str, port: int) -> list[Address]:
    """IPv4 then IPv6 addresses of ``host``; raises only if both queries fail."""
    results = await asyncio.gather(
        *(_records(resolver, host, qtype) for qtype in _ADDRESS_TYPES), return_exceptions=True
    )
    addresses = [
        (rec.addr, port) for result in results if isinstance(result, list) for rec in result
    ]
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors and not addresses:
        raise errors[0]
    return addresses


async def _records(resolver: aiodns.DNSResolver, host: str, qtype: str) -> list[Any]:
    """The answer records of ``qtype`` for ``host`` (CNAMEs dropped), [] if none exist."""
    try:
        result = await resolver.query_dns(host, qtype)
    except aiodns.error.DNSError as exc:
        if exc.args and exc.args[0] in _NO_RECORDS:
            return []
        raise
    return [record.data for record in result.answer if record.type == _RECORD_TYPES[qtype]]


def _failure(name: str, exc: Exception, timeout: float) -> SeedResolutionError:
    """One line for a failed lookup: our own deadline or c-ares's read the same."""
    code = exc.args[0] if exc.args else None
    if isinstance(exc, TimeoutError) or code == pycares.errno.ARES_ETIMEOUT:
        return SeedResolutionError(f"dns seed {name!r}: timed out after {timeout} s")
    reason = pycares.errno.strerror(code) if isinstance(code, int) else str(exc)
    return SeedResolutionError(f"dns seed {name!r}: {reason}")


def _server_list(nameservers: Sequence[str] | None) -> list[str] | None:
    """Name servers in c-ares "ip:port" / "[v6]:port" form, or None for the system ones."""
    if nameservers is None:
        return None
    servers = [parse_nameserver(entry) for entry in nameservers]
    return servers or None


def _unique(addresses: Iterable[Address]) -> list[Address]:
    return list(dict.fromkeys(addresses))


async def resolve_host(host: str) -> str:
    """A numeric address for ``host`` (the core matches replies by address)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise LocalProtocolError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    return infos[0][4][0]
