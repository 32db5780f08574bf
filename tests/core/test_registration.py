"""Peer registration nobody can forge, shared values, quorum and read repair.

Whole networks on the virtual clock: node cores with ed25519 identities.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from simwire import raw_put

from kadnode.config import Config
from kadnode.core import codec, kinds, records, signed, vclock
from kadnode.core.identity import Identity
from kadnode.core.ids import key_digest
from kadnode.core.messages import Kind
from kadnode.core.node import NodeCore
from kadnode.errors import LocalProtocolError
from kadnode.sim.network import SimNetwork


def identity(rng: random.Random) -> Identity:
    return Identity.from_seed(rng.randbytes(32))


def network(n: int, seed: int = 21, **config) -> tuple[SimNetwork, list[NodeCore]]:
    net = SimNetwork(seed=seed, config=Config(**config))
    rng = random.Random(seed)
    nodes = []
    for _ in range(n):
        me = identity(rng)
        core = net.add_node(node_id=me.node_id)
        core.identity = me
        core.addresses = ((core.addr[0], core.addr[1]),)
        nodes.append(core)
    for node in nodes[1:]:
        net.call(node, lambda c, now: c.bootstrap([nodes[0].addr], now))
    return net, nodes


def find_peer(net: SimNetwork, reader: NodeCore, node_id: int):
    return net.call(reader, lambda c, now: c.read(node_id.to_bytes(20, "big"), Kind.PEER, now))


def test_a_registered_address_is_found_verified_and_a_new_one_wins_by_sequence():
    net, nodes = network(30)
    a, b = nodes[3], nodes[17]
    put = net.call(a, lambda c, now: c.register(now))
    assert put.quorum and put.acks + put.pending >= 15
    found = find_peer(net, b, a.id)
    record = records.from_wire(found.payload)
    assert record.node_id == a.id and record.addresses == (a.addr,)
    assert found.quorum and found.rejected == 0
    # A restarts elsewhere: a new address, a higher sequence; B sees it at once.
    a.addresses = (("10.9.9.9", 5000),)
    net.run_until(net.now + 1)
    net.call(a, lambda c, now: c.register(now))
    again = records.from_wire(find_peer(net, b, a.id).payload)
    assert again.addresses == (("10.9.9.9", 5000),) and again.seq > record.seq


def test_forged_records_are_refused_with_a_reason_and_reads_return_the_genuine_one():
    net, nodes = network(25)
    victim, attacker, replica = nodes[2], nodes[9], nodes[14]
    net.call(victim, lambda c, now: c.register(now))
    genuine = (
        records.from_wire(replica.store.get(victim.id_bytes).value)
        if replica.store.get(victim.id_bytes)
        else records.from_wire(victim.store.get(victim.id_bytes).value)
    )
    now, key = net.now, victim.id_bytes
    mine = identity(random.Random(99))
    cases = {
        # signed by the attacker's key for the victim's id
        "id does not derive from the key": records.to_wire(
            records.PeerRecord(
                victim.id,
                mine.public_key,
                (("10.6.6.6", 1),),
                genuine.seq + 1,
                now + 600,
                mine.sign(
                    records.signed_bytes(
                        mine.public_key, (("10.6.6.6", 1),), genuine.seq + 1, now + 600
                    )
                ),
            )
        ),
        # the victim's key, a changed address, the old signature
        "bad signature": records.to_wire(
            records.PeerRecord(
                victim.id,
                genuine.public_key,
                (("10.6.6.6", 1),),
                genuine.seq + 1,
                genuine.expires,
                genuine.signature,
            )
        ),
        # a genuine record of another node, under the victim's id
        "stored under another id": records.to_wire(
            records.sign_record(mine, (("10.6.6.6", 1),), 1, now + 600)
        ),
    }
    for reason, payload in cases.items():
        assert raw_put(net, replica, attacker, key, payload, Kind.PEER) == {
            "ok": False,
            "reason": reason,
        }
    # A replay of an older genuine record.
    older = records.sign_record(victim.identity, victim.addresses, genuine.seq - 1, now + 600)
    assert raw_put(net, replica, attacker, key, records.to_wire(older), Kind.PEER) == {
        "ok": False,
        "reason": "older sequence than the one held",
    }
    # A plain STORE cannot overwrite it either.
    plain = codec.encode_request(bytes(20), "store", [attacker.id_bytes, key, "junk"])
    replica.receive_datagram(plain, attacker.addr, net.now)
    assert codec.decode(replica.datagrams_to_send()[0][0], 10_000).body is False
    found = records.from_wire(find_peer(net, nodes[20], victim.id).payload)
    assert found == genuine


def test_concurrent_shared_writes_become_siblings_and_a_write_naming_both_resolves_them():
    net, nodes = network(20)
    key = key_digest("room")
    x, y, reader = nodes[4], nodes[11], nodes[15]
    net.call(x, lambda c, now: c.put_shared(key, "from x", None, now))
    net.call(y, lambda c, now: c.put_shared(key, "from y", None, now))
    read = net.call(reader, lambda c, now: c.read(key, Kind.SHARED, now))
    siblings = kinds.siblings_from_wire(read.payload)
    assert sorted(s.value for s in siblings) == ["from x", "from y"]
    context = vclock.to_wire(vclock.context(siblings))
    net.call(reader, lambda c, now: c.put_shared(key, "merged", context, now))
    after = net.call(x, lambda c, now: c.read(key, Kind.SHARED, now))
    assert [s.value for s in kinds.siblings_from_wire(after.payload)] == ["merged"]


def test_a_put_below_the_write_quorum_fails_clearly_and_a_later_read_repairs():
    net, nodes = network(40, write_quorum=11, read_quorum=11)
    key = key_digest("quorum")
    writer = nodes[1]
    target = int.from_bytes(key, "big")
    closest = sorted((n for n in nodes if n is not writer), key=lambda n: n.id ^ target)[:20]
    for dead in closest[:12]:
        net.down.add(dead.addr)
    put = net.call(writer, lambda c, now: c.put_shared(key, "v1", None, now))
    # 12 of the 20 closest others are down. The replica set is the 20 closest
    # counting the writer; its live members (the writer's own copy among
    # them) acknowledge, too few for W.
    assert not put.quorum and put.needed == 11 and put.replica_set == 20
    in_set = sorted([writer, *closest], key=lambda n: n.id ^ target)[:20]
    live = [n for n in in_set if n.addr not in net.down]
    assert put.local and put.acks == len(live) < 11
    for dead in closest[:12]:
        net.down.discard(dead.addr)
    # The replicas that were down come back empty; a read finds them and repairs.
    read = net.call(nodes[30], lambda c, now: c.read(key, Kind.SHARED, now))
    assert read.found and read.repaired >= 12 and read.answered >= 19
    net.run_until(net.now + 1)
    assert all(n.store.get(key) is not None for n in closest)


@pytest.mark.parametrize("kind", [Kind.PEER, Kind.SHARED])
def test_reads_of_nothing_are_not_found_and_repair_nothing(kind):
    net, nodes = network(12)
    read = net.call(nodes[2], lambda c, now: c.read(key_digest("absent"), kind, now))
    assert not read.found and read.repaired == 0 and read.holding == 0


def test_a_second_blind_write_from_the_same_node_replaces_its_first_not_dropped():
    net, nodes = network(10)
    key = key_digest("twice")
    net.call(nodes[2], lambda c, now: c.put_shared(key, "first", None, now))
    net.call(nodes[2], lambda c, now: c.put_shared(key, "second", None, now))
    read = net.call(nodes[7], lambda c, now: c.read(key, Kind.SHARED, now))
    # One writer's later write follows its earlier one (its counter moves on).
    [only] = kinds.siblings_from_wire(read.payload)
    assert only.value == "second" and only.clock.get(nodes[2].id) == 2


def test_oversized_and_unresolved_shared_writes_are_the_callers_error():
    net, nodes = network(6)
    key = key_digest("crowded")
    with pytest.raises(LocalProtocolError, match="over the 1000-byte limit"):
        nodes[1].put_shared(key, "x" * 2000, None, net.now)
    for n in nodes[:4]:  # four concurrent versions: the most a key keeps
        net.call(n, lambda c, now: c.put_shared(key, "v", None, now))
    net.run_until(net.now + 5)  # a put returns at its quorum: the other writes land
    with pytest.raises(LocalProtocolError, match="write with their context"):
        net.call(nodes[4], lambda c, now: c.put_shared(key, "fifth", None, now))


def test_a_node_that_leaves_is_not_found_and_its_old_record_cannot_bring_it_back():
    net, nodes = network(25)
    a, b = nodes[4], nodes[19]
    net.call(a, lambda c, now: c.register(now))
    old = records.from_wire(find_peer(net, b, a.id).payload)
    net.call(a, lambda c, now: c.leave(now))
    net.kill([a.addr])
    gone = find_peer(net, b, a.id)
    record = records.from_wire(gone.payload)
    assert record.deleted and record.seq > old.seq and gone.quorum
    # A replica that held the old record, replayed, refuses it now.
    holders = [n for n in nodes if n is not a and n.store.get(a.id_bytes) is not None]
    assert len(holders) >= 10
    for holder in holders:
        assert records.from_wire(holder.store.get(a.id_bytes).value).deleted
    reply = raw_put(net, holders[0], b, a.id_bytes, records.to_wire(old), Kind.PEER)
    assert reply == {"ok": False, "reason": records.OLDER_SEQ}


def shared_read(net: SimNetwork, reader: NodeCore, key: bytes) -> tuple[vclock.Versioned, ...]:
    read = net.call(reader, lambda c, now: c.read(key, Kind.SHARED, now))
    return kinds.siblings_from_wire(read.payload) if read.found else ()


def test_a_shared_delete_supersedes_what_its_context_saw_and_a_concurrent_write_survives():
    net, nodes = network(20)
    key = key_digest("room")
    x, y, deleter, reader = nodes[3], nodes[8], nodes[12], nodes[17]
    net.call(x, lambda c, now: c.put_shared(key, "from x", None, now))
    seen = vclock.to_wire(vclock.context(shared_read(net, deleter, key)))
    net.call(y, lambda c, now: c.put_shared(key, "from y", None, now))  # the delete never saw it
    net.call(deleter, lambda c, now: c.put_shared(key, None, seen, now))
    after = shared_read(net, reader, key)
    assert sorted(map(repr, (s.value for s in after))) == ["'from y'", "None"]
    assert [s.value for s in kinds.live(after)] == ["from y"]
    # A delete naming everything read leaves only tombstones: deleted.
    everything = vclock.to_wire(vclock.context(after))
    net.call(reader, lambda c, now: c.put_shared(key, None, everything, now))
    gone = shared_read(net, x, key)
    assert gone and not kinds.live(gone)
    # A write naming the tombstone's context brings the key back.
    net.call(x, lambda c, now: c.put_shared(key, "back", vclock.to_wire(vclock.context(gone)), now))
    assert [s.value for s in shared_read(net, deleter, key)] == ["back"]


def test_a_blind_shared_delete_is_refused_in_one_line():
    net, nodes = network(4)
    with pytest.raises(LocalProtocolError, match="names the context a read returned"):
        nodes[1].put_shared(key_digest("k"), None, None, net.now)


def test_a_writer_republishing_after_the_deleter_is_gone_keeps_the_delete_alive():
    # Short lifetimes: the deleter's tombstone expires on the replicas 100 s
    # after it stops republishing it; the writer republishes every 100 s.
    net, nodes = network(30, republish_interval=100.0, expire_after=100.0)
    key = key_digest("doc")
    target = int.from_bytes(key, "big")
    # The writer is not among the k closest: no delete reaches its own copy.
    writer, *_, deleter, reader = sorted(nodes, key=lambda n: n.id ^ target, reverse=True)
    net.call(writer, lambda c, now: c.put_shared(key, "draft", None, now))
    seen = vclock.to_wire(vclock.context(shared_read(net, deleter, key)))
    net.call(deleter, lambda c, now: c.put_shared(key, None, seen, now))
    net.kill([deleter.addr])  # gone for good: nobody republishes its tombstone
    net.run_until(net.now + 350)
    after = shared_read(net, reader, key)
    # The writer still republishes its draft, which the replicas' tombstone
    # supersedes: each republish renews the tombstone's lifetime with it.
    assert after and not kinds.live(after), "the deleted draft came back"
    assert kinds.live(kinds.siblings_from_wire(writer.store.get(key).value))


def exists(net: SimNetwork, asker: NodeCore, key: bytes):
    return net.call(asker, lambda c, now: c.exists(key, now))


def test_exists_answers_for_every_kind_without_carrying_a_plain_or_shared_value():
    net, nodes = network(25)
    asker, writer = nodes[20], nodes[3]
    plain, room = key_digest("big"), key_digest("room")
    big = "x" * 900
    net.call(writer, lambda c, now: c.put(plain, big, now))
    net.call(writer, lambda c, now: c.put_shared(room, big, None, now))
    carried = []
    net.observer = lambda now, src, dest, data, dropped: carried.append(big.encode() in data)
    assert exists(net, asker, plain).exists and exists(net, asker, room).exists
    assert len(carried) > 20 and not any(carried)  # no datagram held the value
    missing = exists(net, asker, key_digest("absent"))
    assert (missing.exists, missing.kind, missing.holding) == (False, None, 0)
    # Deleted: a shared tombstone, a signed tombstone, a node that left.
    seen = vclock.to_wire(vclock.context(shared_read(net, asker, room)))
    net.call(asker, lambda c, now: c.put_shared(room, None, seen, now))
    gone = exists(net, nodes[7], room)
    assert (gone.exists, gone.deleted, gone.kind) == (False, True, Kind.SHARED)
    net.call(writer, lambda c, now: c.put_signed("v", 1, b"s", now))
    target = signed.target(writer.identity.public_key, b"s")
    assert exists(net, asker, target).exists
    net.call(writer, lambda c, now: c.put_signed(None, 2, b"s", now))
    assert exists(net, asker, target).deleted
    net.call(writer, lambda c, now: c.register(now))
    assert exists(net, asker, writer.id_bytes).exists
    net.call(writer, lambda c, now: c.leave(now))
    left = exists(net, asker, writer.id_bytes)
    assert (left.exists, left.deleted, left.kind) == (False, True, Kind.PEER)


def test_a_quorum_read_reaches_a_replica_that_only_the_value_holders_know():
    net, nodes = network(40)
    owner = nodes[5]
    net.call(owner, lambda c, now: c.put_signed("v1", 1, b"", now))
    old = owner.store.get(signed.target(owner.identity.public_key)).value
    net.call(owner, lambda c, now: c.put_signed("v2", 2, b"", now))
    key = signed.target(owner.identity.public_key)
    # A newcomer right next to the key joins; only the replicas near the key
    # (all holding the value) have it in their tables. It holds a stale copy.
    target = int.from_bytes(key, "big")
    newcomer = net.add_node(node_id=target ^ 1)
    net.call(newcomer, lambda c, now: c.bootstrap([nodes[0].addr], now))
    net.run_until(net.now + 5)
    record = newcomer.store.get(key)
    assert record is not None  # handed over on joining
    newcomer.store.put(dataclasses.replace(record, value=old, size=-1))
    far = max(nodes, key=lambda n: n.id ^ target)
    read = net.call(far, lambda c, now: c.read(key, Kind.SIGNED, now))
    assert signed.from_wire(read.payload).seq == 2 and read.repaired >= 1
    net.run_until(net.now + 5)
    assert signed.from_wire(newcomer.store.get(key).value).seq == 2


def test_a_stale_replicas_own_read_repairs_its_own_copy():
    net, nodes = network(10)
    owner, replica = nodes[2], nodes[6]
    net.call(owner, lambda c, now: c.put_signed("v1", 1, b"", now))
    key = signed.target(owner.identity.public_key)
    old = replica.store.get(key)
    net.call(owner, lambda c, now: c.put_signed(None, 2, b"", now))
    replica.store.put(old)  # it missed the delete
    read = net.call(replica, lambda c, now: c.read(key, Kind.SIGNED, now))
    assert signed.from_wire(read.payload).deleted and read.repaired == 1
    assert signed.from_wire(replica.store.get(key).value).deleted


def test_a_deregistered_node_stays_deregistered_until_it_registers_again():
    net, nodes = network(15)
    a, b = nodes[3], nodes[11]
    with pytest.raises(LocalProtocolError, match="not registered"):
        a.deregister(net.now)  # nothing to withdraw yet: a refusal that changes nothing
    assert a.listed
    net.call(a, lambda c, now: c.register(now))
    net.call(a, lambda c, now: c.deregister(now))
    assert not a.listed
    lifetime = a.config.register_lifetime
    net.run_until(net.now + lifetime * 0.75)  # past when it would re-sign its record
    assert records.from_wire(find_peer(net, b, a.id).payload).deleted
    net.run_until(net.now + lifetime * 0.5)  # the tombstone expired, as the record would have
    assert not find_peer(net, b, a.id).found
    with pytest.raises(LocalProtocolError, match="not registered"):
        a.deregister(net.now)
    net.call(a, lambda c, now: c.register(now))
    assert records.from_wire(find_peer(net, b, a.id).payload).addresses == (a.addr,)


def test_a_newcomer_next_to_a_nodes_id_is_handed_its_peer_record_by_that_node():
    # The key of a peer record is its node's own id: the node is its nearest
    # holder, and its own key lies in the range its hand-off scans.
    net, nodes = network(40)
    a = nodes[7]
    net.call(a, lambda c, now: c.register(now))
    newcomer = net.add_node(node_id=a.id ^ 3)
    net.call(newcomer, lambda c, now: c.bootstrap([nodes[0].addr], now))
    net.run_until(net.now + 10)
    held = newcomer.store.get(a.id_bytes)
    assert held is not None and held.kind == Kind.PEER
    assert a.stats["keys_handed_on_join"] == 1


def test_a_node_restarted_on_a_clock_put_right_registers_above_what_it_signed_while_ahead():
    net, nodes = network(20)
    a, b = nodes[3], nodes[12]
    ahead = 3600.0  # its clock ran an hour fast when it signed this record
    assert net.call(a, lambda c, now: c.register(now + ahead)).quorum
    signed_ahead = records.from_wire(find_peer(net, b, a.id).payload).seq
    # Its clock is put right and the daemon restarts on its store.
    back = net.restart(a.addr)
    back.identity, back.addresses = a.identity, a.addresses
    net.call(back, lambda c, now: c.bootstrap([nodes[0].addr], now))
    put = net.call(back, lambda c, now: c.register(now))
    assert put.quorum, put.refused  # not refused as older than the record held
    assert records.from_wire(find_peer(net, b, a.id).payload).seq > signed_ahead
