"""The node core, driven by hand: exact timers, exact datagrams, no sockets."""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Callable

import msgpack
import pytest

from kadnode.config import ALPHA, BETA, LOOKUP_ATTEMPTS_MAX, Config, K
from kadnode.core import codec, kinds, vclock
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.events import PingResult
from kadnode.core.ids import ID_BYTES, key_digest
from kadnode.core.lookup import Lookup
from kadnode.core.messages import Contact, Kind, NodesReply, Ping, PingReply, Store, ValueReply
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore
from kadnode.errors import LocalProtocolError
from kadnode.sim.network import PairLatency, SimNetwork

PEER = ("10.0.0.2", 4000)
PEER_ID = 0xAB << 152


def core(now: float = 0.0, **config) -> NodeCore:
    return NodeCore(1 << 159, MemoryStore(), config=Config(**config), rng=random.Random(7), now=now)


def request(method: str, args: list, msg_id: bytes = b"\x11" * 20) -> bytes:
    return codec.encode_request(msg_id, method, args)


def reply_to(node: NodeCore, body: object) -> bytes:
    """A response to the one datagram the node has queued."""
    [(data, _addr)] = node.datagrams_to_send()
    return codec.encode_response(data[1:21], body)


def sent(node: NodeCore) -> list[tuple[object, tuple[str, int]]]:
    return [(codec.decode(d, 10_000), a) for d, a in node.datagrams_to_send()]


def replies(node: NodeCore) -> list[tuple[object, tuple[str, int]]]:
    """What the node sent that answers a request (not its own requests, such
    as the ping back that proves an unproven sender)."""
    return [(m, a) for m, a in sent(node) if type(m) is codec.Response]


def test_a_ping_retransmits_once_then_fails_at_exact_times():
    node = core()
    op = node.ping(PEER, 0.0)
    assert node.get_timer() == 1.0  # RTO_INITIAL before any RTT sample
    first = node.datagrams_to_send()
    node.handle_timer(1.0)
    again = node.datagrams_to_send()
    assert again == first  # same datagram, same message id
    assert node.get_timer() == 3.0  # backed off to 2 s (RFC 6298 5.5)
    node.handle_timer(2.999)
    assert node.next_event() is None
    node.handle_timer(3.0)
    event = node.next_event()
    assert event.op_id == op and event.result == PingResult(PEER, None, None)
    assert node.stats["timeouts"] == 1 and node.stats["retransmits"] == 1


def test_a_lost_lookup_request_is_sent_again_every_timeout_before_its_contact_fails():
    """Loss handled where it happens: the lookup moves on at the first timeout
    and sends the same datagram again at once (a lost one costs one timeout),
    then once a timeout, not backed off (a dead node among the k nearest
    holds the lookup's end), LOOKUP_ATTEMPTS sends in all, before the contact
    counts as failed."""
    node = core()
    node.table.seen(Contact(PEER_ID, *PEER, True), 0.0)
    node.lookup(PEER_ID ^ 1, 0.0)
    [(first, to)] = node.datagrams_to_send()
    assert to == PEER
    times = []
    while node.next_event() is None:
        at = node.get_timer()
        node.handle_timer(at)
        out = node.datagrams_to_send()
        if out:
            assert out == [(first, PEER)]  # the very datagram, same message id
            times.append(at)
    assert times == [1.0, 2.0, 3.0]  # every RTO_INITIAL
    assert node.config.lookup_attempts == len(times) + 1
    assert node.stats["stalls"] == 1 and node.stats["retransmits"] == 3
    assert node.stats["timeouts"] == 1 and at == 4.0  # failed, and the lookup ended


def pinged(node: NodeCore, times: int, lose_every: int, now: float) -> float:
    """``times`` pings to PEER, each answered; every ``lose_every``-th first
    send is lost and answered only when sent again. Returns the time after."""
    for n in range(times):
        node.ping(PEER, now)
        out = node.datagrams_to_send()
        if (n + 1) % lose_every == 0:  # lost: wait for it to be sent again
            out = []
            while not out:
                now = node.get_timer()
                node.handle_timer(now)
                out = node.datagrams_to_send()
        [ping] = [d for d, a in out if a == PEER and type(codec.decode(d, 10_000).message) is Ping]
        body = codec.encode_response(ping[1:21], PEER_ID.to_bytes(20, "big"))
        now += 0.01
        node.receive_datagram(body, PEER, now)
        while node.next_event() is not None:
            pass
    return now


def sends_to_a_dead_contact(node: NodeCore, now: float) -> int:
    """A lookup whose one contact never answers: how often its request is sent."""
    node.lookup(PEER_ID ^ 1, now)
    [(first, _)] = node.datagrams_to_send()
    sends = 1
    while node.next_event() is None:
        node.handle_timer(node.get_timer())
        sends += sum(d == first for d, _ in node.datagrams_to_send())
    return sends


def test_a_node_that_sees_heavy_loss_sends_a_lookups_request_more_often():
    """A lookup's request is sent LOOKUP_ATTEMPTS times, or more when the
    loss this node has seen calls for it (config.LOOKUP_ATTEMPTS_MAX): with
    half of its requests needing a second send, 7 times."""
    clean, lossy = core(), core()
    now = pinged(clean, 200, lose_every=1000, now=0.0)
    assert clean.requests.lookup_attempts() == clean.config.lookup_attempts == 4
    assert sends_to_a_dead_contact(clean, now) == 4
    now = pinged(lossy, 200, lose_every=2, now=0.0)
    assert lossy.requests.lookup_attempts() == LOOKUP_ATTEMPTS_MAX == 7
    assert sends_to_a_dead_contact(lossy, now) == 7


def test_a_reply_resolves_the_ping_and_adds_the_contact():
    node = core()
    node.ping(PEER, 0.0)
    node.receive_datagram(reply_to(node, PEER_ID.to_bytes(20, "big")), PEER, 0.004)
    result = node.next_event().result
    assert result.node_id == PEER_ID and result.rtt == pytest.approx(0.004)
    assert PEER_ID in node.table
    # The next request to it uses its measured RTT, clamped to the floor.
    node.ping(PEER, 1.0)
    assert node.get_timer() == pytest.approx(1.0 + 0.25)


def test_a_reply_from_another_address_is_not_taken():
    node = core()
    node.ping(PEER, 0.0)
    node.receive_datagram(reply_to(node, PEER_ID.to_bytes(20, "big")), ("10.0.0.9", 4000), 0.1)
    assert node.next_event() is None
    assert node.stats["unexpected_responses"] == 1
    assert PEER_ID not in node.table


def test_a_contact_is_dropped_on_the_third_consecutive_failure_not_the_first():
    node = core(stale_limit=3)
    contact = Contact(PEER_ID, *PEER)
    node.table.seen(contact, 0.0)
    for attempt in range(3):
        assert PEER_ID in node.table, attempt
        node.requests.send(
            PEER, contact, Ping(node.id), lambda *_: None, lambda *_: None, 10.0 * attempt, 1
        )
        node.handle_timer(10.0 * attempt + 5.0)
    assert PEER_ID not in node.table
    assert node.stats["contacts_dropped"] == 1


def test_requests_are_answered_in_the_dialect_of_the_asker():
    node = core()
    # A stock bmuller node that answered our ping: in the table at that address.
    node.proof.prove(PEER[0], 0.0)
    node.table.seen(Contact(PEER_ID, *PEER), 0.0)
    key = key_digest("k")
    node.receive_datagram(request("store", [PEER_ID.to_bytes(20, "big"), key, "v"]), PEER, 5.0)
    assert sent(node)[0][0].body is True
    plain = request("find_value", [PEER_ID.to_bytes(20, "big"), key])
    node.receive_datagram(plain, PEER, 10.0)
    assert sent(node)[0][0].body == {"value": "v"}  # bmuller's shape exactly
    native = request("find_value", [PEER_ID.to_bytes(20, "big"), key], NATIVE_MAGIC + b"\x00" * 16)
    node.receive_datagram(native, PEER, 10.0)
    body = sent(node)[0][0].body
    assert body == {"value": "v", "ttl": 86400.0 - 5.0, "token": node.tokens.token_for(PEER[0])}


def native_token(node: NodeCore, addr=PEER, now: float = 0.0) -> bytes:
    """The write token a native ping from ``addr`` is given (a peer the node
    knows, at an address that answered it: no ping back)."""
    node.proof.prove(addr[0], now)
    node.table.seen(Contact(PEER_ID, *addr, True), now)
    ping = request("ping", [PEER_ID.to_bytes(20, "big")], NATIVE_MAGIC + b"\x07" * 16)
    node.receive_datagram(ping, addr, now)
    [(reply, _)] = replies(node)
    return reply.body["token"]


def test_a_native_store_needs_a_token_given_to_the_same_address():
    node = core()
    key = key_digest("k")
    token = native_token(node)
    args = [PEER_ID.to_bytes(20, "big"), key, "v", 100.0, token]
    node.receive_datagram(
        request("store", args, NATIVE_MAGIC + b"\x01" * 16), ("10.6.6.6", 4000), 1.0
    )
    # Another address cannot prove itself with PEER's token: refused.
    assert replies(node)[0][0].body is False and node.store.get(key) is None
    assert node.stats["stores_refused_token"] == 1
    node.receive_datagram(request("store", args, NATIVE_MAGIC + b"\x02" * 16), PEER, 1.0)
    assert replies(node)[0][0].body is True and node.store.get(key) is not None


def test_tokens_stay_valid_for_one_rotation_then_expire():
    node = core()
    token = native_token(node)
    assert node.tokens.valid(PEER[0], token)
    node.handle_timer(300.0)  # the secret rotates; the previous one is still accepted
    assert node.tokens.valid(PEER[0], token)
    node.handle_timer(600.0)
    assert not node.tokens.valid(PEER[0], token)


# Upkeep far off: the node sends only what the test makes it send.
QUIET = {"stabilize_interval": 1e9, "anti_entropy_interval": 1e9, "refresh_interval": 1e9}


def put_shared(node: NodeCore, key: bytes, token: bytes, addr, now: float) -> object:
    """A native kn_put of a shared value from ``addr``; the body of the node's reply."""
    payload = kinds.siblings_to_wire((vclock.write(None, PEER_ID, "v"),))
    args = [PEER_ID.to_bytes(20, "big"), key, Kind.SHARED, payload, 100.0, token]
    node.receive_datagram(request("kn_put", args, NATIVE_MAGIC + b"\x03" * 16), addr, now)
    [(reply, _)] = replies(node)
    return reply.body


def test_a_kn_put_needs_an_unexpired_token_given_to_the_same_address():
    node = core(**QUIET)
    key = key_digest("room")
    refused = {"ok": False, "reason": "bad or expired write token"}
    token = native_token(node)  # given to PEER's host at 0 s
    assert put_shared(node, key, token, ("10.6.6.6", 4000), 1.0) == refused
    assert put_shared(node, key, bytes(8), PEER, 1.0) == refused
    node.handle_timer(300.0)
    node.handle_timer(600.0)  # two rotations: older than either secret kept
    assert put_shared(node, key, token, PEER, 600.0) == refused
    assert node.store.get(key) is None
    assert (node.stats["puts_refused"], node.stats["puts_in"]) == (3, 0)
    fresh = native_token(node, now=600.0)
    assert put_shared(node, key, fresh, PEER, 600.0) == {"ok": True, "reason": None}
    assert node.store.get(key).kind == Kind.SHARED and node.stats["puts_in"] == 1


def test_bad_datagrams_are_counted_and_dropped():
    node = core()
    for junk in (
        b"",
        b"\x00" * 21,
        b"\x02" + b"\x00" * 25,
        request("nope", []),
        request("ping", []),
        request("store", [b"x", b"y", "z"]),
    ):
        node.receive_datagram(junk, PEER, 0.0)
    assert node.stats["bad_datagrams"] == 6
    assert node.datagrams_to_send() == []


def test_a_node_claiming_our_id_is_not_answered():
    node = core()
    node.receive_datagram(request("ping", [node.id_bytes]), PEER, 0.0)
    assert node.datagrams_to_send() == [] and len(node.table) == 0


def test_put_refuses_an_oversized_value():
    node = core()
    with pytest.raises(LocalProtocolError, match="over the 1000-byte limit"):
        node.put(key_digest("k"), "x" * 2000, 0.0)


def test_a_store_sets_expiry_from_the_senders_remaining_lifetime():
    node = core(stabilize_interval=1000.0, anti_entropy_interval=1000.0)
    key = key_digest("k")
    args = [PEER_ID.to_bytes(20, "big"), key, "v", 100.0, native_token(node, now=50.0)]
    node.receive_datagram(request("store", args, NATIVE_MAGIC + b"\x01" * 16), PEER, 50.0)
    record = node.store.get(key)
    assert record.expires_at == 150.0 and record.resend_at == 50.0 + 3600.0
    assert node.get_timer() == 150.0
    node.handle_timer(150.0)
    assert node.store.get(key) is None and node.stats["expired"] == 1


def sent_to(node: NodeCore) -> dict[tuple[str, int], codec.Request]:
    """The requests the node has queued, by the address each goes to."""
    return {addr: message for message, addr in sent(node)}


def answer(node: NodeCore, asked: codec.Request, addr, reply: object, now: float) -> None:
    """``addr`` answers the request ``asked`` that the node sent it."""
    node.receive_datagram(codec.encode(asked.msg_id, reply), addr, now)


def native(distance: int, target: int, host: str) -> Contact:
    """A native contact at this XOR distance from ``target`` (give each its own
    /24: a lookup takes at most two candidates of one subnet)."""
    return Contact(target ^ distance, host, 4000, True)


def test_a_get_caches_the_value_for_its_remaining_lifetime_not_a_fresh_one():
    node = core(**QUIET)
    key = key_digest("cached")
    target = int.from_bytes(key, "big")
    lacking, holder = native(1, target, "10.0.3.1"), native(1 << 100, target, "10.0.4.1")
    for contact in (lacking, holder):
        node.table.seen(contact, 0.0)
    node.get(key, 10.0)
    asked = sent_to(node)
    answer(node, asked[lacking.addr], lacking.addr, NodesReply([], True, b"L" * 8), 10.1)
    answer(node, asked[holder.addr], holder.addr, ValueReply("v", True, 500.0, b"H" * 8), 10.1)
    result = node.next_event().result
    assert (result.value, result.source) == ("v", holder)
    # Paper 2.3: a copy at the nearest node that lacked it, with the 500 s the
    # holder had left, less the RTT: caching never makes a value live longer.
    [(store, addr)] = sent(node)
    assert addr == lacking.addr
    assert store.message == Store(node.id, key, "v", pytest.approx(500.0 - 0.1), b"L" * 8)


def test_a_gets_hop_count_is_that_of_the_node_that_had_the_value():
    node = core(**QUIET)
    key = key_digest("two hops away")
    target = int.from_bytes(key, "big")
    nearest = native(1, target, "10.0.3.1")  # asked first, has nothing
    seed = native(1 << 150, target, "10.0.4.1")
    holder = native(1 << 100, target, "10.0.5.1")  # known only to the seed
    for contact in (nearest, seed):
        node.table.seen(contact, 0.0)
    node.get(key, 0.0)
    asked = sent_to(node)
    assert set(asked) == {nearest.addr, seed.addr}
    answer(node, asked[nearest.addr], nearest.addr, NodesReply([], True, b"N" * 8), 0.1)
    answer(node, asked[seed.addr], seed.addr, NodesReply([holder], True, b"S" * 8), 0.1)
    [(find, addr)] = sent(node)
    assert addr == holder.addr
    answer(node, find, addr, ValueReply("v", True, 500.0, b"H" * 8), 0.2)
    result = node.next_event().result
    assert (result.value, result.source, result.queried) == ("v", holder, 3)
    assert result.hops == 2  # the seed is one hop, the holder it named is two


def test_a_replica_resends_what_it_holds_hourly_with_the_remaining_lifetime():
    node = core(**QUIET)
    key = key_digest("held")
    neighbours = [native(1 << 10, PEER_ID, "10.0.3.1"), native(1 << 20, PEER_ID, "10.0.4.1")]
    for contact in neighbours:
        node.table.seen(contact, 0.0)
    args = [PEER_ID.to_bytes(20, "big"), key, "v", 5000.0, native_token(node, now=50.0)]
    node.receive_datagram(request("store", args, NATIVE_MAGIC + b"\x01" * 16), PEER, 50.0)
    assert sent(node)[0][0].body is True
    # Paper 2.5: having just been sent the value, the replica skips its own
    # replication for an hour.
    node.handle_timer(50.0 + 3600.0 - 0.01)
    assert sent(node) == []
    node.handle_timer(3650.0)
    everyone = {PEER: PEER_ID} | {c.addr: c.node_id for c in neighbours}
    pings = sent(node)  # for write tokens, first
    assert {addr for _, addr in pings} == set(everyone)
    for ping, addr in pings:
        answer(node, ping, addr, PingReply(everyone[addr], b"T" * 8), 3650.02)
    stores = sent(node)
    assert {addr for _, addr in stores} == set(everyone)
    # 1400 s were left; less the RTT and the time the token took.
    remaining = pytest.approx(5050.0 - 3650.0 - 0.02 - 0.02)
    for store, _ in stores:
        assert store.message == Store(node.id, key, "v", remaining, b"T" * 8)
    assert node.stats["replicated"] == 1
    assert node.store.get(key).expires_at == 5050.0  # replication never extends it


# ---- a few nodes on the virtual network ------------------------------------


def small_network(n: int = 8, seed: int = 3, **config) -> tuple[SimNetwork, list[NodeCore]]:
    net = SimNetwork(seed=seed, config=Config(**config))
    nodes = [net.add_node() for _ in range(n)]
    for node in nodes[1:]:
        net.call(node, lambda c, now: c.bootstrap([nodes[0].addr], now))
    return net, nodes


def holders(nodes: list[NodeCore], key: bytes) -> dict[int, float]:
    return {n.id: r.expires_at for n in nodes if (r := n.store.get(key)) is not None}


def test_replication_keeps_the_original_expiry():
    net, nodes = small_network()
    key = key_digest("replicated")
    t0 = net.now
    result = net.call(nodes[1], lambda c, now: c.put(key, "v", now))
    assert result.acks + result.pending == 8 and result.local  # 7 others + its own
    net.run_until(t0 + 5)  # a put returns at its quorum: the other writes land
    expiry = holders(nodes, key)
    assert len(expiry) == 8 and max(expiry.values()) <= t0 + 86400 + 1
    # A newcomer after an hour of replication gets the *remaining* lifetime.
    newcomer = net.add_node()
    net.call(newcomer, lambda c, now: c.bootstrap([nodes[0].addr], now))
    net.run_until(t0 + 3600 + 5)
    assert newcomer.store.get(key) is not None
    assert newcomer.store.get(key).expires_at <= max(expiry.values())
    # Replicas re-sent it on the hour; one that has just received a copy skips
    # its own round (paper 2.5), so not necessarily every one.
    assert sum(n.stats["replicated"] for n in nodes if n is not nodes[1]) >= 3


class OneSlowHost(PairLatency):
    """10 ms one way between any two hosts, 200 ms to and from one of them."""

    def __init__(self, slow: int):
        super().__init__(seed=0)
        self.slow = slow

    def __call__(self, a: int, b: int, rng: random.Random) -> float:
        return 0.2 if self.slow in (a, b) else 0.01


def test_a_put_writes_each_replica_that_answered_while_its_lookup_waits_on_a_slow_one():
    net, nodes = small_network()
    writer, slow = nodes[1], nodes[5]
    net.set_latency(OneSlowHost(net.index[slow.addr]))
    key = key_digest("early")  # 8 nodes: all of them are among its k = 20 nearest
    t0 = net.now
    put = net.start(writer, lambda c, now: c.put(key, "v", now))
    net.run_until(t0 + 0.15)  # the slow node's reply is 0.4 s away
    assert put not in net.results
    assert set(holders(nodes, key)) == {n.id for n in nodes if n is not slow}
    result = net.wait(put)  # at the end of its lookup, which heard from the slow one
    assert (result.acks, result.pending) == (7, 1)  # W = 5: the slow one's write goes on
    net.run_until(net.now + 1)
    assert set(holders(nodes, key)) == {n.id for n in nodes}


def widest_burst(net: SimNetwork, sender: NodeCore, run: Callable[[], object]) -> int:
    """The most find_node requests ``sender`` sent at one instant during ``run``."""
    at: Counter[float] = Counter()
    me = net.index[sender.addr]

    def observe(now: float, src: int, _dest: int | None, data: bytes, _ok: bool) -> None:
        if src == me and b"find_node" in data:
            at[now] += 1

    net.observer = observe
    run()
    net.observer = None
    return max(at.values())


def test_a_put_asks_all_k_at_once_when_converged_and_its_republish_twice_alpha():
    net, nodes = small_network(40)
    writer, key = nodes[3], key_digest("burst")
    put = widest_burst(net, writer, lambda: net.call(writer, lambda c, now: c.put(key, "v", now)))
    day = net.now + 86400 + 60
    republish = widest_burst(net, writer, lambda: net.run_until(day))
    assert writer.stats["republished"] == 1
    assert put > 2 * ALPHA >= republish


def test_a_value_put_with_a_ttl_is_gone_everywhere_at_its_expiry_its_publishers_copy_too():
    net, nodes = small_network()
    key = key_digest("ephemeral")
    t0 = net.now
    net.call(nodes[1], lambda c, now: c.put(key, "v", now, 600.0))
    net.run_until(t0 + 599)
    assert len(holders(nodes, key)) == 8
    assert net.call(nodes[5], lambda c, now: c.get(key, now)).value == "v"
    net.run_until(t0 + 601)
    assert holders(nodes, key) == {}
    assert not net.call(nodes[5], lambda c, now: c.get(key, now)).found
    assert nodes[1].stats["republished"] == 0


def test_the_publisher_republishes_daily_with_a_fresh_lifetime():
    net, nodes = small_network()
    key = key_digest("daily")
    t0 = net.now
    net.call(nodes[2], lambda c, now: c.put(key, "v", now))
    net.run_until(t0 + 86400 + 5)
    assert nodes[2].stats["republished"] == 1
    expiry = holders(nodes, key)
    assert len(expiry) == 8 and min(expiry.values()) > t0 + 86400 * 1.9


def test_the_same_seed_gives_the_same_trace_and_another_seed_another():
    def digest(seed: int) -> str:
        net, nodes = small_network(seed=seed)
        net.call(nodes[3], lambda c, now: c.put(key_digest("x"), "y", now))
        return net.trace.hexdigest()

    assert digest(11) == digest(11)
    assert digest(11) != digest(12)


def test_a_lookup_routes_around_dead_nodes():
    net, nodes = small_network(30)
    dead = nodes[5:15]
    for node in dead:
        net.down.add(node.addr)
    found = net.call(nodes[1], lambda c, now: c.lookup(nodes[20].id, now))
    assert found.peer is not None and found.peer.node_id == nodes[20].id
    target = nodes[20].id ^ 1  # no node has this id: the lookup ends on the beta rule
    result = net.call(nodes[1], lambda c, now: c.lookup(target, now))
    alive = sorted(
        (n.id for n in nodes if n not in dead and n is not nodes[1]), key=lambda i: i ^ target
    )
    got = [c.node_id for c in result.closest]
    heard = [i for i in got if i not in result.unheard]
    # It ends once the beta nearest have answered: those are the live nearest,
    # and everyone it heard from is live, nearest first. The dead are there
    # only as named by others (responders still list them).
    assert heard[:BETA] == alive[:BETA] == got[:BETA]
    assert heard == [i for i in alive if i in heard] and len(got) == K
    assert result.failed >= 1 and {n.id for n in dead} & set(got) <= result.unheard
    # Asked to hear from all k (where a put would store), it lists only the live.
    every = net.call(nodes[1], lambda c, now: c.lookup(target, now, all_k=True))
    got = [c.node_id for c in every.closest]
    assert got == alive[: len(got)] and len(got) >= 15 and not every.unheard


def test_ids_are_20_bytes_on_the_wire():
    node = core()
    node.ping(PEER, 0.0)
    [(data, _)] = node.datagrams_to_send()
    message = codec.decode(data, 10_000)
    assert message.message.sender_id == node.id
    assert len(node.id_bytes) == ID_BYTES
    # The raw wire: type byte + 20-byte message id, then msgpack [method, args].
    method, args = msgpack.unpackb(data[codec.HEADER :])
    assert method == "ping"
    assert isinstance(args[0], bytes) and len(args[0]) == ID_BYTES
    assert int.from_bytes(args[0], "big") == node.id


def answer_the_ping_back(node: NodeCore, node_id: int, addr, native: bool, now: float) -> None:
    """``addr`` answers the ping the node sent back to it (which proves it)."""
    [(ping, to)] = [(d, a) for d, a in node.datagrams_to_send() if d[0] == codec.REQUEST]
    assert to == addr
    body = (
        {"id": node_id.to_bytes(20, "big"), "token": bytes(8)}
        if native
        else node_id.to_bytes(20, "big")
    )
    node.receive_datagram(codec.encode_response(ping[1:21], body), addr, now)


def test_only_kadnode_contacts_enter_the_ring_view():
    node = core()
    plain = request("ping", [PEER_ID.to_bytes(20, "big")])
    node.receive_datagram(plain, PEER, 0.0)
    answer_the_ping_back(node, PEER_ID, PEER, False, 0.01)
    assert PEER_ID in node.table and node.ring.successor is None
    native = request("ping", [(PEER_ID + 1).to_bytes(20, "big")], NATIVE_MAGIC + b"\x02" * 16)
    node.receive_datagram(native, ("10.0.0.3", 4000), 0.0)
    answer_the_ping_back(node, PEER_ID + 1, ("10.0.0.3", 4000), True, 0.01)
    assert node.ring.successor.node_id == PEER_ID + 1
    assert [c.node_id for _, c in node.fingers().table()] == [PEER_ID + 1]


def test_a_join_starts_when_the_first_seed_answers_not_after_dead_ones_time_out():
    node = core()
    node.bootstrap([PEER, ("10.0.0.99", 4000)], 0.0)
    pings = node.datagrams_to_send()
    live = next(d for d, a in pings if a == PEER)
    node.receive_datagram(
        codec.encode_response(live[1:21], PEER_ID.to_bytes(20, "big")), PEER, 0.01
    )
    [(message, addr)] = sent(node)
    assert message.message == codec.FindNode(node.id, node.id) and addr == PEER


def test_finished_lookups_leave_no_garbage_for_the_cycle_collector():
    # A lookup's callbacks must not form a reference cycle: with many nodes
    # in one process, uncollected lookups were 5 KiB per node (N=200).
    net, nodes = small_network(12)
    gc.collect()
    gc.disable()
    try:
        net.call(nodes[1], lambda c, now: c.put(key_digest("k"), "v", now))
        net.call(nodes[2], lambda c, now: c.get(key_digest("k"), now))
        net.call(nodes[3], lambda c, now: c.lookup(nodes[7].id, now))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        leftovers = [o for o in gc.garbage if isinstance(o, Lookup)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leftovers == []


def test_stabilize_pings_a_predecessor_only_when_it_was_not_heard_from_in_a_round():
    """A live predecessor asks us (its successor) every round, so Chord's
    check_predecessor ping is sent only to one silent for a whole interval."""
    node = core()
    interval = node.config.stabilize_interval
    succ = Contact(0xC0 << 152, "10.0.0.3", 4000, True)
    pred = Contact(0x70 << 152, "10.0.0.4", 4000, True)
    for contact in (succ, pred):
        node.saw(contact, 0.0)
    assert node.ring.predecessor == pred and node.ring.successor == succ
    node.stabilize(interval - 1.0)
    assert [addr for _, addr in node.datagrams_to_send()] == [succ.addr]  # kn_ring only
    node.stabilize(interval + 0.5)
    assert sorted(addr for _, addr in node.datagrams_to_send()) == sorted([succ.addr, pred.addr])
