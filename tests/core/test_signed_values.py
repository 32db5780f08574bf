"""Signed mutable values (BEP 44's model): the version rule, and whole networks on
the virtual clock where an owner writes, updates and others try to forge or
replay its versions.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from simwire import raw_put

from kadnode.config import Config
from kadnode.core import codec, kinds, signed
from kadnode.core.identity import Identity
from kadnode.core.messages import Kind
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore
from kadnode.errors import DecodeError, LocalProtocolError
from kadnode.sim.network import SimNetwork

OWNER = Identity.from_seed(bytes(range(32)))
OTHER = Identity.from_seed(bytes(range(1, 33)))


def version(seq: int, value: str = "v", salt: bytes = b"", who: Identity = OWNER):
    return signed.sign_value(who, value, seq, salt)


# ---- the version rule -------------------------------------------------------------------


def test_a_version_is_stored_under_the_hash_of_its_key_and_salt_and_reads_back_from_the_wire():
    v = version(7, "hello", b"profile")
    assert v.key == signed.target(OWNER.public_key, b"profile") != signed.target(OWNER.public_key)
    assert signed.from_wire(signed.to_wire(v)) == v
    signed.verify_value(v, v.key)


@pytest.mark.parametrize(
    ("forged", "reason"),
    [
        # the owner's key and signature, another value
        (lambda v: signed.SignedValue(v.public_key, v.salt, "evil", v.seq, v.signature), "bad"),
        # the owner's key and signature, a higher seq
        (
            lambda v: signed.SignedValue(v.public_key, v.salt, v.value, v.seq + 1, v.signature),
            "bad",
        ),
        # the owner's key, signed by another key
        (
            lambda v: signed.SignedValue(
                v.public_key,
                v.salt,
                "evil",
                v.seq + 1,
                OTHER.sign(signed.signed_bytes(b"", "evil", v.seq + 1)),
            ),
            "bad",
        ),
        # a genuine version of another owner, under the owner's target
        (lambda v: version(v.seq + 1, "evil", who=OTHER), "key"),
        # the owner's genuine version under another salt
        (lambda v: version(v.seq + 1, "evil", b"other"), "key"),
    ],
)
def test_forged_versions_are_rejected_under_the_owners_key(forged, reason):
    genuine = version(3)
    with pytest.raises(signed.Rejected) as refused:
        signed.accept(genuine, forged(genuine), genuine.key)
    expected = signed.BAD_SIGNATURE if reason == "bad" else signed.OTHER_KEY
    assert refused.value.reason == expected


@given(st.lists(st.integers(0, 50), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_the_highest_sequence_wins_whatever_order_versions_arrive_in(seqs, rng):
    versions = [version(seq, f"value {i}") for i, seq in enumerate(seqs)]
    rng.shuffle(versions)
    held = None
    for incoming in versions:
        try:
            held = signed.accept(held, incoming, incoming.key)
        except signed.Rejected as exc:
            assert exc.reason == signed.OLDER_SEQ and incoming.seq < held.seq  # a replay
    assert held is not None and held.seq == max(seqs)
    # At an equal sequence the first one held stays.
    assert held == next(v for v in versions if v.seq == max(seqs))


@given(st.lists(st.integers(0, 50), min_size=1, max_size=12))
def test_a_read_returns_the_newest_valid_version_and_counts_only_forgeries_as_rejected(seqs):
    genuine = [signed.to_wire(version(seq, f"v{seq}")) for seq in seqs]
    forged = signed.to_wire(version(max(seqs) + 1, "evil", who=OTHER))
    payload, rejected = kinds.newest(Kind.SIGNED, [*genuine, forged], version(0).key, 0.0)
    assert signed.from_wire(payload).seq == max(seqs) and rejected == 1


@pytest.mark.parametrize(
    "wire",
    [
        [],
        [OWNER.public_key, b"", "v", 1],
        [OWNER.public_key[:31], b"", "v", 1, bytes(64)],
        [OWNER.public_key, b"x" * 65, "v", 1, bytes(64)],
        [OWNER.public_key, b"", "v", -1, bytes(64)],
        [OWNER.public_key, b"", "v", 2**63, bytes(64)],
        [OWNER.public_key, b"", "v", True, bytes(64)],
        [OWNER.public_key, b"", ["a list"], 1, bytes(64)],
        [OWNER.public_key, "salt", "v", 1, bytes(64)],
    ],
)
def test_malformed_versions_are_decode_errors(wire):
    with pytest.raises(DecodeError):
        signed.from_wire(wire)


def test_a_value_over_the_limit_or_a_long_salt_is_refused_before_signing():
    with pytest.raises(LocalProtocolError):
        signed.sign_value(OWNER, "x" * 2000, 1)
    with pytest.raises(LocalProtocolError):
        signed.sign_value(OWNER, "x", 1, b"s" * 65)


# ---- whole networks ------------------------------------------------------------------------


def network(n: int, seed: int = 5, **config) -> tuple[SimNetwork, list[NodeCore]]:
    net = SimNetwork(seed=seed, config=Config(**config))
    rng = random.Random(seed)
    nodes = []
    for _ in range(n):
        me = Identity.from_seed(rng.randbytes(32))
        core = net.add_node(node_id=me.node_id)
        core.identity = me
        nodes.append(core)
    for node in nodes[1:]:
        net.call(node, lambda c, now: c.bootstrap([nodes[0].addr], now))
    return net, nodes


def read(net: SimNetwork, reader: NodeCore, key: bytes):
    return net.call(reader, lambda c, now: c.read(key, Kind.SIGNED, now))


def test_an_owner_writes_and_updates_and_nobody_else_can_forge_or_replay_a_version():
    net, nodes = network(25)
    owner, attacker, reader = nodes[4], nodes[11], nodes[19]
    key = signed.target(owner.identity.public_key, b"profile")
    put = net.call(owner, lambda c, now: c.put_signed("v1", 1, b"profile", now))
    assert put.quorum
    found = signed.from_wire(read(net, reader, key).payload)
    assert (found.value, found.seq) == ("v1", 1)
    net.call(owner, lambda c, now: c.put_signed("v2", 2, b"profile", now))
    newest = read(net, reader, key)
    assert signed.from_wire(newest.payload).value == "v2" and newest.rejected == 0
    replica = next(n for n in nodes if n is not owner and n.store.get(key) is not None)
    old = signed.to_wire(version(1, "v1", b"profile", owner.identity))
    assert raw_put(net, replica, attacker, key, old, Kind.SIGNED) == {
        "ok": False,
        "reason": signed.OLDER_SEQ,
    }
    forged = signed.to_wire(
        signed.SignedValue(owner.identity.public_key, b"profile", "evil", 3, bytes(64))
    )
    assert raw_put(net, replica, attacker, key, forged, Kind.SIGNED) == {
        "ok": False,
        "reason": signed.BAD_SIGNATURE,
    }
    # A plain STORE cannot overwrite it, nor a shared write.
    plain = codec.encode_request(bytes(20), "store", [attacker.id_bytes, key, "junk"])
    replica.receive_datagram(plain, attacker.addr, net.now)
    assert codec.decode(replica.datagrams_to_send()[0][0], 10_000).body is False
    assert signed.from_wire(read(net, reader, key).payload).value == "v2"
    # The owner itself cannot go back.
    with pytest.raises(LocalProtocolError, match="older sequence"):
        net.call(owner, lambda c, now: c.put_signed("v0", 1, b"profile", now))


def test_a_replica_that_missed_an_update_is_repaired_by_the_next_read():
    net, nodes = network(20)
    owner, reader = nodes[2], nodes[15]
    key = signed.target(owner.identity.public_key)
    net.call(owner, lambda c, now: c.put_signed("v1", 1, b"", now))
    stale = next(n for n in nodes if n is not owner and n.store.get(key) is not None)
    net.partition([[stale.addr]])
    net.call(owner, lambda c, now: c.put_signed("v2", 2, b"", now))
    net.heal()
    assert signed.from_wire(stale.store.get(key).value).seq == 1
    result = read(net, reader, key)
    assert signed.from_wire(result.payload).seq == 2 and result.repaired >= 1
    net.run_until(net.now + 5)
    assert signed.from_wire(stale.store.get(key).value).seq == 2


def held_seq(node: NodeCore, key: bytes) -> int | None:
    record = node.store.get(key)
    return None if record is None else signed.from_wire(record.value).seq


def test_anti_entropy_refills_a_wiped_replica_with_each_newest_version():
    net, nodes = network(25, anti_entropy_interval=60.0)
    owner = nodes[3]
    keys = []
    for salt in (b"a", b"b", b"c"):
        for seq in (1, 2):
            net.call(owner, lambda c, now, s=salt, q=seq: c.put_signed(f"v{q}", q, s, now))
        keys.append(signed.target(owner.identity.public_key, salt))
    wiped = max(
        (n for n in nodes if n is not owner), key=lambda n: sum(held_seq(n, k) == 2 for k in keys)
    )
    held = [k for k in keys if held_seq(wiped, k) == 2]
    assert held
    wiped.store = MemoryStore()
    net.run_until(net.now + 30 * 60)  # each neighbour syncs ~30 times
    assert [held_seq(wiped, k) for k in held] == [2] * len(held)


def test_a_newcomer_among_the_k_closest_is_handed_the_value_when_it_joins():
    net, nodes = network(20, anti_entropy_interval=1e9)  # the join hand-off alone
    owner = nodes[7]
    net.call(owner, lambda c, now: c.put_signed("handed", 4, b"", now))
    key = signed.target(owner.identity.public_key)
    newcomer = net.add_node()  # 21 nodes, k = 20: among the k closest of nearly every key
    net.call(newcomer, lambda c, now: c.bootstrap([nodes[0].addr], now))
    net.run_until(net.now + 60)
    assert sum(n.stats["keys_handed_on_join"] for n in nodes) == 1
    assert held_seq(newcomer, key) == 4
    assert signed.from_wire(newcomer.store.get(key).value).value == "handed"


# ---- deletes: signed tombstones -----------------------------------------------------------


def test_a_delete_is_a_signed_version_that_beats_every_older_one_and_not_a_newer_one():
    value, tombstone = version(3), version(4, None)
    assert tombstone.deleted and signed.from_wire(signed.to_wire(tombstone)) == tombstone
    assert signed.accept(value, tombstone, value.key) is tombstone
    with pytest.raises(signed.Rejected, match="older sequence"):
        signed.accept(tombstone, value, value.key)  # the deleted value cannot come back
    assert signed.accept(tombstone, version(5, "again"), value.key).value == "again"
    forged = signed.SignedValue(value.public_key, b"", None, 9, value.signature)
    with pytest.raises(signed.Rejected, match="bad signature"):
        signed.accept(value, forged, value.key)  # nobody else can delete it


def test_a_deleted_value_stays_deleted_through_a_partition_and_a_wipe():
    net, nodes = network(20, anti_entropy_interval=60.0)
    owner, reader = nodes[2], nodes[15]
    key = signed.target(owner.identity.public_key)
    net.call(owner, lambda c, now: c.put_signed("v1", 1, b"", now))
    stale = next(n for n in nodes if n is not owner and n.store.get(key) is not None)
    net.partition([[stale.addr]])
    net.call(owner, lambda c, now: c.put_signed(None, 2, b"", now))
    net.heal()
    assert held_seq(stale, key) == 1  # it missed the delete
    result = read(net, reader, key)
    assert signed.from_wire(result.payload).deleted and result.repaired >= 1
    net.run_until(net.now + 5)
    assert held_seq(stale, key) == 2  # read repair carried the tombstone
    wiped = next(n for n in nodes if n not in (owner, stale) and held_seq(n, key) == 2)
    wiped.store = MemoryStore()
    net.run_until(net.now + 30 * 60)  # anti-entropy refills it with the tombstone
    assert held_seq(wiped, key) == 2 and signed.from_wire(wiped.store.get(key).value).deleted


def test_an_unsalted_value_is_not_stored_under_its_owners_node_id():
    """The node id is SHA-1 of the public key; the peer record lives there."""
    assert int.from_bytes(signed.target(OWNER.public_key), "big") != OWNER.node_id
