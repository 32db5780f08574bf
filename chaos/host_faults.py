"""Chaos of the hosts, not the network: clocks that are wrong and nodes that are slow.

``skew``: chosen nodes' wall clocks are set up to S seconds ahead or behind
(libfaketime, see :mod:`chaos.docker_backend`), first while their daemons run
(a step, as NTP putting a clock right makes), then across a restart, so the
daemons start on the wrong time; at the end the clocks are put right and the
nodes restarted again. Checked, besides the usual invariants:

- every record is found from every running node, after the step and while
  the skewed nodes run on their wrong clocks;
- a value stored with a TTL of T (``put --ttl``, 2S + 60 s) is found from
  every node at T - S - 30 s and from none at T + S + 30 s: it neither
  expires early nor outlives its expiry by more than the skew;
- every node's peer record (signed, carrying an absolute expiry and a
  sequence number from its clock) is stored and found verified, with the
  node's address, from every node, under skew and after the clocks are put
  right; a refusal is counted with the replicas' reason.

``slow``: a fraction of the nodes get a CPU quota of C cores and, with
``--pause-ms``, are frozen for that long in every ``--period-ms`` (docker
pause/unpause), so they answer late or in bursts. Checked: how late they
answer (pings from a healthy node, against the healthy ones), that lookups
from healthy nodes do not stall on them (``kadnode lookup`` of every node's id,
timed by the daemon, against the same lookups before the fault), and that
the slow nodes' own puts and gets complete. (Gets would not do: in a network
of at most k = 20 nodes every node holds every value.)

The figures have the same names as the simulator's ``skew`` scenario
(``kadnode sim skew``), so the two can be compared.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from typing import Any

from .cluster import Node
from .scenarios import (
    PROBE_BUDGET,
    Chaos,
    Report,
    _clear,
    _need,
    check_states,
    record_violations,
    register,
    wait_joined,
    wait_records,
)

EXPIRY_MARGIN = 30.0  # seconds either side of the skewed expiry window
STALL_S = 5.0  # a lookup from a healthy node slower than this stalled on a slow node
PINGS = 10  # round trips measured to each node, 0.15 s apart (chaos/probe.py)


def _restart(chaos: Chaos, nodes: list[Node], timeout: float) -> None:
    """SIGKILL and start again on their data directories; wait until they have contacts."""
    chaos.each(nodes, chaos.backend.kill)
    chaos.each(nodes, chaos.backend.start)
    wait_joined(chaos, nodes, timeout)


def _node_ids(chaos: Chaos, nodes: list[Node]) -> dict[str, str]:
    """Each node's id (hex), by name; a node whose info fails is left out."""

    def node_id(node: Node) -> str | None:
        reply = chaos.backend.probe(node, ["info"], 30)
        return reply.get("id") if isinstance(reply, dict) else None

    return {name: i for name, i in chaos.each(nodes, node_id).items() if i}


def _registrations(chaos: Chaos, nodes: list[Node], report: Report, tag: str) -> None:
    """``kadnode register`` on every node: its record stored at quorum, else a violation."""

    def reg(node: Node) -> Any:
        code, out, err = chaos.backend.exec(node, [chaos.backend.kadnode, "register", "--json"], 60)
        try:
            return json.loads(out)
        except ValueError:
            return {"error": (err.strip().splitlines() or [f"exit {code}"])[-1]}

    refusals: Counter[str] = Counter()
    for name, reply in chaos.each(nodes, reg).items():
        refusals.update(reply.get("refused") or [])
        if "error" in reply:
            report.violations.append(f"register on {name} {tag}: {reply['error']}")
            refusals[reply["error"]] += 1
    report.metrics[f"register_refused_{tag}"] = dict(refusals) or None


def _peer_records(
    chaos: Chaos, nodes: list[Node], ids: dict[str, str], report: Report, tag: str
) -> None:
    """Every node's record looked up from every node: verified, with the node's address."""
    by_id = {ids[n.name]: n for n in nodes if n.name in ids}

    def find(node: Node) -> Any:
        return chaos.backend.probe(node, ["find-peer", *by_id], PROBE_BUDGET)

    verified = tried = 0
    refused: Counter[str] = Counter()
    for name, replies in chaos.each(nodes, find).items():
        if isinstance(replies, dict):  # the whole probe failed
            refused[replies.get("error", "probe failed")] = len(by_id)
            tried += len(by_id)
            continue
        for reply in replies:
            tried += 1
            want = by_id[reply["id"]].address
            if "error" in reply:
                why = reply["error"]
            elif reply.get("left"):
                why = "left the network"
            elif not reply["found"]:
                why = f"not found ({reply.get('rejected', 0)} replicas' records rejected)"
            elif want not in reply["addresses"]:
                why = f"another address: {reply['addresses']}"
            else:
                verified += 1
                continue
            refused[why] += 1
            if len(report.violations) < 200:
                report.violations.append(f"find-peer {tag} from {name} of {want}: {why}")
    report.metrics[f"peer_records_verified_{tag}"] = f"{verified}/{tried}"
    report.metrics[f"peer_records_refused_{tag}"] = dict(refused) or None


def _found_from(chaos: Chaos, nodes: list[Node], key: str) -> int:
    """How many of ``nodes`` find ``key``."""

    def found(node: Node) -> bool:
        reply = chaos.backend.probe(node, ["get", key], 60)
        return isinstance(reply, list) and bool(reply[0].get("found"))

    return sum(chaos.each(nodes, found).values())


def _check_expiry(
    chaos: Chaos, report: Report, nodes: list[Node], key: str, expires: float, skew_s: float
) -> None:
    """``key``, stored to expire at ``expires`` (the harness's monotonic clock), is found
    from every node at expires - skew - margin and from none at expires + skew + margin."""
    with report.phase("expiry") as p:
        _sleep_until(chaos, expires - skew_s - EXPIRY_MARGIN, "T - S - margin")
        before = _found_from(chaos, nodes, key)
        _sleep_until(chaos, expires + skew_s + EXPIRY_MARGIN, "T + S + margin")
        after = _found_from(chaos, nodes, key)
        p["detail"] = f"found by {before} before, {after} after"
    report.metrics["expiry_found_before"] = f"{before}/{len(nodes)}"
    report.metrics["expiry_found_after"] = f"{after}/{len(nodes)}"
    if before < len(nodes):
        report.violations.append(
            f"the ttl value expired early: {len(nodes) - before} nodes missed it at T - S"
        )
    if after:
        report.violations.append(f"the ttl value outlived T + S: {after} nodes found it")


def _sleep_until(chaos: Chaos, at: float, what: str) -> None:
    left = at - time.monotonic()
    if left > 0:
        chaos.progress(f"waiting {left:.0f} s for {what}")
        time.sleep(left)


def skew(
    chaos: Chaos, max_seconds: float, fraction: float, timeout: float,
    expiry: bool = True,
) -> Report:  # fmt: skip
    _need(chaos, "skew")
    backend = chaos.backend
    report = chaos.report(f"skew +-{max_seconds:.0f} s")
    down_before = chaos.stopped()
    nodes = chaos.running()
    with report.phase("register") as p:
        records = register(chaos, nodes, "before", report)
        p["detail"] = f"{len(records)} records, one from each node"
    ttl = 2 * max_seconds + 2 * EXPIRY_MARGIN
    expiring = f"chaos/{chaos.run_id}/expiring"
    writer = chaos.rng.choice(nodes)  # drawn either way: --no-expiry keeps the seed's choices
    put_at = time.monotonic()
    if expiry:
        with report.phase("put with a ttl") as p:
            argv = [backend.kadnode, "put", "--json", "--ttl", f"{ttl:.0f}", expiring, "x"]
            code, _, err = backend.exec(writer, argv, 60)
            put_at = time.monotonic()
            if code != 0:
                report.violations.append(f"put --ttl from {writer.name}: {err.strip()}")
            p["detail"] = f"{expiring} from {writer.name}, ttl {ttl:.0f} s"
    else:
        report.notes.append(f"expiry not checked (--no-expiry): its T would be {ttl:.0f} s")
    count = max(1, min(len(nodes), round(fraction * len(nodes))))
    skewed = sorted(chaos.rng.sample(nodes, count), key=lambda n: n.name)
    offsets = {n.name: round(chaos.rng.uniform(-max_seconds, max_seconds)) for n in skewed}
    mechanisms: set[str] = set()
    try:
        with report.phase("step the clocks") as p:
            for node in skewed:
                mechanisms.add(backend.set_clock(node, offsets[node.name]))
            time.sleep(2.0)  # libfaketime re-reads its file every second
            measured = chaos.each(skewed, backend.clock_offset)
            p["detail"] = f"{count} of {len(nodes)} nodes, while their daemons run"
        report.metrics["skewed"] = f"{count} of {len(nodes)}"
        report.metrics["offset_s"] = [min(offsets.values()), max(offsets.values())]
        report.notes.append("offsets: " + ", ".join(f"{n} {o:+d} s" for n, o in offsets.items()))
        worst = max(abs(measured[n] - offsets[n]) for n in offsets)
        report.metrics["offset_measured_error_s"] = round(worst, 2)
        if worst > 5:
            report.violations.append(f"a node's clock reads {worst:.1f} s from what was set")
        with report.phase("after the step") as p:
            during = register(chaos, nodes, "step", report)
            wait = wait_records(chaos, nodes, {**records, **during}, timeout, "after the step")
            steps = chaos.each(skewed, lambda n: backend.probe(n, ["info"], 30))
            seen = [s.get("clock_step_s") for s in steps.values() if isinstance(s, dict)]
            p["detail"] = f"{len(during)} puts; the step as each skewed daemon measured it"
        record_violations(report, wait, "after the step")
        report.metrics["clock_step_seen_by_daemons_s"] = [
            min(seen, default=None),
            max(seen, default=None),
        ]
        records.update(during)
        with report.phase("restart on skewed clocks") as p:
            _restart(chaos, skewed, timeout)
            p["detail"] = f"{count} nodes started again on their data directories"
        ids = _node_ids(chaos, nodes)
        with report.phase("under skew") as p:
            _registrations(chaos, nodes, report, "under_skew")
            under = register(chaos, nodes, "skewed", report)
            records.update(under)
            wait = wait_records(chaos, nodes, records, timeout, "under skew")
            _peer_records(chaos, nodes, ids, report, "under_skew")
            p["detail"] = "records, registrations, peer records from every node"
        record_violations(report, wait, "under skew")
        report.metrics["records_found"] = f"{wait.first_round_ok:.1%} in the first round" + (
            f", all after {wait.seconds} s" if wait.seconds is not None else ", not all"
        )
        if expiry:
            _check_expiry(chaos, report, nodes, expiring, put_at + ttl, max_seconds)
    finally:
        with report.phase("clocks put right") as p:
            chaos.each(skewed, lambda n: backend.set_clock(n, 0.0))
            _restart(chaos, skewed, timeout)
            p["detail"] = f"{count} nodes started again on the right time"
        for mechanism in sorted(mechanisms):
            report.notes.append(f"clock mechanism: {mechanism}")
    with report.phase("after") as p:
        _registrations(chaos, nodes, report, "after")
        wait = wait_records(chaos, nodes, records, timeout, "after")
        _peer_records(chaos, nodes, ids, report, "after")
        p["detail"] = "records, registrations, peer records from every node"
    record_violations(report, wait, "after the clocks were put right")
    check_states(chaos, report, down_before)
    return report


def _quantiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and max of ``values``, rounded."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1),
            "max": round(ordered[-1], 1)}  # fmt: skip


def _lookup_times(chaos: Chaos, nodes: list[Node], ids: list[str]) -> tuple[list[float], int]:
    """``kadnode lookup`` of every id from each of ``nodes``: each one's milliseconds (the
    daemon's elapsed_ms), and how many failed or found nothing."""
    replies = chaos.each(nodes, lambda n: chaos.backend.probe(n, ["lookup", *ids], PROBE_BUDGET))
    times: list[float] = []
    failed = 0
    for reply in replies.values():
        if not isinstance(reply, list):
            failed += len(ids)
            continue
        for item in reply:
            if item.get("found"):
                times.append(item["ms"])
            else:
                failed += 1
    return times, failed


def _rtts(chaos: Chaos, prober: Node, targets: list[Node]) -> tuple[list[float], int]:
    """Ping round trips from ``prober`` to each target (PINGS each): the times, the lost."""
    reply = chaos.backend.probe(
        prober, ["rtt", str(PINGS), *(t.address for t in targets)], PROBE_BUDGET
    )
    times = (
        [t for r in reply if isinstance(reply, list) for t in r["rtt_ms"]]
        if isinstance(reply, list)
        else []
    )
    lost = sum(t is None for t in times)
    return [t for t in times if t is not None], lost


class DutyCycle(threading.Thread):
    """Freeze ``nodes`` for ``pause_ms`` in every ``period_ms``, until stopped or ``seconds``."""

    def __init__(self, chaos: Chaos, nodes: list[Node], pause_ms: int, period_ms: int,
                 seconds: float):  # fmt: skip
        super().__init__(daemon=True)
        self.chaos, self.nodes = chaos, nodes
        self.pause, self.period = pause_ms / 1000, period_ms / 1000
        self.deadline = time.monotonic() + seconds
        self.halt = threading.Event()
        self.cycles = 0
        self.errors: list[str] = []  # what the engine refused, one line each

    def _all(self, frozen: bool) -> None:
        def one(node: Node) -> None:
            try:
                self.chaos.backend.freeze(node, frozen)
            except Exception as exc:  # the engine refused: note it, keep cycling
                self.errors.append(f"{node.name}: {exc}")

        self.chaos.each(self.nodes, one)

    def run(self) -> None:
        try:
            while not self.halt.is_set() and time.monotonic() < self.deadline:
                self.cycles += 1
                self._all(True)
                self.halt.wait(self.pause)
                self._all(False)
                self.halt.wait(max(0.0, self.period - self.pause))
        finally:
            self._all(False)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def slow(
    chaos: Chaos, fraction: float, cpu: float, pause_ms: int, period_ms: int, duration: float,
    timeout: float,
) -> Report:  # fmt: skip
    _need(chaos, "slow")
    backend = chaos.backend
    what = f"{cpu:g} cpu" + (f", paused {pause_ms} ms of every {period_ms} ms" if pause_ms else "")
    report = chaos.report(f"slow {fraction:.0%}: {what}")
    down_before = chaos.stopped()
    nodes = chaos.running()
    others = [n for n in nodes if not n.bootstrap]
    count = max(1, min(len(others) - 1, round(fraction * len(nodes))))
    victims = sorted(chaos.rng.sample(others, count), key=lambda n: n.name)
    healthy = [n for n in nodes if n not in victims]
    prober = healthy[0]
    with report.phase("register") as p:
        records = register(chaos, nodes, "before", report)
        p["detail"] = f"{len(records)} records, one from each node"
    ids = sorted(_node_ids(chaos, nodes).values())
    with report.phase("before") as p:
        base_lookups, _ = _lookup_times(chaos, healthy, ids)
        base_rtt, _ = _rtts(chaos, prober, [n for n in nodes if n is not prober])
        p["detail"] = (
            f"{len(base_lookups)} lookups from healthy nodes, round trips from {prober.name}"
        )
    report.metrics["slow"] = f"{count} of {len(nodes)}: {', '.join(v.name for v in victims)}"
    cycle = None
    mechanisms = set()
    try:
        with report.phase("slow down") as p:
            for node in victims:
                mechanisms.add(backend.set_cpu(node, cpu))
            if pause_ms:
                cycle = DutyCycle(chaos, victims, pause_ms, period_ms, duration + 4 * timeout)
                cycle.start()
                mechanisms.add("docker pause / unpause (the cgroup freezer), in a duty cycle")
            p["detail"] = what
        start = time.monotonic()
        with report.phase("how late") as p:
            slow_rtt, slow_lost = _rtts(chaos, prober, victims)
            fast_rtt, fast_lost = _rtts(chaos, prober, [n for n in healthy if n is not prober])
            p["detail"] = f"{PINGS} pings from {prober.name} to each node"
        report.metrics["rtt_ms_before"] = _quantiles(base_rtt)
        report.metrics["rtt_ms_slow_nodes"] = {**_quantiles(slow_rtt), "lost": slow_lost}
        report.metrics["rtt_ms_healthy_nodes"] = {**_quantiles(fast_rtt), "lost": fast_lost}
        with report.phase("from healthy nodes") as p:
            wait = wait_records(chaos, healthy, records, timeout, "healthy nodes, slow ones beside")
            lookups, failed = _lookup_times(chaos, healthy, ids)
            p["detail"] = f"records; {len(lookups)} lookups timed, {failed} failed"
        record_violations(report, wait, "from healthy nodes")
        report.metrics["lookup_ms_before"] = _quantiles(base_lookups)
        report.metrics["lookup_ms_with_slow_nodes"] = _quantiles(lookups)
        stalled = sum(t > STALL_S * 1000 for t in lookups)
        report.metrics["lookups_stalled"] = f"{stalled} slower than {STALL_S:.0f} s"
        if stalled or failed:
            report.violations.append(
                f"lookups from healthy nodes stalled on slow ones: {stalled} took over"
                f" {STALL_S:.0f} s, {failed} failed"
            )
        with report.phase("the slow nodes' own operations") as p:
            t0 = time.monotonic()
            own = register(chaos, victims, "slow", report)
            put_s = time.monotonic() - t0
            records.update(own)
            wait = wait_records(chaos, victims, records, timeout, "from the slow nodes")
            p["detail"] = f"{len(own)}/{len(victims)} puts in {put_s:.1f} s; gets of every record"
        record_violations(report, wait, "from the slow nodes")
        report.metrics["slow_nodes_puts"] = f"{len(own)}/{len(victims)} in {put_s:.1f} s"
        report.metrics["slow_nodes_all_found_after_s"] = wait.seconds
        _sleep_until(chaos, start + duration, "the end of --duration")
    finally:
        with report.phase("clear") as p:
            if cycle is not None:
                cycle.stop()
                report.metrics["pause_cycles"] = cycle.cycles
                if cycle.errors:
                    report.notes.append(
                        f"{len(cycle.errors)} pauses refused by the engine, e.g. {cycle.errors[0]}"
                    )
            _clear(chaos, victims)
            p["detail"] = "quota lifted, thawed"
        for mechanism in sorted(mechanisms):
            report.notes.append(f"slow mechanism: {mechanism}")
    with report.phase("check after") as p:
        wait = wait_records(chaos, nodes, records, timeout, "after")
        p["detail"] = "all records from every node" if wait.seconds is not None else "missing"
    record_violations(report, wait, "after clearing")
    check_states(chaos, report, down_before)
    return report
