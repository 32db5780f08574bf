"""What one subnet may keep on a node, and room for honest writes when it is
full (kadnode.core.quotas, kadnode.core.store)."""

from __future__ import annotations

import random

import pytest

from kadnode.config import Config
from kadnode.core import codec
from kadnode.core.codec import NATIVE_MAGIC
from kadnode.core.ids import key_digest
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore, Record, Usage

SENDER = (0xCD << 152).to_bytes(20, "big")


def node(**config) -> NodeCore:
    core = NodeCore(1 << 159, MemoryStore(), config=Config(**config), rng=random.Random(5))
    return core


def store_from(core: NodeCore, host: str, name: str, value: object, now: float = 1.0) -> bool:
    """A native STORE from ``host`` with the token it was given; whether the node took it."""
    token = core.tokens.token_for(host)
    args = [SENDER, key_digest(name), value, 100.0, token]
    data = codec.encode_request(NATIVE_MAGIC + bytes(16), "store", args)
    core.receive_datagram(data, (host, 4000), now)
    [reply] = [codec.decode(d, 10_000) for d, _ in core.datagrams_to_send() if d[0] == 1]
    return reply.body


def test_one_subnet_keeps_no_more_than_its_share_of_values():
    core = node(max_values_per_subnet=5)
    taken = [store_from(core, f"203.0.113.{i % 3 + 1}", f"k{i}", "v") for i in range(8)]
    assert taken == [True] * 5 + [False] * 3  # three IPs, one /24, one share
    assert core.stats["stores_refused_quota"] == 3
    assert store_from(core, "198.51.100.1", "another", "v")


def test_one_subnet_keeps_no_more_than_its_share_of_bytes():
    core = node(max_bytes_per_subnet=2500)
    taken = [store_from(core, "203.0.113.1", f"k{i}", "x" * 900) for i in range(4)]
    assert taken == [True, True, False, False]


def test_a_full_store_gives_up_the_heaviest_sources_oldest_value_for_a_newcomer():
    core = node(max_stored_values=10)
    for i in range(8):
        assert store_from(core, "203.0.113.1", f"heavy{i}", "v", now=1.0 + i)
    for i in range(2):
        assert store_from(core, "198.51.100.1", f"light{i}", "v", now=20.0 + i)
    assert store_from(core, "192.0.2.1", "honest", "v", now=30.0)
    assert len(core.store) == 10 and core.stats["evicted"] == 1
    assert core.store.get(key_digest("heavy0")) is None  # the heaviest source's oldest
    assert core.store.get(key_digest("heavy1")) is not None
    assert core.store.get(key_digest("honest")) is not None


def test_a_full_store_evicts_by_bytes_too_and_never_its_own_publications():
    core = node(max_stored_bytes=3000)
    core.put(key_digest("mine"), "m" * 900, 0.0)
    core.datagrams_to_send()
    for i in range(2):
        assert store_from(core, "203.0.113.1", f"theirs{i}", "t" * 900)
    assert store_from(core, "198.51.100.1", "newcomer", "n" * 900)
    assert core.store.get(key_digest("mine")).origin  # never evicted
    assert core.store.get(key_digest("theirs0")) is None
    assert core.store.usage.bytes <= 3000


def test_exempt_ranges_skip_the_subnet_shares_not_the_total():
    core = node(max_values_per_subnet=2, max_stored_values=4, exempt_networks=("10.0.0.0/8",))
    taken = [store_from(core, "10.0.0.1", f"k{i}", "v") for i in range(6)]
    assert taken == [True] * 6 and len(core.store) == 4  # the oldest made room


@pytest.mark.parametrize("store", [MemoryStore])
def test_usage_follows_puts_replacements_and_deletes(store):
    s = store()
    s.put(Record(b"a" * 20, "xx", 10.0, False, 5.0, source="s1"))
    s.put(Record(b"b" * 20, "yyyy", 10.0, False, 5.0, source="s1"))
    s.put(Record(b"a" * 20, "z", 10.0, False, 5.0, source="s2"))  # moves to s2
    assert s.usage.of("s1") == (1, len(codec.pack("yyyy")))
    assert s.usage.of("s2") == (1, len(codec.pack("z")))
    assert s.usage.heaviest() == "s1" and s.oldest_from("s1") == b"b" * 20
    s.delete(b"b" * 20)
    assert s.usage.of("s1") == (0, 0) and s.usage.heaviest() == "s2"
    assert s.keys_between(b"a" * 20, b"b" * 20, 10) == [b"a" * 20]


def test_usage_keeps_no_more_than_a_few_entries_per_source_however_many_writes():
    """The heaviest-source heap gets an entry on every write and drops stale
    ones only from its top: without a rebuild, one source writing all day grew
    it by one entry per write, forever."""
    usage = Usage()
    for i in range(10_000):
        usage.add(f"10.0.{i % 3}.0/24", 100)
    assert usage.heaviest() in {f"10.0.{i}.0/24" for i in range(3)}
    assert len(usage._heap) <= 2 * 3 + 64
    for i in range(3):
        usage.add(f"10.0.{i}.0/24", -100 * 3333, count=-3333)
    assert usage.heaviest() == "10.0.0.0/24" and usage.of("10.0.0.0/24") == (1, 100)
