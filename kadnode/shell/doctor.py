"""``kadnode doctor``: what a node's facts mean, and what to do. No I/O.

:func:`diagnose` turns what the daemon gathered (its seeds pinged just now,
what peers see of it: kadnode.core.reach) into checks, each with a verdict
(``ok``, ``warn`` or ``fail``), a finding and, unless all is well, what to do.
"""

from __future__ import annotations

from typing import Any

from kadnode.inputs import format_hostport

# A clock this far from its peers' median gets a warning: peer records and
# TTLs are judged on the clock (a record expiring more than its lifetime
# ahead is refused as "expires too far ahead").
CLOCK_WARN_S = 30.0
# Past this uptime a server that no stranger has reached is worth a warning.
LONELY_AFTER_S = 600.0


def _check(name: str, verdict: str, finding: str, advice: str = "") -> dict[str, str]:
    return {"check": name, "verdict": verdict, "finding": finding, "advice": advice}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _address(a: dict[str, Any] | None) -> str:
    return "none" if a is None else format_hostport(a["host"], a["port"])


def diagnose(facts: dict[str, Any]) -> list[dict[str, str]]:
    """The checks, in the order a person would look: seeds, peers, the
    address peers see, reachability, clock, strangers reaching us."""
    return [
        _seeds(facts),
        _peers(facts),
        _address_seen(facts),
        _reachability(facts),
        _clock(facts),
        _inbound(facts),
    ]


def _seeds(facts: dict[str, Any]) -> dict[str, str]:
    seeds, errors = facts["seeds"], facts["seed_errors"]
    if not seeds and not errors:
        return _check("seeds", "ok", "none configured: this node starts a network of its own")
    answered = [s for s in seeds if s["answered"]]
    parts = [
        f"{s['address']} answered in {s['rtt_ms']:.0f} ms"
        if s["answered"]
        else f"{s['address']} {s.get('error') or 'did not answer'}"
        for s in seeds
    ]
    finding = f"{len(answered)} of {len(seeds)} answered: " + "; ".join(parts + errors)
    if not answered:
        return _check(
            "seeds",
            "fail",
            finding,
            "check each seed's address and port, that a kadnode node runs there, and that"
            " this host may send UDP to it (an outbound firewall); name several seeds",
        )
    if len(answered) == len(seeds) and not errors:
        return _check("seeds", "ok", finding)
    return _check(
        "seeds",
        "warn",
        finding,
        "the others are down, misnamed or unreachable from here: check their addresses",
    )


def _peers(facts: dict[str, Any]) -> dict[str, str]:
    peers = facts["peers"]
    if peers:
        return _check("peers", "ok", f"{peers} in the routing table")
    return _check(
        "peers",
        "fail",
        "the routing table is empty: this node has not joined a network",
        "give it a seed that answers (--bootstrap HOST:PORT or --dns-seed NAME); it tries"
        " again every minute",
    )


def _address_seen(facts: dict[str, Any]) -> dict[str, str]:
    reach = facts["reach"]
    observed = reach["observed"]
    advertised = ", ".join(map(_address, reach["advertised"])) or "none"
    if observed is None:
        seen = reach["seen"]
        if seen and all(a in reach["advertised"] for a in seen):
            return _check(
                "address",
                "ok",
                f"peers on {_count(reach['votes'], 'subnet')} see it where it says it is,"
                f" {advertised}",
            )
        return _check(
            "address",
            "warn" if facts["peers"] else "ok",
            f"peers have not yet agreed on an address for this node ({reach['votes']} of the"
            f" 3 subnets it needs have answered); it registers {advertised}",
            "it asks again every 15 minutes; a node with peers on fewer than 3 subnets"
            " cannot learn it"
            if facts["peers"]
            else "",
        )
    seen = _address(observed)
    finding = (
        f"peers on {_count(reach['observers'], 'subnet')} see it at {seen}; this host's own"
        f" addresses: {', '.join(reach['local']) or 'unknown'}; it registers {advertised}"
    )
    first = reach["advertised"][0] if reach["advertised"] else None
    if first is not None and first != observed and not reach["nat"]:
        return _check(
            "address",
            "warn",
            finding,
            f"its registered address is not the one peers see: correct --advertise, or drop"
            f" it to register {seen}",
        )
    return _check("address", "ok", finding)


def _reachability(facts: dict[str, Any]) -> dict[str, str]:
    reach = facts["reach"]
    port = facts["port"]
    if not reach["nat"]:
        return _check(
            "reachability",
            "ok",
            "no peer sees this node at an address other than its own: not behind NAT;"
            " it serves others (server mode)",
        )
    seen = _address(reach["observed"])
    if reach["reachability"] == "public":
        return _check(
            "reachability",
            "ok",
            f"behind NAT, but reachable: a node it never contacted reached it"
            f" ({reach['dialed_from']}); it serves others at {seen}",
        )
    state = {
        "private": "no dial-back from a node it never contacted arrived",
        "unknown": "not settled yet (only nodes it had contacted dialed back, or no helper"
        " could ask; it tries again every 90 s)",
    }[reach["reachability"]]
    return _check(
        "reachability",
        "warn",
        f"behind NAT (peers see {seen}): {state}; it runs as a client: it looks up,"
        " stores, reads and registers through others, and no node keeps its address",
        f"to serve others, forward UDP port {port} on the router to this host, or run it"
        " on a host with a public address; it checks again every 15 minutes",
    )


def _clock(facts: dict[str, Any]) -> dict[str, str]:
    reach = facts["reach"]
    offset = reach["clock_offset_s"]
    if offset is None:
        return _check("clock", "ok", "no peer has told it the time yet")
    finding = (
        f"peers' clocks are {offset:+.0f} s from this node's (the median over"
        f" {_count(reach['clock_samples'], 'subnet')})"
    )
    if abs(offset) <= CLOCK_WARN_S:
        return _check("clock", "ok", finding)
    return _check(
        "clock",
        "warn",
        finding,
        "set this host's clock (NTP) and restart the node: records and lifetimes are"
        " judged on it, and replicas refuse records signed too far ahead",
    )


def _inbound(facts: dict[str, Any]) -> dict[str, str]:
    reach, count = facts["reach"], facts["unsolicited_in"]
    if reach["mode"] == "client":
        finding = f"{count} requests from nodes it had not contacted (a client expects none)"
        return _check("inbound", "ok", finding)
    if count:
        return _check("inbound", "ok", f"{count} requests from nodes it had not contacted")
    if facts["uptime_s"] < LONELY_AFTER_S or not facts["peers"]:
        return _check("inbound", "ok", "no node has contacted it first yet")
    return _check(
        "inbound",
        "warn",
        f"in {facts['uptime_s'] / 60:.0f} minutes no node contacted it first",
        f"if it should serve others, open UDP port {facts['port']} in this host's firewall"
        " (and any in front of it)",
    )
