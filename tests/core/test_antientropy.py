"""Anti-entropy repairs a wiped replica and costs a digest when nothing differs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kadnode.config import Config
from kadnode.core import antientropy, signed
from kadnode.core.identity import Identity
from kadnode.core.ids import key_digest
from kadnode.core.messages import Kind
from kadnode.core.store import MemoryStore, Record
from kadnode.core.sync import shared_with
from kadnode.sim.network import SimNetwork

keys = st.binary(min_size=20, max_size=20)


@given(st.sets(keys, max_size=50), st.sets(keys, max_size=50))
def test_digests_differ_exactly_in_the_buckets_where_the_key_sets_differ(a, b):
    def hashes(ks):
        return antientropy.digest((k, antientropy.fingerprint(k, "v")) for k in ks)

    differ = antientropy.differing(hashes(a), hashes(b))
    # Up to 64-bit collisions, exactly the buckets whose key sets differ...
    assert {i % antientropy.BUCKETS for i in differ} == {antientropy.bucket_of(k) for k in a ^ b}
    # ...flagged (+64) where the side answering holds nothing there.
    for i in differ:
        held = any(antientropy.bucket_of(k) == i % antientropy.BUCKETS for k in a)
        assert (i >= antientropy.BUCKETS) == (not held)


def network(n: int, **config):
    net = SimNetwork(seed=9, config=Config(**config))
    nodes = [net.add_node() for _ in range(n)]
    for node in nodes[1:]:
        net.call(node, lambda c, now: c.bootstrap([nodes[0].addr], now))
    return net, nodes


def test_a_wiped_replica_is_refilled_by_a_neighbours_sync_with_less_than_a_republish():
    net, nodes = network(30, anti_entropy_interval=1e9)  # only the syncs the test asks for
    for i in range(300):
        key = key_digest(f"ae-{i}")
        value = f"value {i}"
        net.call(nodes[i % 30], lambda c, now, key=key, value=value: c.put(key, value, now))
    wiped = nodes[11]
    held = {k for k in wiped.store.keys()}
    assert len(held) > 100
    wiped.store = MemoryStore()
    neighbour = max(
        nodes, key=lambda n: len(shared_with(n, wiped.id, net.now)) if n is not wiped else -1
    )
    peer = next(c for c in neighbour.table.contacts() if c.node_id == wiped.id)
    should = {k for k, _, _ in shared_with(neighbour, wiped.id, net.now)}

    def exchange() -> tuple[object, int]:
        """One sync from the neighbour and all it sets off; its bytes both ways."""
        before = neighbour.stats["ae_bytes"] + wiped.stats["ae_bytes"]
        result = net.call(neighbour, lambda c, now: c.sync(peer, now))
        net.run_until(net.now + 5)
        return result, neighbour.stats["ae_bytes"] + wiped.stats["ae_bytes"] - before

    # The wiped node computes what it shares with the neighbour in the
    # background (kadnode.core.background): the neighbour finds it busy, and
    # the wiped node syncs back once it is ready; the neighbour's push repairs it.
    first, repair_bytes = exchange()
    assert first.keys_sent == 0 and neighbour.stats["ae_busy"] == 1
    assert {k for k in wiped.store.keys()} >= should
    republish = first.republish_bytes
    # Right after a wipe every value must travel: about what a republish costs.
    assert 0.5 * republish < repair_bytes < 1.5 * republish
    _, steady_bytes = exchange()
    # Views differ a little at the edge of the k closest, but no value travels.
    assert steady_bytes < 0.1 * republish
    assert {k for k in wiped.store.keys()} >= should
    print(f"repair: {repair_bytes} B (republish {republish} B); steady state: {steady_bytes} B")


def test_periodic_anti_entropy_alone_restores_everything_a_wiped_node_should_hold():
    net, nodes = network(25, anti_entropy_interval=60.0)
    for i in range(200):
        key = key_digest(f"periodic-{i}")
        net.call(nodes[i % 25], lambda c, now, key=key: c.put(key, "v", now))
    wiped = nodes[5]
    everyone = [n.id for n in nodes]
    before = {  # what it holds as one of the k closest (not its own publications)
        key
        for key in wiped.store.keys()
        if wiped.id in sorted(everyone, key=lambda i: i ^ int.from_bytes(key, "big"))[:20]
    }
    assert len(before) > 100
    wiped.store = MemoryStore()
    net.run_until(net.now + 30 * 60)  # half an hour: each neighbour syncs ~30 times
    assert set(wiped.store.keys()) >= before
    assert sum(n.stats["ae_syncs"] for n in nodes) > 0


def test_a_replica_holding_an_older_version_is_sent_the_newer_one():
    # Anti-entropy once sent only keys a replica lacked (kn_keys compared no
    # fingerprints): a replica that missed a delete kept the old version.
    net, nodes = network(3, anti_entropy_interval=1e9)  # only the syncs the test asks for
    owner = Identity.from_seed(bytes(32))
    key = signed.target(owner.public_key)
    old = signed.to_wire(signed.sign_value(owner, "v1", 1))
    tombstone = signed.to_wire(signed.sign_value(owner, None, 2))
    other_key = signed.target(owner.public_key, b"other")
    other = signed.to_wire(signed.sign_value(owner, "held by the others only", 1, b"other"))
    stale, fresh = nodes[0], nodes[1]
    later = net.now + 3600  # no replication or expiry during the test

    def hold(node, key: bytes, value: list) -> None:
        node.store.put(Record(key, value, later, False, later, Kind.SIGNED))

    for node in nodes:
        hold(node, key, old if node is stale else tombstone)
        if node is not stale:
            hold(node, other_key, other)
    # Syncs both ways, twice (the first to a peer finds its digest being computed).
    for a, b in ((fresh, stale), (stale, fresh)) * 2:
        peer = next(c for c in a.table.contacts() if c.node_id == b.id)
        net.call(a, lambda c, now, peer=peer: c.sync(peer, now))
        net.run_until(net.now + 5)
    assert stale.store.get(other_key).value == other  # the key it lacked came
    assert fresh.store.get(key).value == tombstone  # the older version never replaces it
    assert stale.store.get(key).value == tombstone
