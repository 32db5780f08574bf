"""Private networks (--network-id) on 127.0.0.1: two 5-node networks whose nodes
are bootstrapped through each other's nodes by mistake never mix a table entry
or a value; a bmuller/kademlia node gets no answer from a private network and
still joins the default one.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from kademlia.network import Server as KademliaServer
from loopback import HOST

from kadnode.cli.main import main
from kadnode.config import LOCAL_TEST, NETWORK_MARK, NETWORK_TAG_BYTES
from kadnode.core import codec
from kadnode.core.ids import key_id
from kadnode.shell.library import Server

NODES = 5
TEST_BUDGET = 60.0


def test_each_named_network_has_its_own_mark_and_the_default_has_none():
    assert codec.network_tag("") == b""
    red, blue = codec.network_tag("red"), codec.network_tag("blue")
    assert red != blue and len(red) == len(blue) == NETWORK_TAG_BYTES
    assert red[0] == blue[0] == NETWORK_MARK  # never rpcudp's 0x00 or 0x01
    assert codec.network_tag("red") == red  # the same name, the same network


async def start(network: str, n: int) -> list[Server]:
    config = replace(LOCAL_TEST, network_id=network)
    return [await Server.start(HOST, 0, config=config) for _ in range(n)]


async def test_two_networks_bootstrapped_through_each_other_never_mix():
    red: list[Server] = []
    blue: list[Server] = []
    try:
        async with asyncio.timeout(TEST_BUDGET):
            red, blue = await start("red", NODES), await start("blue", NODES)
            # Every node is given a seed of the other network first, by mistake,
            # then one of its own.
            joins = [
                node.bootstrap([theirs[0].address, mine[0].address])
                for mine, theirs in ((red, blue), (blue, red))
                for node in mine[1:]
            ]
            for joined in await asyncio.gather(*joins):
                assert joined.answered == 1  # its own network's seed alone
            for i, node in enumerate(red):
                assert (await node.put(f"red {i}", "red value")).acks >= 1
            for i, node in enumerate(blue):
                assert (await node.put(f"blue {i}", "blue value")).acks >= 1
            red_ids, blue_ids = {n.id for n in red}, {n.id for n in blue}
            for nodes, own in ((red, red_ids), (blue, blue_ids)):
                for node in nodes:
                    known = {c.node_id for c in node.core.table.contacts()}
                    assert known and known <= own, "a table holds the other network's node"
            # No value crossed, and a get from the other network finds nothing.
            for nodes, other in ((red, "blue"), (blue, "red")):
                for node in nodes:
                    held = {int.from_bytes(k, "big") for k in node.core.store.keys()}
                    assert not held & {key_id(f"{other} {i}") for i in range(NODES)}
                assert not (await nodes[0].get(f"{other} 0")).found
            # The mistaken seeds saw the other network's datagrams and dropped them.
            assert red[0].core.stats["foreign_datagrams"] >= NODES - 1
            assert blue[0].core.stats["foreign_datagrams"] >= NODES - 1
            for node in red + blue:
                assert node.core.stats["bad_datagrams"] == 0
    finally:
        for node in red + blue:
            node.close()


async def test_a_bmuller_node_joins_the_default_network_but_not_a_private_one():
    stock = KademliaServer()
    private, default = [], []
    try:
        async with asyncio.timeout(TEST_BUDGET):
            await stock.listen(0, interface=HOST)
            private, default = await start("red", 1), await start("", 1)
            assert await stock.bootstrap([private[0].address]) == []
            assert private[0].core.stats["foreign_datagrams"] >= 1
            assert private[0].core.stats["requests_in"] == 0
            found = await stock.bootstrap([default[0].address])
            assert [int.from_bytes(n.id, "big") for n in found] == [default[0].id]
    finally:
        stock.stop()
        for node in private + default:
            node.close()


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "tab\there"])
def test_a_bad_network_id_is_one_line_and_exit_2(capsys, tmp_path, name):
    with pytest.raises(SystemExit) as exited:
        main(["run", "--data-dir", str(tmp_path), "--network-id", name])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"printable characters without spaces, not {name[:80]!r}")
    assert not any("Traceback" in line for line in err)


def test_the_network_id_comes_from_the_environment_like_every_setting(capsys, monkeypatch):
    monkeypatch.setenv("KADNODE_NETWORK_ID", "lab")
    assert main(["config"]) == 0
    assert 'network-id = "lab"  # $KADNODE_NETWORK_ID' in capsys.readouterr().out
