"""Endpoint proof before amplification: what a forged source address can make
a node send, request by request (kadnode.core.proof, kadnode.core.answers)."""

from __future__ import annotations

import random

import pytest

from kadnode.config import (
    AE_JOBS_PER_ROUND,
    AMPLIFICATION,
    PER_SUBNET_TABLE,
    PROOF_PAD_TO,
    WELCOME_DELAY,
    Config,
)
from kadnode.core import codec, kinds, vclock
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.ids import key_digest
from kadnode.core.messages import Contact, FindNode, Kind, RingQuery
from kadnode.core.node import NodeCore
from kadnode.core.operations import ignore
from kadnode.core.proof import Proof, wire_bytes
from kadnode.core.store import MemoryStore, Record

VICTIM = ("10.66.0.1", 4000)  # the forged source: it never answers anything
QUIET = {"stabilize_interval": 1e9, "anti_entropy_interval": 1e9, "refresh_interval": 1e9}
SENDER = (0xCD << 152).to_bytes(20, "big")


def replies(node: NodeCore) -> list[object]:
    return [codec.decode(d, 10_000) for d, _ in node.datagrams_to_send() if d[0] == codec.RESPONSE]


def node_with_a_table(values: int = 50, contacts: int = 40) -> NodeCore:
    """A node that knows ``contacts`` contacts (each in its own /24) and holds values,
    with a large value under one key: a reflector's best case."""
    node = NodeCore(1 << 159, MemoryStore(), config=Config(**QUIET), rng=random.Random(3))
    rng = random.Random(9)
    for i in range(contacts):
        node.table.seen(Contact(rng.getrandbits(160), f"10.{i}.0.1", 4000, True), 0.0)
    for i in range(values):
        node.store.put(Record(key_digest(f"v{i}"), "x" * 900, 86400.0, False, 3600.0))
    node.datagrams_to_send()
    return node


def requests() -> dict[str, bytes]:
    """One datagram of every request type a node answers, as a forger sends it."""
    key = key_digest("v1")
    token = bytes(8)
    native = NATIVE_MAGIC + bytes(16)
    shared = kinds.siblings_to_wire((vclock.write(None, 0xCD << 152, "x" * 900),))
    return {
        "ping": codec.encode_request(bytes(20), "ping", [SENDER]),
        "find_node": codec.encode_request(bytes(20), "find_node", [SENDER, bytes(20)]),
        "find_node native": codec.encode_request(native, "find_node", [SENDER, bytes(20)]),
        "find_value": codec.encode_request(bytes(20), "find_value", [SENDER, key]),
        "find_value native": codec.encode_request(native, "find_value", [SENDER, key]),
        "store": codec.encode_request(bytes(20), "store", [SENDER, key, "y"]),
        "store native": codec.encode_request(native, "store", [SENDER, key, "y", 60.0, token]),
        "kn_put": codec.encode_request(
            native, "kn_put", [SENDER, key_digest("s"), Kind.SHARED, shared, 60.0, token]
        ),
        "kn_ring": codec.encode_request(native, "kn_ring", [SENDER]),
        "kn_find_successor": codec.encode_request(native, "kn_find_successor", [SENDER, bytes(20)]),
        "kn_digest": codec.encode_request(native, "kn_digest", [SENDER, [bytes(8)] * 64]),
        "kn_keys": codec.encode_request(
            native, "kn_keys", [SENDER, [0], [[key_digest(f"v{i}"), bytes(8)] for i in range(9)]]
        ),
        "kn_bye": codec.encode_request(native, "kn_bye", [SENDER, token]),
    }


@pytest.mark.parametrize("kind", list(requests()))
def test_a_forged_request_makes_the_node_send_its_source_at_most_three_times_its_bytes(kind):
    node = node_with_a_table()
    data = requests()[kind]
    node.receive_datagram(data, VICTIM, 1.0)
    sent = [d for d, addr in node.datagrams_to_send() if addr == VICTIM]
    # Everything else it might send later because of this request: the ping
    # back times out (the victim never answers), and nothing is retransmitted.
    for t in (2.0, 5.0, 20.0, 600.0):
        node.handle_timer(t)
        sent += [d for d, addr in node.datagrams_to_send() if addr == VICTIM]
    out = sum(wire_bytes(len(d), VICTIM[0]) for d in sent)
    assert out <= AMPLIFICATION * wire_bytes(len(data), VICTIM[0]), (kind, len(sent), out)


def test_the_unproven_host_is_pinged_back_once_and_its_answer_proves_it():
    node = node_with_a_table()
    find = requests()["find_node"]
    for _ in range(3):
        node.receive_datagram(find, VICTIM, 1.0)
    pings = [d for d, addr in node.datagrams_to_send() if d[0] == codec.REQUEST]
    assert len(pings) == 1 and node.stats["dial_backs"] == 1
    assert not node.proof.proven(VICTIM[0], 1.0)
    node.receive_datagram(codec.encode_response(pings[0][1:21], SENDER), VICTIM, 1.1)
    assert node.proof.proven(VICTIM[0], 1.1)
    assert int.from_bytes(SENDER, "big") in node.table  # now a contact


def test_a_kadnode_node_on_a_proven_host_is_admitted_by_its_token_not_pinged_back():
    """Many nodes behind one address (a host already proven): a kadnode
    newcomer there costs no ping back if its next request echoes the token
    our reply gave it, which admits it; one that never asks again is pinged
    back WELCOME_DELAY later. A stock bmuller node, which cannot echo tokens,
    is pinged back at once."""
    node = node_with_a_table()
    node.proof.prove(VICTIM[0], 1.0)
    newcomer = (VICTIM[0], 4001)
    find = codec.encode_request(NATIVE_MAGIC + bytes(16), "find_node", [SENDER, bytes(20)])
    node.receive_datagram(find, newcomer, 1.0)
    [reply] = replies(node)
    assert node.stats["dial_backs"] == 0 and int.from_bytes(SENDER, "big") not in node.table
    echo = codec.encode_request(
        NATIVE_MAGIC + b"\x01" * 16, "find_node", [SENDER, bytes(20), reply.body["token"]]
    )
    node.receive_datagram(echo, newcomer, 1.1)
    node.datagrams_to_send()
    assert int.from_bytes(SENDER, "big") in node.table
    stock = codec.encode_request(
        bytes(20), "find_node", [(0xCE << 152).to_bytes(20, "big"), bytes(20)]
    )
    node.receive_datagram(stock, (VICTIM[0], 4002), 1.2)
    pings = [addr for d, addr in node.datagrams_to_send() if d[0] == codec.REQUEST]
    assert pings == [(VICTIM[0], 4002)] and node.stats["dial_backs"] == 1
    quiet = (0xCF << 152).to_bytes(20, "big")  # asks once and never again
    once = codec.encode_request(NATIVE_MAGIC + b"\x02" * 16, "find_node", [quiet, bytes(20)])
    node.receive_datagram(once, (VICTIM[0], 4003), 1.3)
    node.datagrams_to_send()
    assert node.stats["dial_backs"] == 1  # the stock node's, above
    node.handle_timer(1.3 + WELCOME_DELAY)
    to_it = [d for d, addr in node.datagrams_to_send() if addr == (VICTIM[0], 4003)]
    assert len(to_it) == 1 and node.stats["dial_backs"] == 2  # its welcome, later


def test_a_newcomer_on_a_proven_host_whose_bucket_is_full_is_not_pinged_back():
    """Its bucket full of contacts heard from lately, a newcomer could only
    wait in the replacement cache: no welcome. Once the bucket's oldest is
    due its ping before eviction, a newcomer there is welcomed again."""
    node = NodeCore(1 << 159, MemoryStore(), config=Config(**QUIET), rng=random.Random(3))
    node.proof.prove(VICTIM[0], 1.0)
    for i in range(node.config.k):  # bucket 159: ids whose top bit differs from ours
        node.table.seen(Contact(i + 1, f"10.{i}.0.1", 4000, True), 1.0)

    def asks(sender: int, port: int, now: float) -> list[tuple[str, int]]:
        find = codec.encode_request(
            NATIVE_MAGIC + bytes(16), "find_node", [sender.to_bytes(20, "big"), bytes(20)]
        )
        node.receive_datagram(find, (VICTIM[0], port), now)
        node.datagrams_to_send()
        node.handle_timer(now + WELCOME_DELAY)
        return [addr for d, addr in node.datagrams_to_send() if d[0] == codec.REQUEST]

    assert asks(1 << 150, 4010, 2.0) == []
    assert node.stats["dial_backs"] == 0
    later = 1.0 + node.config.good_for
    assert (VICTIM[0], 4011) in asks(1 << 151, 4011, later)


def test_a_welcome_answered_by_another_node_admits_nobody():
    """A request forged from a real node's address with a made-up id: the
    ping back reaches the real node, whose reply names its own id, so the
    made-up one does not enter the table at that address."""
    node = node_with_a_table()
    node.proof.prove(VICTIM[0], 1.0)
    made_up = (0xD0 << 152).to_bytes(20, "big")
    forged = codec.encode_request(NATIVE_MAGIC + bytes(16), "find_node", [made_up, bytes(20)])
    node.receive_datagram(forged, (VICTIM[0], 4005), 1.0)
    node.datagrams_to_send()
    node.handle_timer(1.0 + WELCOME_DELAY)
    [ping] = [d for d, addr in node.datagrams_to_send() if addr == (VICTIM[0], 4005)]
    real = (0xD1 << 152).to_bytes(20, "big")
    node.receive_datagram(codec.encode_response(ping[1:21], real), (VICTIM[0], 4005), 1.1 + 2)
    assert int.from_bytes(made_up, "big") not in node.table
    assert int.from_bytes(real, "big") not in node.table  # not asked about: not taken either


def test_a_proven_host_gets_full_replies_and_a_padded_request_earns_one():
    node = node_with_a_table()
    find = requests()["find_node native"]
    node.receive_datagram(find, VICTIM, 1.0)
    [cut] = replies(node)
    assert len(cut.body["nodes"]) < 20 and node.stats["replies_cut"] == 1
    padded = codec.encode_request(
        NATIVE_MAGIC + b"\x01" * 16, "find_node", [SENDER, bytes(20), bytes(PROOF_PAD_TO - 80)]
    )
    node.receive_datagram(padded, ("10.67.0.1", 4000), 1.0)
    [full] = [
        codec.decode(d, 10_000) for d, _ in node.datagrams_to_send() if d[0] == codec.RESPONSE
    ]
    assert len(full.body["nodes"]) == 20
    node.proof.prove(VICTIM[0], 2.0)
    node.receive_datagram(find, VICTIM, 2.0)
    [proven] = replies(node)
    assert len(proven.body["nodes"]) == 20


def test_a_nodes_own_first_requests_are_padded_to_earn_a_full_reply_with_or_without_a_digest():
    node = node_with_a_table()
    peer = Contact(7 << 150, "10.68.0.1", 4000, native=True)  # no token from it yet
    asks = [FindNode(node.id, 5), RingQuery(node.id), RingQuery(node.id, bytes(8)), FindNode(1, 2)]
    for message in asks:
        node.requests.send(peer.addr, peer, message, ignore, ignore, 1.0, 1)
    sizes = [len(d) for d, _ in node.datagrams_to_send() if d[0] == codec.REQUEST]
    assert sizes == [PROOF_PAD_TO] * len(asks)


def test_echoing_a_token_the_node_gave_that_host_proves_it():
    node = node_with_a_table()
    token = node.tokens.token_for(VICTIM[0])
    proof = codec.encode_request(NATIVE_MAGIC + bytes(16), "find_node", [SENDER, bytes(20), token])
    node.receive_datagram(proof, VICTIM, 1.0)
    assert node.proof.proven(VICTIM[0], 1.0)
    other = codec.encode_request(
        NATIVE_MAGIC + bytes(16), "find_node", [SENDER, bytes(20), node.tokens.token_for("x")]
    )
    node.receive_datagram(other, ("10.68.0.1", 4000), 1.0)
    assert not node.proof.proven("10.68.0.1", 1.0)


def test_a_proof_lasts_its_lifetime_and_credit_only_what_was_earned():
    proof = Proof()
    proof.received("h", 100)
    assert proof.credit("h") == AMPLIFICATION * wire_bytes(100, "h")
    assert proof.spend("h", 300) and not proof.spend("h", 300)
    proof.prove("h", 10.0)
    assert proof.proven("h", 10.0 + 3599.0) and not proof.proven("h", 10.0 + 3600.0)


def test_an_unproven_host_gets_no_writes_taken_and_no_anti_entropy():
    node = node_with_a_table()
    for kind in ("store", "kn_digest", "kn_keys"):
        node.receive_datagram(requests()[kind], VICTIM, 1.0)
    assert node.stats["stores_refused_unproven"] == 1
    assert node.stats["syncs_refused_unproven"] == 2
    assert node.store.get(key_digest("v1")).value == "x" * 900


def test_a_proven_hosts_address_forged_still_gets_no_write_taken():
    """Proof says an address receives; it does not say this datagram came from
    it. Writes and anti-entropy need the token in the request itself."""
    node = node_with_a_table()
    honest = ("10.69.0.1", 4000)
    node.proof.prove(honest[0], 1.0)  # it answered us: its replies may be full size
    key = key_digest("v1")
    forged = [
        codec.encode_request(bytes(20), "store", [SENDER, key, "forged"]),
        codec.encode_request(NATIVE_MAGIC + bytes(16), "store", [SENDER, key, "f", 60.0, bytes(8)]),
        requests()["kn_digest"],
        requests()["kn_keys"],
    ]
    for data in forged:
        node.receive_datagram(data, honest, 1.0)
    assert node.store.get(key).value == "x" * 900
    assert node.stats["stores_refused_unproven"] == node.stats["stores_refused_token"] == 1
    assert node.stats["syncs_refused_unproven"] == 2
    assert len(node.background) == 0  # nothing queued to push at it


def vouched(node: NodeCore, kind: str, sender: int, addr) -> bytes:
    """An anti-entropy request from ``sender`` at ``addr`` that echoes our token."""
    token = node.tokens.token_for(addr[0])
    sid = sender.to_bytes(20, "big")
    if kind == "kn_digest":
        args = [sid, [bytes(8)] * 64, token]
    else:
        args = [sid, [0], [[key_digest(f"v{i}"), bytes(8)] for i in range(3)], token]
    return codec.encode_request(NATIVE_MAGIC + bytes(16), kind, args)


def test_anti_entropy_is_for_neighbours_only_each_starting_at_most_8_store_scans_a_round():
    node = node_with_a_table(contacts=200)
    assert len(node.table) > 2 * node.config.k
    near = node.table.closest(node.id, 1)[0]
    far = max(node.table.contacts(), key=lambda c: c.node_id ^ node.id)
    node.receive_datagram(vouched(node, "kn_keys", far.node_id, far.addr), far.addr, 1.0)
    assert node.stats["syncs_refused_far"] == 1 and len(node.background) == 0
    ping = codec.encode_request(
        NATIVE_MAGIC + bytes(16), "ping", [near.node_id.to_bytes(20, "big")]
    )
    node.receive_datagram(ping, near.addr, 1.0)
    handoff = len(node.background)  # its first request: the join handoff it is owed
    for _ in range(20):
        for kind in ("kn_digest", "kn_keys"):
            node.receive_datagram(vouched(node, kind, near.node_id, near.addr), near.addr, 1.0)
    # One digest (the next 19 find it computing) and seven pushes; the rest refused.
    assert len(node.background) - handoff == AE_JOBS_PER_ROUND
    assert node.stats["ae_jobs_refused"] == 20 - (AE_JOBS_PER_ROUND - 1)
    later = 1.0 + node.config.anti_entropy_interval
    node.receive_datagram(vouched(node, "kn_keys", near.node_id, near.addr), near.addr, later)
    assert node.ae_jobs[near.node_id] == [later]  # a new round: its first job queued
    assert node.stats["ae_jobs_refused"] == 20 - (AE_JOBS_PER_ROUND - 1)


def test_forged_newcomers_from_one_proven_subnet_hold_at_most_a_tables_worth_of_welcomes():
    """Requests forged from a proven host, each with a port and an id of its own,
    queue no more welcomes than the table would ever take from that /24: a newcomer
    on another proven host is still welcomed, and the forged ones cost few pings."""
    node = node_with_a_table()
    honest = ("10.77.0.1", 4000)
    for host in (VICTIM[0], honest[0]):
        node.proof.prove(host, 1.0)

    def asks(addr: tuple[str, int], sender: int) -> None:
        find = codec.encode_request(
            NATIVE_MAGIC + bytes(16), "find_node", [sender.to_bytes(20, "big"), bytes(20)]
        )
        node.receive_datagram(find, addr, 1.0)

    for i in range(1, 201):  # ids near ours: buckets with room, which the table wants
        asks((VICTIM[0], 5000 + i), node.id ^ (i << 8))
    asks(honest, node.id ^ (1 << 20))
    node.datagrams_to_send()
    assert len(node.welcomes) == PER_SUBNET_TABLE + 1
    node.handle_timer(1.0 + WELCOME_DELAY)
    pinged = [addr for d, addr in node.datagrams_to_send() if d[0] == codec.REQUEST]
    assert honest in pinged
    assert sum(host == VICTIM[0] for host, _ in pinged) == PER_SUBNET_TABLE
    assert len(node.welcomes) == 0


def test_a_forged_request_naming_a_contact_that_gave_us_a_token_stays_within_3x():
    """The reply's fit keeps room for the ping back with a token in it: the id
    named is a contact whose token we hold, and the ping carries it (room for a
    bare ping made kn_ring 3.01x in `python -m chaos.attacks amplify`)."""
    from kadnode.core.tokens import proving
    from kadnode.sim.network import SimNetwork

    net = SimNetwork(seed=4, config=Config(**QUIET))
    nodes = [net.add_node() for _ in range(25)]
    for other in nodes[1:]:
        net.call(other, lambda c, now: c.bootstrap([nodes[0].addr], now))
    node = nodes[5]
    known = next(c for c in node.table.contacts() if proving(node.table, c.node_id, net.now))
    for method, args in [("kn_ring", [None]), ("find_node", [bytes(20)]), ("ping", [])]:
        node.datagrams_to_send()
        request = codec.encode_request(
            NATIVE_MAGIC + bytes(16), method, [known.node_id.to_bytes(20, "big"), *args]
        )
        node.receive_datagram(request, VICTIM, net.now)
        out = [(d, a) for d, a in node.datagrams_to_send() if a == VICTIM]
        assert len(out) == 2, method  # the reply, and the ping back
        # The ping back is no larger than what the reply's fit kept room for.
        assert len(out[1][0]) <= node.ping_size, method
        sent = sum(wire_bytes(len(d), VICTIM[0]) for d, _ in out)
        assert sent <= AMPLIFICATION * wire_bytes(len(request), VICTIM[0]), (method, sent)
        node.dialing.clear()  # the next request's ping back is a first one again
        node.proof = Proof()
