"""The small UDP programs tests/natnet.py runs inside network namespaces. Does I/O (UDP).

Run as ``python tests/natprobe.py MODE ...``, each a process of its own in its
namespace (``ip netns exec NS``); each prints JSON lines and exits by itself
within the seconds it is given:

- ``echo PORT SECONDS``: answer every datagram with the address it came from,
  ``"ip:port"``, which, seen from the public side, is the NAT's mapping.
- ``natted PORT ECHO_HOST:ECHO_PORT SECONDS``: from ``PORT``, send one datagram
  to an echo and print the mapping it saw (``{"mapped": "ip:port"}``), then
  listen and print every datagram that arrives after it (``{"arrived": ...}``);
  ``{"done": true}`` at the end.
- ``send HOST:PORT...``: one datagram to each address, then exit.
- ``ping SECONDS HOST:PORT...``: a native kadnode ping to each address, from a
  socket no node stands behind; print ``{"HOST:PORT": node id hex or null}``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from kadnode.config import MAX_DATAGRAM
from kadnode.core.codec import NATIVE_MAGIC, Response, decode, encode_request
from kadnode.errors import KadnodeError

ANY = "0.0.0.0"


def address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def udp(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ANY, port))
    return sock


def receive(sock: socket.socket, deadline: float) -> tuple[bytes, tuple[str, int]] | None:
    """One datagram before ``deadline`` (time.monotonic), or None."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            return sock.recvfrom(MAX_DATAGRAM)
        except TimeoutError:
            return None
        except ConnectionRefusedError:  # an ICMP error for an earlier send: not a datagram
            continue
    return None


def echo(port: str, seconds: str) -> None:
    deadline = time.monotonic() + float(seconds)
    with udp(int(port)) as sock:
        say(ready=True)
        while (got := receive(sock, deadline)) is not None:
            _, source = got
            sock.sendto(f"{source[0]}:{source[1]}".encode(), source)


def natted(port: str, echo_at: str, seconds: str) -> None:
    with udp(int(port)) as sock:
        sock.sendto(b"hello", address(echo_at))
        got = receive(sock, time.monotonic() + 5.0)
        say(mapped=got[0].decode() if got else None)
        deadline = time.monotonic() + float(seconds)
        while (got := receive(sock, deadline)) is not None:
            data, source = got
            say(arrived=data.decode(errors="replace"), source=f"{source[0]}:{source[1]}")
    say(done=True)


def send(*targets: str) -> None:
    with udp() as sock:
        for target in targets:
            sock.sendto(b"from outside", address(target))


def ping(seconds: str, *targets: str) -> None:
    """Two rounds, half the time each: a datagram lost once is not an unreachable node."""
    me = os.urandom(20)
    answered: dict[str, str] = {}
    with udp() as sock:
        for _ in range(2):
            pending = {}
            for target in targets:
                if target not in answered:
                    msg_id = NATIVE_MAGIC + os.urandom(16)
                    pending[msg_id] = target
                    sock.sendto(encode_request(msg_id, "ping", [me]), address(target))
            deadline = time.monotonic() + float(seconds) / 2
            while pending and (got := receive(sock, deadline)) is not None:
                try:
                    message = decode(got[0], MAX_DATAGRAM)
                except KadnodeError:
                    continue
                if type(message) is Response and message.msg_id in pending:
                    node_id = message.body.get("id") if isinstance(message.body, dict) else None
                    target = pending.pop(message.msg_id)
                    answered[target] = node_id.hex() if isinstance(node_id, bytes) else "?"
    say(**{target: answered.get(target) for target in targets})


MODES = {"echo": echo, "natted": natted, "send": send, "ping": ping}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
