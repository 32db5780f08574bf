"""What users type: addresses, name servers, whole-number limits. Pure, no I/O.

Each parser refuses bad input with one line (a :class:`LocalProtocolError`,
or argparse's own error type for argparse types).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from collections.abc import Callable

from kadnode.config import DNS_PORT
from kadnode.errors import LocalProtocolError

Address = tuple[str, int]

# RFC 1123 section 2.1 host names, plus "_" for SRV-style labels.
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_MAX_NAME = 253  # RFC 1035 section 2.3.4, in text form without the final dot


def at_least(minimum: int) -> Callable[[str], int]:
    """A whole number no smaller than ``minimum``, refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def probability(text: str) -> float:
    """A probability P with 0 <= P < 1 (a loss rate), refused in one line otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {text}")
    return value


def parse_hostport(text: str, default_port: int | None = None) -> Address:
    """Parse ``host:port``, ``[v6]:port``, ``[v6]``, a bare IPv6 or a host name.

    The port may be left out only when ``default_port`` is given. Raises
    :class:`LocalProtocolError` with one line on anything else.
    """
    text = text.strip()
    host, sep, port_text = text, "", ""
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise LocalProtocolError(f"bad address {text!r}: expected [IPv6]:PORT")
        host, sep, port_text = inner, rest[:1], rest[1:]
        if not is_ip(host, version=6):
            raise LocalProtocolError(f"bad address {text!r}: {host!r} is not an IPv6 address")
    elif text.count(":") == 1:
        host, sep, port_text = text.partition(":")
    elif ":" in text and not is_ip(text, version=6):
        raise LocalProtocolError(f"bad address {text!r}: write an IPv6 address as [IPv6]:PORT")
    if not host:
        raise LocalProtocolError(f"bad address {text!r}: empty host")
    if ":" not in host and not is_host_name(host):
        raise LocalProtocolError(f"bad address {text!r}: {host!r} is not a host name")
    if sep:
        return host, _parse_port(text, port_text)
    if default_port is None:
        raise LocalProtocolError(f"bad address {text!r}: no port (expected HOST:PORT)")
    return host, _parse_port(text, str(default_port))


def format_hostport(host: str, port: int) -> str:
    """``host:port``, an IPv6 host bracketed (``[v6]:port``): what :func:`parse_hostport` reads."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_nameserver(text: str) -> str:
    """One ``--dns-server`` entry, "ip" or "ip:port" ("[v6]:port"), in c-ares form.

    Raises :class:`LocalProtocolError` with one line when it is not an IP address.
    """
    host, port = parse_hostport(text, DNS_PORT)
    if not is_ip(host):
        raise LocalProtocolError(f"name server {text!r}: not an IP address")
    return format_hostport(host, port)


def _parse_port(text: str, port_text: str) -> int:
    if port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535:
        return int(port_text)
    raise LocalProtocolError(f"bad address {text!r}: port must be 1..65535, not {port_text!r}")


def is_ip(text: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def is_host_name(name: str) -> bool:
    labels = name.removesuffix(".").split(".")
    return len(name) <= _MAX_NAME and all(_LABEL.fullmatch(label) for label in labels)
