"""kadnode.inputs: what users type is read, or refused in one line."""

from __future__ import annotations

import pytest

from kadnode.errors import LocalProtocolError
from kadnode.inputs import format_hostport, parse_hostport, parse_nameserver

PORT = 8468


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seed.example:4000", ("seed.example", 4000)),
        ("192.0.2.1:1", ("192.0.2.1", 1)),
        ("[2001:db8::1]:65535", ("2001:db8::1", 65535)),
        ("[2001:db8::1]", ("2001:db8::1", PORT)),
        ("2001:db8::1", ("2001:db8::1", PORT)),
        ("seed.example", ("seed.example", PORT)),
        (" seed.example.:53 ", ("seed.example.", 53)),
    ],
)
def test_parse_hostport_good(text, expected):
    assert parse_hostport(text, PORT) == expected


@pytest.mark.parametrize(
    ("text", "default", "reason"),
    [
        ("seed.example:0", None, "port must be 1..65535, not '0'"),
        ("seed.example:65536", PORT, "port must be 1..65535, not '65536'"),
        ("seed.example:", PORT, "port must be 1..65535, not ''"),
        ("seed.example:http", PORT, "port must be 1..65535, not 'http'"),
        ("seed.example:-1", PORT, "port must be 1..65535, not '-1'"),
        (":4000", PORT, "empty host"),
        ("", PORT, "empty host"),
        ("[]:4000", PORT, "'' is not an IPv6 address"),
        ("seed.example", None, "no port (expected HOST:PORT)"),
        ("[2001:db8::1]", None, "no port (expected HOST:PORT)"),
        ("[2001:db8::1]4000", PORT, "expected [IPv6]:PORT"),
        ("[192.0.2.1]:4000", PORT, "'192.0.2.1' is not an IPv6 address"),
        ("2001:db8::1:4000:9:9:9:9", PORT, "write an IPv6 address as [IPv6]:PORT"),
        ("bad_host-.example:4000", PORT, "'bad_host-.example' is not a host name"),
        ("a..b:4000", PORT, "'a..b' is not a host name"),
    ],
)
def test_parse_hostport_bad(text, default, reason):
    with pytest.raises(LocalProtocolError) as info:
        parse_hostport(text, default)
    assert str(info.value) == f"bad address {text.strip()!r}: {reason}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("seed.example", 4000, "seed.example:4000"),
        ("192.0.2.1", 1, "192.0.2.1:1"),
        ("2001:db8::1", 65535, "[2001:db8::1]:65535"),
    ],
)
def test_format_hostport_is_what_parse_hostport_reads(host, port, text):
    assert format_hostport(host, port) == text
    assert parse_hostport(text) == (host, port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.53", "192.0.2.53:53"),
        ("127.0.0.1:5353", "127.0.0.1:5353"),
        ("2001:db8::53", "[2001:db8::53]:53"),
        ("[::1]:5353", "[::1]:5353"),
    ],
)
def test_parse_nameserver_good(text, expected):
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize("text", ["notanip", "ns.example:53", "127.0.0.1:0", "[::1:53", ""])
def test_parse_nameserver_bad_is_one_line(text):
    with pytest.raises(LocalProtocolError) as info:
        parse_nameserver(text)
    assert "\n" not in str(info.value)
