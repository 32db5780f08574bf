"""Seed resolution against a real DNS server on 127.0.0.1 (tests/dnsserver.py)."""

from __future__ import annotations

import socket
import time
import warnings

import pytest
from dnsserver import Srv, serve

from kadnode.errors import KadnodeError, LocalProtocolError
from kadnode.shell.dns import (
    SeedResolutionError,
    resolve_seed,
    resolve_seeds,
)

PORT = 8468

ZONE = {
    # SRV targets in the "wrong" order on the wire: priority sorts them.
    "_kadnode._udp.srv.test": {
        "SRV": [
            Srv(20, 0, 4003, "c.srv.test"),
            Srv(10, 1, 4002, "b.srv.test"),
            Srv(10, 9, 4001, "a.srv.test"),
            Srv(10, 5, 4001, "a.srv.test"),  # duplicate (ip, port) pairs appear once
        ]
    },
    "srv.test": {"A": ["192.0.2.99"]},  # ignored: the SRV records win
    "a.srv.test": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
    "b.srv.test": {"A": ["192.0.2.2"]},
    "c.srv.test": {"AAAA": ["2001:db8::3"]},
    "plain.test": {"A": ["192.0.2.10", "192.0.2.11"], "AAAA": ["2001:db8::10"]},
    "v6only.test": {"AAAA": ["2001:db8::6"]},
    "empty.test": {},
    "_kadnode._udp.dangling.test": {"SRV": [Srv(1, 1, 4000, "missing.test")]},
    # RFC 2782: target "." means the service is decidedly not available.
    "_kadnode._udp.noservice.test": {"SRV": [Srv(0, 0, 0, ".")]},
    "noservice.test": {"A": ["192.0.2.50"]},
}


@pytest.fixture
async def dns():
    async with serve(ZONE) as server:
        yield server


async def test_srv_gives_target_addresses_with_srv_ports(dns):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no aiodns deprecation warnings
        got = await resolve_seed("srv.test", PORT, nameservers=[dns.address])
    assert got == [
        ("192.0.2.1", 4001),
        ("2001:db8::1", 4001),
        ("192.0.2.2", 4002),
        ("2001:db8::3", 4003),
    ]
    # The name's own A/AAAA are asked at the same time, but the SRV targets win.
    assert "_kadnode._udp.srv.test SRV" in dns.queries
    assert "srv.test A" in dns.queries


async def test_without_srv_uses_a_then_aaaa_with_default_port(dns):
    got = await resolve_seed("plain.test", PORT, nameservers=[dns.address])
    assert got == [("192.0.2.10", PORT), ("192.0.2.11", PORT), ("2001:db8::10", PORT)]
    assert sorted(dns.queries) == [
        "_kadnode._udp.plain.test SRV",
        "plain.test A",
        "plain.test AAAA",
    ]


async def test_ipv6_only_name(dns):
    got = await resolve_seed("v6only.test.", PORT, nameservers=[dns.address])
    assert got == [("2001:db8::6", PORT)]


@pytest.mark.parametrize("literal", ["192.0.2.7", "2001:db8::7"])
async def test_literal_address_needs_no_dns(dns, literal):
    assert await resolve_seed(literal, PORT, nameservers=[dns.address]) == [(literal, PORT)]
    assert dns.queries == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unknown.test", "dns seed 'unknown.test': no A/AAAA/SRV records"),
        ("empty.test", "dns seed 'empty.test': no A/AAAA/SRV records"),
        ("dangling.test", "dns seed 'dangling.test': SRV targets with no A/AAAA records"),
        ("noservice.test", "dns seed 'noservice.test': SRV targets with no A/AAAA records"),
        ("bad name.test", "dns seed 'bad name.test': not a valid host name"),
    ],
)
async def test_names_without_addresses_raise_one_line(dns, name, message):
    with pytest.raises(SeedResolutionError) as info:
        await resolve_seed(name, PORT, nameservers=[dns.address])
    assert str(info.value) == message
    assert isinstance(info.value, KadnodeError)


async def test_silent_server_times_out_within_the_budget():
    async with serve(ZONE, silent=True) as dns:
        start = time.monotonic()
        with pytest.raises(SeedResolutionError) as info:
            await resolve_seed("plain.test", PORT, nameservers=[dns.address], timeout=0.5)
        elapsed = time.monotonic() - start
    assert str(info.value) == "dns seed 'plain.test': timed out after 0.5 s"
    assert 0.3 < elapsed < 1.5
    assert dns.queries  # it was asked, it just never answered


async def test_unanswered_srv_falls_back_to_a_records():
    # Docker's embedded DNS forwards SRV questions upstream, where they time out.
    async with serve(ZONE, ignore=frozenset({"SRV"})) as dns:
        start = time.monotonic()
        got = await resolve_seed("plain.test", PORT, nameservers=[dns.address], timeout=0.6)
        elapsed = time.monotonic() - start
    assert got == [("192.0.2.10", PORT), ("192.0.2.11", PORT), ("2001:db8::10", PORT)]
    assert "_kadnode._udp.plain.test SRV" in dns.queries
    assert elapsed < 1.5  # bounded by the timeout, not lost to it


async def test_unanswered_srv_and_no_addresses_is_a_timeout():
    async with serve(ZONE, ignore=frozenset({"SRV"})) as dns:
        with pytest.raises(SeedResolutionError) as info:
            await resolve_seed("empty.test", PORT, nameservers=[dns.address], timeout=0.4)
    assert str(info.value) == "dns seed 'empty.test': timed out after 0.4 s"


async def test_refused_server_is_one_line_error():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(SeedResolutionError) as info:
        await resolve_seed("plain.test", PORT, nameservers=[f"127.0.0.1:{closed_port}"])
    assert str(info.value) == "dns seed 'plain.test': Could not contact DNS servers"


async def test_resolve_seeds_keeps_good_seeds_and_reports_bad_ones(dns):
    addresses, errors = await resolve_seeds(
        ["plain.test", "unknown.test", "192.0.2.7", "v6only.test", "plain.test"],
        PORT,
        nameservers=[dns.address],
    )
    assert addresses == [
        ("192.0.2.10", PORT),
        ("192.0.2.11", PORT),
        ("2001:db8::10", PORT),
        ("192.0.2.7", PORT),
        ("2001:db8::6", PORT),
    ]
    assert errors == ["dns seed 'unknown.test': no A/AAAA/SRV records"]


async def test_resolve_seeds_with_a_silent_server_reports_each_seed():
    async with serve(ZONE, silent=True) as dns:
        addresses, errors = await resolve_seeds(
            ["plain.test", "srv.test", "192.0.2.7"], PORT, nameservers=[dns.address], timeout=0.3
        )
    assert addresses == [("192.0.2.7", PORT)]
    assert errors == [
        "dns seed 'plain.test': timed out after 0.3 s",
        "dns seed 'srv.test': timed out after 0.3 s",
    ]


@pytest.mark.parametrize("server", ["ns.example", "127.0.0.1:0", "[::1:53", ""])
async def test_bad_nameserver_is_a_local_error(server):
    with pytest.raises(LocalProtocolError):
        await resolve_seeds(["plain.test"], PORT, nameservers=[server])
