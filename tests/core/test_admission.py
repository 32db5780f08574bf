"""What one subnet may hold of a node: request rates, routing-table places,
lookup candidates (kadnode.core.limits, kadnode.core.routing, kadnode.core.lookup)."""

from __future__ import annotations

import random

from kadnode.config import Config
from kadnode.core import codec
from kadnode.core.addresses import Exempt, subnet_of
from kadnode.core.lookup import Lookup
from kadnode.core.messages import Contact
from kadnode.core.node import NodeCore
from kadnode.core.routing import RoutingTable
from kadnode.core.store import MemoryStore

OWNER = 0


def table(exempt: Exempt | None = None) -> RoutingTable:
    return RoutingTable(OWNER, 20, 10, 3, 900.0, 0.0, 2, 10, exempt)


def in_bucket(index: int, n: int) -> int:
    """The ``n``-th id in bucket ``index`` of OWNER."""
    return (1 << index) | n


def test_subnets_are_counted_per_24_and_per_48():
    assert subnet_of("203.0.113.77") == "203.0.113.0/24"
    assert subnet_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert subnet_of("::ffff:198.51.100.9") == "198.51.100.0/24"


def test_one_subnet_gets_two_places_in_a_bucket_and_ten_in_the_table():
    t = table()
    for n in range(5):  # one bucket, five addresses of one /24
        t.seen(Contact(in_bucket(150, n), f"203.0.113.{n + 1}", 4000), 0.0)
    assert len(t) == 2 and t.refused == 3
    for index in range(100, 120):  # twenty more buckets, two of that /24 each
        for n in range(2):
            t.seen(Contact(in_bucket(index, n), f"203.0.113.{index}", 4000 + n), 0.0)
    assert len(t) == 10  # the table's share for one /24
    t.seen(Contact(in_bucket(121, 0), "198.51.100.1", 4000), 0.0)
    assert len(t) == 11  # another subnet is welcome


def test_one_address_holds_one_id():
    t = table()
    t.seen(Contact(in_bucket(150, 1), "203.0.113.1", 4000), 0.0)
    t.seen(Contact(in_bucket(140, 1), "203.0.113.1", 4000), 0.0)
    assert len(t) == 1 and t.refused == 1


def test_replacement_caches_count_toward_the_limits():
    t = RoutingTable(OWNER, 1, 10, 3, 900.0, 0.0, 2, 10)
    t.seen(Contact(in_bucket(150, 0), "203.0.113.1", 4000), 0.0)  # the bucket (k = 1)
    t.seen(Contact(in_bucket(150, 1), "203.0.113.2", 4000), 0.0)  # its cache
    t.seen(Contact(in_bucket(150, 2), "203.0.113.3", 4000), 0.0)  # a third: refused
    assert t.refused == 1 and not t.knows(in_bucket(150, 2))


def test_a_dropped_contact_frees_its_subnets_place():
    t = table()
    for n in range(2):
        t.seen(Contact(in_bucket(150, n), f"203.0.113.{n + 1}", 4000), 0.0)
    t.remove(in_bucket(150, 0))
    t.seen(Contact(in_bucket(150, 5), "203.0.113.9", 4000), 0.0)
    assert t.knows(in_bucket(150, 5))


def test_exempt_ranges_lift_the_subnet_limits_not_one_id_per_address():
    t = table(Exempt(["127.0.0.0/8"]))
    for n in range(15):
        t.seen(Contact(in_bucket(150, n), "127.0.0.1", 4000 + n), 0.0)
    assert len(t) == 15
    t.seen(Contact(in_bucket(140, 1), "127.0.0.1", 4000), 0.0)
    assert len(t) == 15 and t.refused == 1


def test_a_lookup_takes_at_most_two_candidates_of_one_subnet():
    sybils = [Contact(n, f"203.0.113.{n}", 4000) for n in range(1, 30)]  # next to the target
    honest = [Contact(1000 + n, f"10.{n}.0.1", 4000) for n in range(5)]
    lookup = Lookup(0, sybils + honest, k=5, alpha=3, self_id=1 << 150, per_subnet=2)
    asked = []
    while not lookup.finished:
        for contact in lookup.next_requests():
            asked.append(contact)
            lookup.answered_nodes(contact, sybils)
    assert sum(1 for c in asked if c.host.startswith("203.")) == 2
    assert {c.node_id for c in lookup.outcome().closest} >= {1000, 1001, 1002}


def rate_limited_node(**config) -> NodeCore:
    return NodeCore(1 << 159, MemoryStore(), config=Config(**config), rng=random.Random(1))


def ping_from(node: NodeCore, host: str, now: float) -> bool:
    """Whether a ping from ``host`` is answered at ``now``."""
    ping = codec.encode_request(bytes(20), "ping", [bytes(19) + b"\x01"])
    node.receive_datagram(ping, (host, 4000), now)
    return any(d[0] == codec.RESPONSE for d, _ in node.datagrams_to_send())


def test_one_ip_is_answered_at_its_rate_and_the_rest_is_dropped_and_counted():
    node = rate_limited_node(requests_per_ip=10.0, requests_per_subnet=100.0)
    answered = sum(ping_from(node, "203.0.113.5", 1.0) for _ in range(50))
    assert answered == 10 and node.stats["requests_limited"] == 40
    assert ping_from(node, "198.51.100.5", 1.0)  # another IP is not held back
    assert ping_from(node, "203.0.113.5", 1.1)  # a tenth of a second buys one more


def test_a_subnet_shares_one_budget_and_the_total_caps_everyone():
    node = rate_limited_node(requests_per_ip=10.0, requests_per_subnet=15.0, requests_total=40.0)
    one_subnet = [ping_from(node, f"203.0.113.{i}", 1.0) for i in range(1, 6) for _ in range(10)]
    assert sum(one_subnet) == 15
    others = [ping_from(node, f"10.{i}.0.1", 1.0) for i in range(40)]
    assert sum(others) == 40 - 15


def test_exempt_ranges_skip_the_per_ip_and_subnet_limits_not_the_total():
    node = rate_limited_node(
        requests_per_ip=10.0, requests_total=30.0, exempt_networks=("127.0.0.0/8",)
    )
    assert sum(ping_from(node, "127.0.0.1", 1.0) for _ in range(50)) == 30
