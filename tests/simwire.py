"""Datagrams sent by hand inside a simulated network (kadnode.sim.network)."""

from __future__ import annotations

from kadnode.core import codec
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.messages import Kind
from kadnode.core.node import NodeCore
from kadnode.sim.network import SimNetwork


def raw_put(
    net: SimNetwork, target: NodeCore, sender: NodeCore, key: bytes, payload, kind: Kind
) -> object:
    """A kn_put of ``kind`` straight from ``sender``'s address, with a token it
    was given; returns the reply's body."""
    token = target.tokens.token_for(sender.addr[0])
    args = [sender.id_bytes, key, kind, payload, 3600.0, token]
    target.receive_datagram(
        codec.encode_request(NATIVE_MAGIC + bytes(16), "kn_put", args), sender.addr, net.now
    )
    [(reply, _)] = [(codec.decode(d, 10_000), a) for d, a in target.datagrams_to_send()]
    return reply.body
