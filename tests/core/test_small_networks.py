"""Writes in small networks: the writer's own copy counts, a clean leave says
goodbye, and a write that reached nobody it found fails.

The rule (README, "Talk to a node from a shell"): the replica set is the k
closest to the key that answered or failed, the writer itself among them
when it is that close; W is a majority of it (at most 11). A node that knows
no other node keeps the only copy and says so.
"""

from __future__ import annotations

from kadnode.config import Config
from kadnode.core import codec
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.ids import key_digest
from kadnode.core.messages import Goodbye, Kind
from kadnode.core.node import NodeCore
from kadnode.sim.network import SimNetwork


def network(n: int, seed: int = 5) -> tuple[SimNetwork, list[NodeCore]]:
    net = SimNetwork(seed=seed, config=Config())
    nodes = [net.add_node() for _ in range(n)]
    for node in nodes[1:]:
        net.call(node, lambda c, now: c.bootstrap([nodes[0].addr], now))
    return net, nodes


def put(net: SimNetwork, node: NodeCore, name: str, value: str = "v"):
    return net.call(node, lambda c, now: c.put(key_digest(name), value, now))


def test_in_three_nodes_a_put_counts_the_writers_own_copy():
    net, (a, _b, _c) = network(3)
    result = put(net, a, "three")
    assert result.replica_set == 3 and result.needed == 2
    # its own copy is one of the two it needs; it need not wait for the third
    assert result.local and result.quorum and result.acks + result.pending == 3


def test_after_a_clean_leave_the_others_drop_the_leaver_at_once_and_writes_go_on():
    net, (a, b, c) = network(3)
    left = net.call(c, lambda core, now: core.leave(now))
    assert left.goodbyes == 2
    net.kill([c.addr])
    assert c.id not in a.table and c.id not in b.table
    assert a.ring.successor != c and a.ring.predecessor != c
    result = put(net, a, "after-leave")
    assert result.quorum and result.replica_set == 2 and result.acks == 2


def test_after_a_crash_three_nodes_still_take_writes():
    net, (a, _b, c) = network(3)
    net.kill([c.addr])  # no goodbye: c stays in the tables until it fails 3 times
    result = put(net, a, "after-crash")
    assert result.replica_set == 3 and result.needed == 2
    assert result.acks == 2 and result.quorum  # a's own copy and b's


def test_a_put_that_found_others_but_reached_none_fails():
    net, (a, b) = network(2)
    net.kill([b.addr])
    result = put(net, a, "alone-now")
    assert result.replica_set == 2 and result.acks == 1 and not result.quorum
    assert not result.only_copy


def test_a_node_that_knows_nobody_keeps_the_only_copy_and_says_so():
    net = SimNetwork(seed=1, config=Config())
    lonely = net.add_node()
    result = put(net, lonely, "solo")
    assert result.only_copy and result.quorum and result.acks == 1 and result.asked == 0
    assert lonely.store.get(key_digest("solo")).value == "v"


def goodbye_from(net: SimNetwork, sender: NodeCore, to: NodeCore, addr, token=None) -> object:
    """A kn_bye with ``sender``'s id from ``addr``, echoing the token ``to``
    gives that address (or ``token``); the reply's body (True: believed)."""
    token = token or to.tokens.token_for(addr[0])
    datagram = codec.encode(NATIVE_MAGIC + bytes(16), Goodbye(sender.id, token))
    to.receive_datagram(datagram, addr, net.now)
    [(reply, _)] = [(codec.decode(d, 10_000), a) for d, a in to.datagrams_to_send()]
    return reply.body


def test_a_goodbye_from_another_address_is_refused():
    net, (a, _b, c) = network(3)
    assert goodbye_from(net, c, a, ("10.6.6.6", 4000)) is False  # not where a knows c
    assert c.id in a.table and a.stats["goodbyes_refused"] == 1
    assert goodbye_from(net, c, a, c.addr) is True
    assert c.id not in a.table and a.stats["goodbyes"] == 1


def test_a_goodbye_without_a_token_given_to_its_address_is_refused():
    net, (a, _b, c) = network(3)
    # From c's address, as a forged source would be: it cannot echo a's token.
    assert goodbye_from(net, c, a, c.addr, token=bytes(8)) is False
    assert c.id in a.table


def test_a_plain_get_of_a_shared_key_names_the_kind_it_holds():
    net, (a, _b, c) = network(3)
    key = key_digest("room")
    assert net.call(a, lambda core, now: core.put_shared(key, "hello", None, now)).quorum
    local = net.call(a, lambda core, now: core.get(key, now))
    remote = net.call(c, lambda core, now: core.get(key, now))
    for result in (local, remote):
        assert not result.found and result.other_kind == Kind.SHARED


def test_a_shared_read_of_a_plain_key_names_the_kind_it_holds():
    net, (a, _b, c) = network(3)
    key = key_digest("plain")
    put(net, a, "plain")
    read = net.call(c, lambda core, now: core.read(key, Kind.SHARED, now))
    assert not read.found and read.other_kind == Kind.PLAIN
