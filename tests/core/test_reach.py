"""What the network sees of a node (kadnode.core.reach): the address peers see
it at, NAT, client mode, dial-backs; on the simulator's NAT (port-restricted,
as Linux MASQUERADE; or a forwarded port)."""

from __future__ import annotations

import random

import pytest

from kadnode.config import OBSERVED_QUORUM, REACH_WAIT, RELAYS, Config
from kadnode.core import codec, records
from kadnode.core.codec import CLIENT_MAGIC, NATIVE_MAGIC
from kadnode.core.identity import Identity
from kadnode.core.ids import key_digest
from kadnode.core.messages import Dial, Dialed, Kind, PingReply, Reach
from kadnode.core.node import NodeCore
from kadnode.core.reach import PRIVATE, PUBLIC, UNKNOWN, Reachability
from kadnode.core.store import MemoryStore
from kadnode.errors import DecodeError
from kadnode.sim.network import SimNetwork

NAT_HOST = "198.51.100.7"  # the NAT router's public address
QUIET = {"anti_entropy_interval": 1e9}


def network(
    public: int = 12, private: int = 2, cone: str = "port", seed: int = 5
) -> tuple[SimNetwork, list[NodeCore], list[NodeCore]]:
    """``public`` nodes, each on its own /24, and ``private`` ones behind one
    NAT; every node knows its host's addresses, so all of kadnode.core.reach
    runs; each with a key, so it can register."""
    net = SimNetwork(seed=seed, config=Config(**QUIET))
    rng = random.Random(seed)
    nodes = []
    for i in range(public + private):
        me = Identity.generate(rng.randbytes)
        core = net.add_node(node_id=me.node_id, nat=NAT_HOST if i >= public else None, cone=cone)
        core.identity = me
        core.addresses = (core.addr,)
        core.set_local_hosts([core.addr[0]])
        nodes.append(core)
    for node in nodes[1:]:
        net.call(node, lambda c, now: c.bootstrap([nodes[0].addr, nodes[1].addr], now))
    net.run_until(net.now + 60)  # the observe pings (5 s) and a reachability check (10 s)
    return net, nodes[:public], nodes[public:]


def held_addresses(nodes: list[NodeCore]) -> set[tuple[str, int]]:
    """Every address in these nodes' routing tables, replacement caches and rings."""
    out = set()
    for node in nodes:
        out |= {c.addr for c in node.table.contacts()}
        out |= set(node.table._by_addr)  # bucket entries and cached replacements
        out |= {c.addr for c in node.ring.successors}
    return out


# ---- the wire ----------------------------------------------------------------------------


def test_a_native_ping_reply_says_where_it_saw_the_asker_its_clock_and_client_mode():
    reply = PingReply(7, bytes(8), ("203.0.113.9", 40122), 1_790_000_000, True)
    data = codec.encode(NATIVE_MAGIC + bytes(16), reply)
    body = codec.decode(data, 10_000).body
    assert body["ip"] == bytes([203, 0, 113, 9]) + (40122).to_bytes(2, "big")  # BEP 42's form
    assert codec._decode_ping_reply(body) == reply
    v6 = PingReply(7, bytes(8), ("2001:db8::1", 8467), None, False)
    assert codec._decode_ping_reply(codec.decode(codec.encode(bytes(20), v6), 10_000).body) == v6
    # bmuller's bare id, and a native reply without the new fields, still read.
    assert codec._decode_ping_reply((7).to_bytes(20, "big")) == PingReply(7, None)
    plain = {"id": (7).to_bytes(20, "big"), "token": bytes(8)}
    assert codec._decode_ping_reply(plain) == PingReply(7, bytes(8))


@pytest.mark.parametrize(
    "extra",
    [{"ip": b"\x01\x02\x03"}, {"ip": bytes(6)}, {"t": -1}, {"t": 1.5}, {"cl": 1}, {"x": 1}],
    ids=["short ip", "port 0", "negative clock", "float clock", "flag not bool", "unknown key"],
)
def test_a_malformed_ping_reply_is_a_decode_error(extra):
    with pytest.raises(DecodeError):
        codec._decode_ping_reply({"id": (7).to_bytes(20, "big"), "token": bytes(8), **extra})


def test_a_dial_back_is_one_datagram_no_larger_than_the_request_that_asked_for_it():
    nonce = bytes(range(8))
    asked = codec.encode(NATIVE_MAGIC + bytes(16), Reach(1 << 159, nonce, bytes(8)))
    forwarded = codec.encode(
        NATIVE_MAGIC + bytes(16), Dial(1 << 159, ("2001:db8::1", 65535), nonce, bytes(8))
    )
    dialed = codec.encode(NATIVE_MAGIC + bytes(16), Dialed(1 << 159, nonce))
    assert len(dialed) < len(asked) < len(forwarded)
    for data, message in [(asked, Reach), (forwarded, Dial), (dialed, Dialed)]:
        assert type(codec.decode(data, 10_000).message) is message


# ---- votes ---------------------------------------------------------------------------------


def test_an_address_is_adopted_once_peers_on_three_subnets_agree_and_one_subnet_votes_once():
    reach = Reachability(0.0)
    reach.local_hosts = frozenset({"10.0.0.5"})
    mapped = ("203.0.113.9", 40122)
    # Many peers of one /24 are one vote.
    for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):
        reach.vote(host, mapped, 1.0)
    assert reach.address is None and reach.nat  # one peer suffices to suspect NAT
    reach.vote("198.51.100.1", ("203.0.113.66", 1), 2.0)  # a liar
    reach.vote("198.51.100.9", mapped, 3.0)  # the liar's /24 changes its vote
    assert reach.address is None
    assert OBSERVED_QUORUM == 3
    reach.vote("203.0.113.200", mapped, 4.0)
    assert reach.address == mapped and reach.client  # not proven reachable: a client


def test_a_node_that_peers_see_at_its_own_address_is_no_client():
    _net, public, _ = network(private=0)
    for node in public:
        assert node.reach.address == node.addr and not node.reach.nat
        assert not node.reach.client and node.requests.magic == NATIVE_MAGIC
        assert node.reach.status == UNKNOWN  # no check is needed: nothing to check


# ---- behind NAT ----------------------------------------------------------------------------


def test_nodes_behind_nat_learn_their_mapping_go_client_and_are_in_no_public_table():
    net, public, private = network()
    for node in private:
        mapped = net.seen_as[net.index[node.addr]]
        assert mapped[0] == NAT_HOST
        assert node.reach.address == mapped and node.reach.nat
        assert node.reach.client and node.requests.magic == CLIENT_MAGIC
        assert node.stats["dialed_in"] == 0
    assert sum(p.stats["dials_sent"] for p in public) >= 2  # the dial-backs were sent
    hidden = {n.addr for n in private} | {net.seen_as[net.index[n.addr]] for n in private}
    assert not held_addresses(public) & hidden
    # Everything works from behind the NAT, through others.
    writer, reader = private
    put = net.call(writer, lambda c, now: c.put(key_digest("nat"), "from behind", now))
    assert put.acks >= put.needed and not put.refused
    assert not put.local  # a client's own copy is no replica: nobody can read it there
    assert net.call(public[5], lambda c, now: c.get(key_digest("nat"), now)).value == (
        "from behind"
    )
    assert net.call(reader, lambda c, now: c.get(key_digest("nat"), now)).value == "from behind"
    # It registers the address peers see, first; its own after it.
    net.call(writer, lambda c, now: c.register(now))
    found = net.call(public[3], lambda c, now: c.read(writer.id_bytes, Kind.PEER, now))
    record = records.from_wire(found.payload)
    assert record.addresses == (writer.reach.address, writer.addr)
    # ... and the relays it keeps a binding with: public nodes on distinct subnets.
    relays = {(h, p) for _, h, p in record.relays}
    assert len(relays) == RELAYS and relays <= {n.addr for n in public}
    assert relays == {c.addr for c in writer.reach.relays}


def test_behind_a_nat_that_drops_strangers_the_verdict_is_private_once_dialers_are_strangers():
    """At first every dialer may be a host the node contacted while joining
    (the NAT lets those in: proof of nothing, UNKNOWN); re-checked after
    REACH_RETRY until the dialers are strangers, whom the NAT drops."""
    net, _public, private = network()
    net.run_until(net.now + 600)
    for node in private:
        assert node.reach.status == PRIVATE and node.reach.client
        assert node.stats["dialed_in"] == 0 and node.stats["reach_checks"] >= 2


def test_a_node_behind_a_forwarded_port_is_proven_reachable_and_serves_at_its_mapping():
    net, public, private = network(cone="full")
    net.run_until(net.now + 600)
    for node in private:
        assert node.reach.status == PUBLIC and not node.reach.client
        assert node.reach.dialed_from is not None
        assert node.requests.magic == NATIVE_MAGIC
        assert node.reach.relays == ()  # reachable itself: no relay to name
    mapped = {net.seen_as[net.index[n.addr]] for n in private}
    net.run_until(net.now + 120)  # its next requests are admitted as a server's
    assert held_addresses(public) & mapped


def test_a_dial_back_from_a_host_it_had_sent_to_proves_nothing_and_is_not_answered():
    net, public, private = network()
    node = private[0]
    node.reach.nonce = nonce = bytes(8)
    node.reach.check_ends = net.now + REACH_WAIT
    tainted, status = node.reach.tainted, node.reach.status
    contacted = public[0]
    assert node.reach.contacted(contacted.addr[0], net.now)
    node.datagrams_to_send()
    data = codec.encode(NATIVE_MAGIC + bytes(16), Dialed(contacted.id, nonce))
    node.receive_datagram(data, contacted.addr, net.now)
    assert node.reach.tainted == tainted + 1 and node.reach.status == status != PUBLIC
    assert node.datagrams_to_send() == []  # a reply would keep our NAT open to it
    # The same from a host it never sent to proves it reachable.
    stranger = ("192.0.2.44", 4000)
    node.receive_datagram(data, stranger, net.now)
    assert node.reach.status == PUBLIC and node.reach.dialed_from == stranger[0]
    assert not node.reach.client and node.requests.magic == NATIVE_MAGIC


def test_forged_reach_and_dial_requests_send_nothing():
    """A kn_reach or kn_dial that echoes no token of ours (a forged source)
    is refused, and nobody is asked to dial anywhere."""
    net, public, _ = network(private=0)
    helper = public[4]
    victim = ("192.0.2.99", 4000)
    for message in (Reach(7 << 150, bytes(8)), Dial(7 << 150, victim, bytes(8))):
        helper.datagrams_to_send()
        data = codec.encode(NATIVE_MAGIC + bytes(16), message)
        helper.receive_datagram(data, victim, net.now)
        out = helper.datagrams_to_send()
        assert [codec.decode(d, 10_000).body for d, _ in out if d[0] == codec.RESPONSE] == [False]
        sent = [type(codec.decode(d, 10_000).message) for d, _ in out if d[0] == codec.REQUEST]
        assert Dial not in sent and Dialed not in sent  # at most the usual ping back
    assert helper.stats["reach_refused"] == 1 and helper.stats["dials_refused"] == 1


def test_a_client_that_was_in_a_table_leaves_it_when_it_says_it_is_a_client():
    net, public, _ = network(private=0)
    a, b = public[2], public[3]
    assert b.table.holds(a.id, a.addr)
    a.client_mode(True)
    # Its requests to its contacts echo their tokens: b knows it is a asking.
    net.call(a, lambda c, now: c.lookup(b.id, now))
    assert not b.table.holds(a.id, a.addr)


def test_without_its_hosts_addresses_a_node_learns_nothing_and_sends_no_more():
    """The simulator's and the library's nodes: nothing of this runs."""
    node = NodeCore(1, MemoryStore())
    assert not node.reach.active and node.requests.on_sent is None


def test_a_client_keeps_its_relays_bindings_open_and_replaces_a_dead_one():
    net, _public, private = network()
    node = private[0]
    relays = node.reach.relays
    assert len(relays) == RELAYS
    dead = relays[0]
    net.kill([dead.addr])
    net.run_until(net.now + 300)  # its pings fail: out of the table, replaced
    assert dead not in node.reach.relays and len(node.reach.relays) == RELAYS
    assert node.stats["relays_changed"] >= 2
    # Every relay still reaches it through the NAT, unasked: the binding is open.
    for relay in node.reach.relays:
        assert net._route(net.index[relay.addr], net.seen_as[net.index[node.addr]]) is not None


def test_a_forged_client_request_from_a_contacts_address_does_not_unlist_it():
    """Only a client request that echoes our token (so comes from that address)
    takes its sender out of the table; one forged from a node's real address
    and id, without the token, changes nothing."""
    net, public, _ = network(private=0)
    a, b = public[2], public[3]
    assert b.table.holds(a.id, a.addr)
    forged = codec.encode(CLIENT_MAGIC + bytes(16), Reach(a.id, bytes(8)))
    b.receive_datagram(forged, a.addr, net.now)
    assert b.table.holds(a.id, a.addr)
    token = b.tokens.token_for(a.addr[0])
    genuine = codec.encode(CLIENT_MAGIC + bytes(16), Reach(a.id, bytes(8), token))
    b.receive_datagram(genuine, a.addr, net.now)
    assert not b.table.holds(a.id, a.addr)
