"""Joining: by DNS name (SRV, A), and again from persisted contacts. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from dnsserver import Srv, serve

from kadnode.config import LOCAL_TEST
from kadnode.shell.daemon import Daemon, DaemonOptions, run_daemon
from kadnode.shell.library import Server


@contextlib.asynccontextmanager
async def daemon(tmp_path, **options):
    stop = asyncio.Event()
    ready: asyncio.Future[Daemon] = asyncio.get_running_loop().create_future()
    opts = DaemonOptions(
        host="127.0.0.1", port=0, data_dir=tmp_path, api_port=0, config=LOCAL_TEST, **options
    )
    task = asyncio.create_task(
        run_daemon(opts, stop=stop, on_ready=lambda d, _: ready.set_result(d))
    )
    try:
        async with asyncio.timeout(10):
            yield await ready
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(predicate, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_daemon_joins_through_the_srv_records_of_a_dns_seed(tmp_path):
    seeds = [await Server.start("127.0.0.1", 0, config=LOCAL_TEST) for _ in range(2)]
    try:
        zone = {
            "_kadnode._udp.seeds.kadnode.test": {
                "SRV": [
                    Srv(10, 5, seeds[0].address[1], "a.kadnode.test"),
                    Srv(20, 5, seeds[1].address[1], "b.kadnode.test"),
                ]
            },
            "a.kadnode.test": {"A": ["127.0.0.1"]},
            "b.kadnode.test": {"A": ["127.0.0.1"]},
        }
        async with (
            serve(zone) as dns,
            daemon(
                tmp_path, dns_seeds=["seeds.kadnode.test"], dns_nameservers=[dns.address]
            ) as node,
        ):
            await until(lambda: len(node.server.core.table) == 2)
            assert {c.addr for c in node.server.core.table.contacts()} == {s.address for s in seeds}
            assert any("SRV" in q for q in dns.queries), dns.queries
    finally:
        for s in seeds:
            s.close()


async def test_a_restarted_daemon_rejoins_from_saved_contacts_when_its_seed_is_gone(tmp_path):
    seed = await Server.start("127.0.0.1", 0, config=LOCAL_TEST)
    others = [await Server.start("127.0.0.1", 0, config=LOCAL_TEST) for _ in range(3)]
    for other in others:
        await other.bootstrap([seed.address])
    async with daemon(tmp_path, bootstrap=[seed.address]) as node:
        await until(lambda: len(node.server.core.table) == 4)
        first_id = node.server.id
        await node.put("registered", "198.51.100.7:30303")
    seed.close()
    try:
        async with daemon(tmp_path) as node:  # no seeds at all this time
            assert node.server.id == first_id
            await until(lambda: len(node.server.core.table) >= 3)
            found = await others[0].get("registered")
            assert found.found and found.value == "198.51.100.7:30303"
    finally:
        for other in others:
            other.close()


async def test_fault_injection_delays_what_a_node_sends_only_when_allowed(tmp_path):
    from kadnode.errors import LocalProtocolError

    async with daemon(tmp_path / "a", allow_fault_injection=True) as a, daemon(tmp_path / "b") as b:
        with pytest.raises(LocalProtocolError, match="--allow-fault-injection"):
            await b.fault(100, 0)
        quick = await b.ping(*a.server.address)
        reply = await a.fault(150, 0)
        assert reply["mechanism"].startswith("kadnode transport send delay")
        slow = await b.ping(*a.server.address)
        assert slow["alive"] and slow["rtt_ms"] >= 150 > quick["rtt_ms"]
        await a.fault(0, 0)
        assert (await b.ping(*a.server.address))["rtt_ms"] < 150
