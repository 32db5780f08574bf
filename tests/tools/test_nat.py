"""kadnode across a real NAT: Linux network namespaces, conntrack's MASQUERADE.

Five public daemons, each on a /24 of its own, and two private ones behind one
NAT router with no port forwarding (tests/natnet.py draws the topology). It shows:

- the NAT is real: a private host's datagrams leave from the NAT's WAN address,
  and nothing a stranger sends reaches a private host, neither at its LAN
  address nor at the mapping the NAT made for someone else;
- what peers see (kadnode.core.reach): every node learns the address peers on
  3 or more /24s see it at; a private node's is the NAT's mapping, so it knows
  it is behind NAT and runs as a client; the public ones are servers;
- no public table, replacement cache or ring holds a private node's address,
  LAN or mapped, and no entry there fails to answer a stranger;
- everything works from behind the NAT, every reply returning through the
  binding the private node's request made: put and get of a plain value,
  register (its record names the mapping first, and the relays it keeps a
  binding with) and find-peer from a public node, lookup, and a public node's
  get of a value put from behind the NAT;
- ``kadnode doctor`` on a private node says so, with what to do.

Needs root, ``ip`` and ``iptables``; skipped without them, except that with
CI_REQUIRE_NETNS set (.ci/run installs iptables and sets it) it fails instead.
One topology serves the whole module; it is torn down, processes ended by pid
and namespaces deleted, pass or fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemons import wait_for
from natnet import NAT_WAN, NatNet, missing

# The first observe round is 5 s after a start; a few more for its replies.
LEARN_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatNet]:
    reason = missing()
    if reason:
        if os.environ.get("CI_REQUIRE_NETNS"):
            pytest.fail(f"{reason}, but CI_REQUIRE_NETNS is set")
        pytest.skip(reason)
    topology = NatNet(Path(tmp_path_factory.mktemp("nat")), f"knat{os.getpid() % 100000}-")
    started = time.monotonic()
    try:
        topology.build()
        topology.start()
        print(f"\nNAT topology up, daemons joined, in {time.monotonic() - started:.1f} s")
        yield topology
    finally:
        left = topology.close()
        assert not left, f"namespaces that would not go: {left}"


def test_the_nat_maps_private_hosts_to_its_wan_address_and_lets_no_stranger_in(net):
    priv1, (pub1, pub2, *_) = net.private[0], net.public
    seen = net.udp_through_nat(priv1, pub1, stranger=pub2)
    assert seen["mapped"] is not None, "the echo's reply did not come back through the NAT"
    assert seen["mapped"].rsplit(":", 1)[0] == NAT_WAN
    # pub2 sent to priv1's LAN address (no route leads there) and to the mapping
    # pub1 saw (conntrack lets only pub1's replies through it): neither arrived.
    assert seen["arrived"] == []


def test_put_and_get_from_behind_the_nat_and_from_a_public_node(net):
    priv1, priv2 = net.private
    put = net.cli(priv1, "put", "nat/plain", "behind the nat")
    assert put["stored"] >= put["needed"] > 0, put
    replicas = ", ".join(map(net.label, put["replicas"]))
    print(f"put from {priv1.name}: stored {put['stored']} (this node's copy included),"
          f" {put['asked']} asked, {put['needed']} needed; replicas {replicas}")  # fmt: skip
    assert net.cli(priv1, "get", "nat/plain")["value"] == "behind the nat"
    assert net.cli(priv2, "get", "nat/plain")["value"] == "behind the nat"
    for host in net.public[2:]:  # not the seeds only
        got = net.cli(host, "get", "nat/plain")
        assert got["found"] and got["value"] == "behind the nat", (host.name, got)
    # And the other way: a value put publicly, read from behind the NAT.
    net.cli(net.public[4], "put", "nat/public", "in the open")
    assert net.cli(priv2, "get", "nat/public")["value"] == "in the open"


def test_every_node_learns_where_peers_see_it_and_private_ones_go_client(net):
    def agreed(host) -> bool:
        return net.info(host)["reach"]["observed"] is not None

    for host in net.hosts:
        wait_for(lambda h=host: agreed(h), LEARN_TIMEOUT, f"{host.name} to learn its address")
    for host in net.public:
        reach = net.info(host)["reach"]
        seen = (reach["observed"]["host"], reach["nat"], reach["mode"])
        assert seen == (host.ip, False, "server")
    for host in net.private:
        reach = net.info(host)["reach"]
        print(f"{host.name}: peers on {reach['observers']} subnets see it at {reach['observed']};"
              f" {reach['reachability']}, {reach['mode']} mode")  # fmt: skip
        assert reach["observed"]["host"] == NAT_WAN and reach["observers"] >= 3
        assert reach["nat"] and reach["mode"] == "client"
        assert reach["reachability"] != "public"  # nothing gets through this NAT unasked


def test_register_behind_the_nat_names_the_mapping_and_relays_and_find_peer_returns_them(net):
    priv1 = net.private[0]
    mapped = net.info(priv1)["reach"]["observed"]
    registered = net.cli(priv1, "register")
    assert registered["stored"] >= registered["needed"] > 0, registered
    found = net.cli(net.public[3], "find-peer", priv1.id)
    assert found["found"], found
    record = found["record"]
    assert record["addresses"][0] == mapped
    # Its relays: public nodes it keeps a binding with (pinged every 25 s).
    relays = {net.name_of(r["id"]) for r in record["relays"]}
    assert len(relays) == 3 and relays <= {h.name for h in net.public}, record
    print(f"find-peer {priv1.name} from {net.public[3].name}: {record['addresses']},"
          f" relays {sorted(relays)}")  # fmt: skip
    shown = net.cli_run(net.public[3], "find-peer", priv1.id, json=False).stdout
    assert "behind NAT; its relays" in shown, shown


def test_doctor_behind_the_nat_says_client_and_what_to_do(net):
    done = net.cli_run(net.private[0], "doctor", json=False)
    print(f"kadnode doctor on {net.private[0].name}:\n{done.stdout}")
    assert done.returncode == 0, done.stderr
    assert "WARN  reachability: behind NAT" in done.stdout and "client" in done.stdout
    assert "forward UDP port 8467" in done.stdout


def test_lookup_from_behind_the_nat(net):
    priv2, target = net.private[1], net.public[4]
    found = net.cli(priv2, "lookup", target.id)
    assert found["found"], found
    assert (found["peer"]["host"], found["peer"]["port"]) == (target.ip, 8467)
    # A private node looked up from a public one: where the answer says it is.
    priv1 = net.private[0]
    found = net.cli(target, "lookup", priv1.id)
    print(f"lookup {priv1.name} from {target.name}: found={found['found']} peer={found['peer']}")


def test_what_private_nodes_hold_for_each_other(net):
    """Printed, not asserted: the private nodes share a LAN but learn each other
    from public nodes, at the NAT's WAN address (hairpinning: Linux's MASQUERADE
    alone does not loop a datagram for its own WAN address back into the LAN)."""
    for host in net.private:
        others = [c for c in net.contacts(host) if net.name_of(c["id"]) in {"priv1", "priv2"}]
        for c in others:
            ping = net.cli_run(host, "ping", f"{c['host']}:{c['port']}")
            said = ping.stdout.strip() or ping.stderr.strip()
            print(f"{host.name} holds {net.label(c)}; kadnode ping from {host.name}: {said}")
        if not others:
            print(f"{host.name} holds no private node")


def test_no_public_table_holds_a_private_node_and_every_entry_answers_a_stranger(net):
    """Where the public tables say private nodes are (nowhere: they are clients),
    and how many public-table entries a stranger gets no answer from (none)."""
    held = net.private_entries()
    for table, entries in held.items():
        shown = ", ".join(f"{e['node']} at {e['host']}:{e['port']}" for e in entries)
        print(f"{table} holds {shown or 'no private node'}")
    unreachable = net.unreachable_public_entries()
    print(f"unreachable public table entries (pinged from a fresh public namespace): "
          f"{len(unreachable)}")  # fmt: skip
    for entry in unreachable:
        print(f"  in {entry['table']}: {entry['node']} at {entry['host']}:{entry['port']}")
    assert held == {h.name: [] for h in net.public}
    assert unreachable == []
