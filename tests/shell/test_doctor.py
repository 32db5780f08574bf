"""``kadnode doctor``: each check's verdict and advice (kadnode.shell.doctor),
and the daemon's own facts behind them, on loopback. The node behind a real
NAT is tests/tools/test_nat.py's."""

from __future__ import annotations

import copy
import socket

from daemons import Daemons, cli_json, kadnode, network

from kadnode.shell import doctor
from kadnode.shell.examples import DOCTOR

HEALTHY = {
    "seeds": [{"address": "192.0.2.7:8467", "answered": True, "rtt_ms": 41.2}],
    "seed_errors": [],
    "peers": 38,
    "port": 8467,
    "uptime_s": 1800.0,
    "unsolicited_in": 12,
    "reach": {
        **DOCTOR["reach"],
        "observed": {"host": "203.0.113.9", "port": 8467},
        "seen": [{"host": "203.0.113.9", "port": 8467}],
        "local": ["203.0.113.9"],
        "nat": False,
        "reachability": "unknown",
        "mode": "server",
        "advertised": [{"host": "203.0.113.9", "port": 8467}],
    },
}


def verdicts(facts: dict) -> dict[str, str]:
    return {c["check"]: c["verdict"] for c in doctor.diagnose(facts)}


def check(facts: dict, name: str) -> dict[str, str]:
    return next(c for c in doctor.diagnose(facts) if c["check"] == name)


def changed(**parts) -> dict:
    facts = copy.deepcopy(HEALTHY)
    for key, value in parts.items():
        if key in facts["reach"] and key not in facts:
            facts["reach"][key] = value
        else:
            facts[key] = value
    return facts


def test_a_healthy_node_passes_every_check_with_nothing_to_do():
    assert set(verdicts(HEALTHY).values()) == {"ok"}
    assert all(c["advice"] == "" for c in doctor.diagnose(HEALTHY))


def test_a_seed_that_does_not_answer_fails_and_says_what_to_check():
    down = changed(seeds=[{"address": "192.0.2.7:8467", "answered": False}], peers=0)
    seeds = check(down, "seeds")
    assert seeds["verdict"] == "fail" and "0 of 1 answered" in seeds["finding"]
    assert "192.0.2.7:8467 did not answer" in seeds["finding"]
    assert "firewall" in seeds["advice"]
    assert check(down, "peers")["verdict"] == "fail"
    # One of two down: a warning, naming the one.
    half = changed(
        seeds=[
            {"address": "192.0.2.7:8467", "answered": True, "rtt_ms": 3.0},
            {"address": "192.0.2.8:8467", "answered": False},
        ]
    )
    assert check(half, "seeds")["verdict"] == "warn"


def test_a_node_behind_nat_is_told_it_is_a_client_and_how_to_serve():
    behind = changed(nat=True, reachability="private", mode="client", local=["10.0.0.5"])
    reach = check(behind, "reachability")
    assert reach["verdict"] == "warn" and "client" in reach["finding"]
    assert "forward UDP port 8467" in reach["advice"]
    assert check(behind, "inbound")["verdict"] == "ok"  # a client expects no strangers
    reachable = changed(nat=True, reachability="public", dialed_from="198.51.100.3")
    assert check(reachable, "reachability")["verdict"] == "ok"


def test_a_clock_far_from_its_peers_and_a_wrong_advertise_are_warned_of():
    assert check(changed(clock_offset_s=-120.0), "clock")["verdict"] == "warn"
    assert check(changed(clock_offset_s=4.0), "clock")["verdict"] == "ok"
    wrong = changed(advertised=[{"host": "192.0.2.200", "port": 8467}])
    assert check(wrong, "address")["verdict"] == "warn"
    lonely = changed(unsolicited_in=0)
    assert "open UDP port 8467" in check(lonely, "inbound")["advice"]


def test_doctor_on_live_daemons_pings_each_seed_and_exits_1_when_one_check_fails(
    daemons: Daemons,
) -> None:
    seed, a = network(daemons, "seed", "a")
    report = cli_json("doctor", api=a.api)
    [answer] = report["seeds"]
    assert answer["answered"] and answer["address"] == seed.addr
    assert report["peers"] >= 1 and report["reach"]["mode"] == "server"
    assert report["reach"]["local"] == [seed.addr.split(":")[0]]  # it listens on one address
    assert {c["check"] for c in report["checks"] if c["verdict"] == "fail"} == set()
    # A node whose only seed is down: the seeds check fails, exit 1, advice printed.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))  # a port nobody answers on while we hold it
        host, port = gone.getsockname()
        lonely = daemons.spawn("lonely", bootstrap=[f"{host}:{port}"])
        done = kadnode("doctor", "--api", lonely.api)
    assert done.returncode == 1, done.stderr
    assert "FAIL  seeds: 0 of 1 answered" in done.stdout
    assert "-> check each seed's address and port" in done.stdout
    print("\n" + kadnode("doctor", "--api", a.api).stdout + "\n" + done.stdout)
