"""The chaos harness (chaos/) and the bootstrap tools (bootstrap/) against real daemons.

- process backend (default suite): 8 ``kadnode run`` processes on 127.0.0.1,
  SIGKILL 30 % of them; every record is still found from every survivor. And
  4 processes under a 200 +- 50 ms send delay (``kadnode fault``): every
  record is found from every node during the delay and after it is cleared.
- netns backend (default suite, root with ``ip`` and ``iptables``; skipped
  otherwise): 6 daemons in network namespaces of their own, joined through
  ``--dns-seed`` SRV records; a 10 s partition with iptables DROP, then heal.
- docker backend (``-m docker``): containers of ``kadnode:local`` on an
  internal docker network; partition, heal, kill 30 %; clocks skewed up to
  20 s, then 30 % of the nodes slowed (0.05 cpu, paused 300 ms a second).
- bootstrap/seed_dns.py serves bootstrap/kadnode.zone to kadnode's own resolver
  on loopback.

Every scenario is bounded in time and takes its cluster down, pass or fail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from chaos import host_faults, scenarios  # noqa: E402
from chaos.cluster import KADNODE_DELAY, Backend, ChaosError, FaultUnavailable  # noqa: E402
from chaos.process_backend import NetnsBackend, ProcessBackend  # noqa: E402
from kadnode.shell.dns import SeedResolutionError, resolve_seed  # noqa: E402

IMAGE = os.environ.get("KADNODE_IMAGE", "kadnode:local")


def _seed_dns():
    spec = importlib.util.spec_from_file_location("seed_dns", ROOT / "bootstrap" / "seed_dns.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cluster_name() -> str:
    return f"kct{os.getpid() % 100000}"


def _chaos(backend: Backend) -> scenarios.Chaos:
    return scenarios.Chaos(backend, seed=7, progress=scenarios.Progress(quiet=True))


@pytest.fixture
def process_chaos(tmp_path: Path, cluster_name: str) -> Iterator[scenarios.Chaos]:
    chaos = _chaos(ProcessBackend(cluster_name, tmp_path / "state"))
    try:
        yield chaos
    finally:
        chaos.backend.down()


def test_process_kill_30_percent_every_record_found(process_chaos):
    report = scenarios.up(process_chaos, 8, join_timeout=30)
    assert report.ok, report.render()
    report = scenarios.kill(process_chaos, 0.3, restart=True, timeout=30)
    assert report.ok, report.render()
    assert report.metrics["records_registered"] == 8
    assert report.metrics["killed"] == 2
    assert report.metrics["survivors"] == 6
    # Found from every survivor, then from every node once the killed ones restarted.
    assert report.metrics["all_found_after_s"] is not None
    assert report.metrics["after_restart_found_s"] is not None
    assert report.metrics["nodes_running"] == 8


def test_process_delay_every_record_found_during_and_after(process_chaos):
    assert scenarios.up(process_chaos, 4, join_timeout=20).ok
    report = scenarios.delay(process_chaos, 200, 50, duration=0, timeout=20)
    assert report.ok, report.render()
    assert report.metrics["delay_mechanism"] == KADNODE_DELAY
    assert f"delay mechanism: {KADNODE_DELAY}" in report.notes
    assert report.metrics["all_found_under_fault_after_s"] is not None
    assert report.metrics["datagrams_held_by_kadnode_delay"] > 0  # the delay was real
    assert report.metrics["nodes_running"] == 4
    # Cleared: a fresh lookup round sends nothing through the delay any more.
    before = scenarios._stat_sum(process_chaos, process_chaos.running(), "fault_delayed")
    scenarios.missing_records(process_chaos, process_chaos.running(), {"chaos/none": "-"})
    after = scenarios._stat_sum(process_chaos, process_chaos.running(), "fault_delayed")
    assert after == before


def test_process_backend_refuses_network_faults(process_chaos):
    scenarios.up(process_chaos, 3, join_timeout=30)
    with pytest.raises(FaultUnavailable, match="process backend cannot inject 'partition'"):
        scenarios.partition(process_chaos, 1, 1)


def test_killed_node_is_not_a_crash_but_a_dead_one_is(process_chaos):
    chaos = process_chaos
    nodes = chaos.backend.up(3, lambda _: None)
    chaos.backend.kill(nodes[2])
    report = scenarios.Report("t", "process", 3, 0)
    scenarios.check_states(chaos, report, killed=[nodes[2].name])
    assert report.ok, report.render()
    scenarios.check_states(chaos, report)  # now node-03 is simply not running
    assert report.violations == ["node-03 is not running (killed by the harness (SIGKILL))"]


def test_run_py_without_a_cluster_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "chaos" / "run.py"), "--backend", "process",
         "--state-dir", str(tmp_path / "none"), "kill"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "chaos: no process cluster is up: run 'chaos/run.py up' first"
    )


def _netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "the netns backend needs root"
    missing = [t for t in ("ip", "iptables", "nsenter") if shutil.which(t) is None]
    if missing:
        return f"the netns backend needs {', '.join(missing)}"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return "ip netns does not work here"
    return None


@pytest.mark.skipif(_netns_reason() is not None, reason=_netns_reason() or "")
def test_netns_partition_heals_and_every_record_is_found(tmp_path, cluster_name):
    chaos = _chaos(NetnsBackend(cluster_name, tmp_path / "state"))
    try:
        assert scenarios.up(chaos, 6, join_timeout=30).ok
        report = scenarios.partition(chaos, duration=10, heal_timeout=60)
        assert report.ok, report.render()
        assert report.metrics["sides"] == "3 | 3"
        # Every record, from before the split and those a side took during it
        # (a side holds a majority of the replicas it can still find), is
        # found by every node after the heal.
        found, total = report.metrics["records_found_after_heal"].split("/")
        assert found == total and int(total) >= 36
        assert report.metrics["heal_routes_converged_s"] is not None
    finally:
        chaos.backend.down()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert cluster_name not in listed


def _docker_reason() -> str | None:
    from chaos.docker_backend import engine

    try:
        client = engine(timeout=30)
    except ChaosError as exc:
        return f"no docker engine reachable ({exc})"
    try:
        client.images.get(IMAGE)
    except Exception:
        return f"image {IMAGE} missing: build it with deploy/build-image.sh --offline"
    return None


@pytest.fixture
def docker_chaos(cluster_name) -> Iterator[scenarios.Chaos]:
    """8 containers up and joined; removed afterwards, pass or fail."""
    reason = _docker_reason()
    if reason:
        pytest.skip(reason)
    from chaos.docker_backend import DockerBackend

    chaos = _chaos(DockerBackend(cluster_name, IMAGE))
    try:
        report = scenarios.up(chaos, 8, join_timeout=60)
        assert report.ok, report.render()
        yield chaos
    finally:
        chaos.backend.down()
    assert not chaos.backend.exists()


@pytest.mark.docker
def test_docker_partition_heal_then_kill(docker_chaos):
    report = scenarios.partition(docker_chaos, duration=15, heal_timeout=90)
    print(report.render())
    assert report.ok, report.render()
    found, total = report.metrics["records_found_after_heal"].split("/")
    assert found == total and int(total) >= 64  # as for netns above
    report = scenarios.kill(docker_chaos, 0.3, restart=False, timeout=60)
    print(report.render())
    assert report.ok, report.render()
    assert report.metrics["survivors"] == 6


@pytest.mark.docker
def test_docker_skewed_clocks_then_slow_nodes(docker_chaos):
    """Bounded versions of ``chaos/run.py skew`` and ``slow`` on 8 containers."""
    report = host_faults.skew(docker_chaos, 20.0, 0.5, timeout=90)
    print(report.render())
    assert report.ok, report.render()
    m = report.metrics
    assert m["skewed"] == "4 of 8" and m["offset_measured_error_s"] < 5
    assert (m["expiry_found_before"], m["expiry_found_after"]) == ("8/8", "0/8")
    assert m["peer_records_verified_under_skew"] == m["peer_records_verified_after"] == "64/64"
    # The running daemons measured the step (clock_step_s); that they kept their
    # own clocks is tests/shell/test_clock.py's to show.
    assert max(map(abs, m["clock_step_seen_by_daemons_s"])) > 1
    report = host_faults.slow(docker_chaos, 0.3, 0.05, 300, 1000, duration=5, timeout=120)
    print(report.render())
    assert report.ok, report.render()
    m = report.metrics
    assert m["rtt_ms_slow_nodes"]["p95"] > m["rtt_ms_healthy_nodes"]["p95"]
    assert m["lookups_stalled"].startswith("0 ")


def test_seed_dns_serves_the_example_zone_to_kadnode():
    seed_dns = _seed_dns()
    zone = seed_dns.Zone(seed_dns.parse_zone((ROOT / "bootstrap" / "kadnode.zone").read_text()))

    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: seed_dns.SeedDnsProtocol(zone), local_addr=("127.0.0.1", 0)
        )
        server = [f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"]
        try:
            srv = await resolve_seed("seeds.kadnode.example.org", 8467, nameservers=server)
            plain = await resolve_seed("any.kadnode.example.org", 8467, nameservers=server)
            with pytest.raises(SeedResolutionError, match="no A/AAAA/SRV records"):
                await resolve_seed("nothere.kadnode.example.org", 8467, nameservers=server)
        finally:
            transport.close()
        return srv, plain

    srv, plain = asyncio.run(main())
    # SRV: priority 10 (boot1, boot2, each A then AAAA) before priority 20 (boot3, port 9467).
    assert srv == [
        ("192.0.2.10", 8467),
        ("2001:db8::10", 8467),
        ("198.51.100.20", 8467),
        ("2001:db8:1::20", 8467),
        ("203.0.113.30", 9467),
    ]
    assert plain == [
        ("192.0.2.10", 8467),
        ("198.51.100.20", 8467),
        ("2001:db8::10", 8467),
        ("2001:db8:1::20", 8467),
    ]


def test_seed_dns_rejects_what_it_cannot_serve():
    seed_dns = _seed_dns()
    with pytest.raises(seed_dns.ZoneError, match=r"line 2: .*multi-line"):
        seed_dns.parse_zone("$ORIGIN x.org.\n@ IN SOA ns host (1 2 3 4 5)\n")
    with pytest.raises(seed_dns.ZoneError, match="line 1"):
        seed_dns.parse_zone("a IN A 300.1.1.1\n")
    zone = seed_dns.Zone(seed_dns.parse_zone("a.x.org. IN A 192.0.2.1\n"))
    assert zone.answer(b"\x00") is None  # too short: no reply
    query = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + b"\x01b\x01x\x03org\x00\x00\x01\x00\x01"
    )
    reply = zone.answer(query)
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 3  # NXDOMAIN for b.x.org
