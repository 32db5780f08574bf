"""Chaos scenarios: register records, inject one fault, check invariants, report. Does I/O
through a :class:`~chaos.cluster.Backend`.

Every scenario registers records before its fault (one key per node, put
from that node with ``kadnode put --json``), then checks, during the fault and
after it:

- every record is found, with its value, from every running node;
- after a partition heals, every node's routing table holds nodes of the
  other side again;
- no node crashed: every node is running, except those the harness killed.

A scenario prints its progress to stderr while it waits, returns a
:class:`Report` with the timing of each phase, and lists each violation. Every
wait has a deadline and every loop a bounded number of rounds.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .cluster import Backend, ChaosError, FaultUnavailable, Node

T = TypeVar("T")
POLL = 3.0  # seconds between rounds of a wait
PROBE_BUDGET = 90.0  # seconds one node's batch of gets may take


class Progress:
    """Timestamped progress lines on stderr (silent when ``quiet``)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"  [{time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Report:
    scenario: str
    backend: str
    nodes: int
    seed: int
    phases: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {"name": name, "seconds": None, "detail": ""}
        self.phases.append(record)
        start = time.monotonic()
        try:
            yield record
        finally:
            record["seconds"] = round(time.monotonic() - start, 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "nodes": self.nodes,
            "seed": self.seed,
            "ok": self.ok,
            "phases": self.phases,
            "metrics": self.metrics,
            "violations": self.violations,
            "notes": self.notes,
        }

    def render(self) -> str:
        verdict = "OK" if self.ok else f"FAILED ({len(self.violations)} violations)"
        lines = [
            f"chaos {self.scenario}: {self.backend} backend, {self.nodes} nodes, "
            f"seed {self.seed}: {verdict}"
        ]
        width = max((len(p["name"]) for p in self.phases), default=5)
        for p in self.phases:
            seconds = "" if p["seconds"] is None else f"{p['seconds']:7.1f} s"
            lines.append(f"  {p['name']:<{width}}  {seconds:>9}  {p['detail']}")
        if self.metrics:
            lines.append("  measured:")
            lines += [f"    {k}: {v}" for k, v in self.metrics.items()]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  VIOLATION: {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"  ... and {len(self.violations) - 50} more violations")
        return "\n".join(lines)


@dataclass
class Chaos:
    """What every scenario needs: the cluster, a seeded random source, progress."""

    backend: Backend
    seed: int
    progress: Progress
    parallel: int = 8

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.run_id = f"{self.seed}-{int(time.time())}"

    def report(self, scenario: str) -> Report:
        return Report(scenario, self.backend.name, len(self.backend.nodes()), self.seed)

    def each(self, nodes: Iterable[Node], call: Callable[[Node], T]) -> dict[str, T]:
        nodes = list(nodes)
        if not nodes:
            return {}
        with ThreadPoolExecutor(min(self.parallel, len(nodes))) as pool:
            return dict(zip([n.name for n in nodes], pool.map(call, nodes), strict=True))

    def running(self) -> list[Node]:
        return [n for n in self.backend.nodes() if self.backend.status(n).running]

    def stopped(self) -> list[str]:
        """Nodes down before a scenario starts (killed earlier, not crashed): not its business."""
        return [n.name for n in self.backend.nodes() if not self.backend.status(n).running]


# ---- the invariants -------------------------------------------------------------------------


def register(
    chaos: Chaos, nodes: list[Node], tag: str, report: Report, required: bool = True
) -> dict[str, str]:
    """Put one record from each node with ``kadnode put --json``; the records that were stored.

    A put that is not stored is a violation when ``required``, if it fails
    again when retried alone (the first round runs puts in parallel, which on
    a small machine can be load enough to miss the write quorum: those are
    counted). During a fault (``required=False``) a refusal can be the daemon's
    rule, as a write quorum that a minority side cannot reach: then it is
    counted, with its reason, and not retried.
    """
    backend = chaos.backend

    def put(node: Node) -> tuple[str, str, Any]:
        key = f"chaos/{chaos.run_id}/{tag}/{node.name}"
        value = f"{node.name}@{node.address}"
        argv = [backend.kadnode, "put", "--json", key, value]
        try:
            code, out, err = backend.exec(node, argv, timeout=60)
        except Exception as exc:  # a timeout or an engine error: one line in the report
            return key, value, f"{type(exc).__name__}: {exc}"
        try:
            return key, value, json.loads(out)
        except ValueError:
            return key, value, (err.strip().splitlines() or [f"exit {code}"])[-1]

    def stored(reply: Any) -> bool:
        return isinstance(reply, dict) and reply.get("stored", 0) >= 1

    records = {}
    acks = []
    refused = []
    by_name = {n.name: n for n in nodes}
    for name, (key, value, reply) in chaos.each(nodes, put).items():
        if not stored(reply) and required:
            refused.append(str(reply))
            key, value, reply = put(by_name[name])  # once more, alone
        if stored(reply):
            records[key] = value
            acks.append(reply["stored"])
        elif required:
            report.violations.append(f"put {key!r} from {name}: not stored twice ({reply})")
        else:
            refused.append(str(reply))
    if acks:
        report.metrics[f"{tag}_put_acks_min_median"] = (min(acks), statistics.median(acks))
    if refused:
        what = "refused_first_try" if required else "refused"
        report.metrics[f"{tag}_puts_{what}"] = f"{len(refused)}/{len(nodes)}, e.g. {refused[0]}"
    return records


def missing_records(chaos: Chaos, nodes: list[Node], records: dict[str, str]) -> dict[str, list]:
    """For each node, the records it could not find (or found with another value)."""
    keys = sorted(records)

    def check(node: Node) -> list[str]:
        reply = chaos.backend.probe(node, ["get", *keys], PROBE_BUDGET)
        if isinstance(reply, dict):
            return [f"{key}: {reply.get('error')}" for key in keys]
        problems = []
        for item in reply:
            key = item["key"]
            if "error" in item:
                problems.append(f"{key}: {item['error']}")
            elif not item["found"]:
                problems.append(f"{key}: not found")
            elif item["value"] != records[key]:
                problems.append(f"{key}: value {item['value']!r}, expected {records[key]!r}")
        return problems

    return {name: p for name, p in chaos.each(nodes, check).items() if p}


@dataclass
class Wait:
    seconds: float | None  # None: the deadline passed first
    first_round_ok: float  # fraction of (node, record) pairs found in the first round
    missing: dict[str, list[str]]
    first_round_s: float = 0.0  # how long the first round of lookups took


def wait_records(
    chaos: Chaos, nodes: list[Node], records: dict[str, str], timeout: float, what: str
) -> Wait:
    """Check every record from every node until all are found or ``timeout`` passes."""
    start = time.monotonic()
    total = len(nodes) * len(records)
    first = None
    first_s = 0.0
    rounds = 0
    missing: dict[str, list[str]] = {}
    while rounds < 1000:
        rounds += 1
        missing = missing_records(chaos, nodes, records)
        lost = sum(len(p) for p in missing.values())
        elapsed = time.monotonic() - start
        if first is None:
            first = (total - lost) / total if total else 1.0
            first_s = round(elapsed, 2)
        chaos.progress(
            f"{what}: {total - lost}/{total} record lookups ok on {len(nodes)} nodes "
            f"(round {rounds}, {elapsed:.0f} s)"
        )
        if not missing:
            return Wait(round(elapsed, 2), first, {}, first_s)
        if elapsed + POLL > timeout:
            break
        time.sleep(POLL)
    return Wait(None, first or 0.0, missing, first_s)


def record_violations(report: Report, wait: Wait, what: str) -> None:
    for name, problems in sorted(wait.missing.items()):
        shown = "; ".join(problems[:3]) + (
            f"; +{len(problems) - 3} more" if len(problems) > 3 else ""
        )
        report.violations.append(f"{what}: {name} misses {len(problems)} records: {shown}")


def peer_addresses(chaos: Chaos, nodes: list[Node]) -> dict[str, set[str] | None]:
    """Each node's routing table as HOST:PORT (``kadnode peers``); None where the probe failed."""

    def peers(node: Node) -> set[str] | None:
        reply = chaos.backend.probe(node, ["peers"], 30)
        if not isinstance(reply, dict) or "peers" not in reply:
            return None
        return {f"{p['host']}:{p['port']}" for p in reply["peers"]}

    return chaos.each(nodes, peers)


def check_states(chaos: Chaos, report: Report, killed: Iterable[str] = ()) -> None:
    """Every node runs, but those in ``killed``; none of those crashed either."""
    killed = set(killed)
    running = 0
    for node in chaos.backend.nodes():
        status = chaos.backend.status(node)
        running += status.running
        if status.crashed:
            tail = chaos.backend.logs(node, 5).strip().replace("\n", " | ")
            report.violations.append(f"{node.name} crashed ({status.detail}): {tail}")
        elif not status.running and node.name not in killed:
            report.violations.append(f"{node.name} is not running ({status.detail})")
        elif status.running and node.name in killed:
            report.violations.append(f"{node.name} was killed but is running")
    report.metrics["nodes_running"] = running


def wait_joined(chaos: Chaos, nodes: list[Node], timeout: float) -> dict[str, int]:
    """Wait until every node has at least one contact; the table sizes."""
    deadline = time.monotonic() + timeout
    sizes: dict[str, int] = {}
    for _ in range(1000):
        tables = peer_addresses(chaos, nodes)
        sizes = {name: len(ips) if ips is not None else -1 for name, ips in tables.items()}
        joined = sum(size > 0 for size in sizes.values())
        chaos.progress(f"joined: {joined}/{len(nodes)} nodes have contacts")
        if joined == len(nodes) or time.monotonic() + POLL > deadline:
            break
        time.sleep(POLL)
    return sizes


def _stat_sum(chaos: Chaos, nodes: list[Node], stat: str) -> int:
    """One counter of the daemons' /info stats, summed over ``nodes`` (0 where unknown)."""

    def count(node: Node) -> int:
        reply = chaos.backend.probe(node, ["info"], 30)
        stats = reply.get("stats") if isinstance(reply, dict) else None
        return int(stats.get(stat, 0)) if isinstance(stats, dict) else 0

    return sum(chaos.each(nodes, count).values())


def _need(chaos: Chaos, fault: str) -> None:
    if fault not in chaos.backend.faults:
        supported = ", ".join(sorted(chaos.backend.faults))
        raise FaultUnavailable(
            f"the {chaos.backend.name} backend cannot inject {fault!r} (it supports {supported})"
        )


def _clear(chaos: Chaos, nodes: Iterable[Node]) -> None:
    chaos.each(nodes, chaos.backend.clear_faults)


# ---- the scenarios --------------------------------------------------------------------------


def up(chaos: Chaos, count: int, join_timeout: float) -> Report:
    report = Report("up", chaos.backend.name, count, chaos.seed)
    with report.phase("start") as p:
        nodes = chaos.backend.up(count, chaos.progress)
        p["detail"] = f"{len(nodes)} nodes ({sum(n.bootstrap for n in nodes)} bootstrap)"
    with report.phase("join") as p:
        sizes = wait_joined(chaos, nodes, join_timeout)
        known = sorted(s for s in sizes.values() if s >= 0)
        p["detail"] = "every node has contacts" if min(sizes.values()) > 0 else "not all joined"
        report.metrics["routing_table_min_median_max"] = (
            (known[0], statistics.median(known), known[-1]) if known else None
        )
    for name, size in sizes.items():
        if size <= 0:
            report.violations.append(f"{name} has no contacts after {join_timeout:.0f} s")
    check_states(chaos, report)
    return report


def partition(chaos: Chaos, duration: float, heal_timeout: float) -> Report:
    _need(chaos, "partition")
    backend = chaos.backend
    report = chaos.report("partition")
    down_before = chaos.stopped()
    nodes = chaos.running()
    boots = [n for n in nodes if n.bootstrap]
    others = [n for n in nodes if not n.bootstrap]
    chaos.rng.shuffle(others)
    side_a = boots[:1] + others[0::2]
    side_b = boots[1:] + others[1::2]
    sides = {"A": side_a, "B": side_b}
    other = {n.name: (side_b if n in side_a else side_a) for n in nodes}
    report.metrics["sides"] = f"{len(side_a)} | {len(side_b)}"

    with report.phase("register") as p:
        before = register(chaos, nodes, "before", report)
        p["detail"] = f"{len(before)} records, one from each node"
    report.metrics["records_registered"] = len(before)

    split_at = time.monotonic()
    try:
        with report.phase("split") as p:
            chaos.each(nodes, lambda n: backend.block(n, [o.ip for o in other[n.name]]))
            p["detail"] = f"iptables DROP between sides ({len(side_a)} | {len(side_b)} nodes)"
        with report.phase("check: split is real") as p:
            reply = backend.probe(side_a[0], ["ping", side_b[0].address], 30)
            leaked = isinstance(reply, dict) and reply.get("alive")
            p["detail"] = f"{side_a[0].name} pings {side_b[0].name}: " + (
                "REPLY (leak)" if leaked else "no reply"
            )
            if leaked:
                report.violations.append("partition leaked: a ping crossed the split")
        with report.phase("register during split") as p:
            during = {
                name: register(chaos, side, f"during-{name}", report, required=False)
                for name, side in sides.items()
            }
            p["detail"] = ", ".join(f"side {k}: {len(v)} records" for k, v in during.items())
        with report.phase("check during split") as p:
            within = []
            for name, side in sides.items():
                wait = wait_records(chaos, side, {**before, **during[name]}, 60, f"side {name}")
                record_violations(report, wait, f"during the split, side {name}")
                within.append("all" if wait.seconds is not None else "NOT all")
            # A record written on side A must not be readable on side B yet.
            leaks = 0
            for name, side in sides.items():
                foreign = during["B" if name == "A" else "A"]
                missing = missing_records(chaos, side[:2], foreign)
                leaks += sum(len(foreign) - len(missing.get(n.name, [])) for n in side[:2])
            p["detail"] = (
                f"records found within side A: {within[0]}, side B: {within[1]}; "
                f"{leaks} found across the split"
            )
            if leaks:
                report.violations.append(f"partition leaked: {leaks} records read across it")
        counts = []
        for _ in range(1000):
            left = duration - (time.monotonic() - split_at)
            if left <= 0:
                break
            cross = peer_addresses(chaos, nodes)
            remaining = sum(
                len((cross[n.name] or set()) & {o.address for o in other[n.name]}) for n in nodes
            )
            counts.append(remaining)
            chaos.progress(
                f"split for {duration - left:.0f}/{duration:.0f} s; "
                f"{remaining} contacts across the split still in routing tables"
            )
            time.sleep(min(10.0, left))
        report.metrics["split_seconds"] = round(time.monotonic() - split_at, 1)
        if counts:
            # Contacts a node still keeps for the other side: if they were never
            # evicted, healing needs no rediscovery at all.
            report.metrics["contacts_across_split_first_last"] = (counts[0], counts[-1])
    finally:
        with report.phase("heal") as p:
            _clear(chaos, nodes)
            p["detail"] = "rules removed"
    healed_at = time.monotonic()

    everything = {**before, **during["A"], **during["B"]}
    routes_at = records_at = None
    with report.phase("converge") as p:
        for round_ in range(1, 1000):
            tables = peer_addresses(chaos, nodes)
            spanning = sum(
                bool((tables[n.name] or set()) & {o.address for o in other[n.name]}) for n in nodes
            )
            now = time.monotonic() - healed_at
            if spanning == len(nodes) and routes_at is None:
                routes_at = round(now, 1)
            chaos.progress(
                f"after heal ({now:.0f} s, round {round_}): {spanning}/{len(nodes)} routing "
                "tables span both sides"
            )
            if records_at is None:
                missing = missing_records(chaos, nodes, everything)
                lost = sum(len(v) for v in missing.values())
                total = len(nodes) * len(everything)
                chaos.progress(f"after heal: {total - lost}/{total} record lookups ok")
                if not missing:
                    records_at = round(time.monotonic() - healed_at, 1)
            if routes_at is not None and records_at is not None:
                break
            if time.monotonic() - healed_at + POLL > heal_timeout:
                break
            time.sleep(POLL)
        converged = routes_at is not None and records_at is not None
        p["detail"] = (
            f"routing tables span both sides after {routes_at} s, all records found from "
            f"every node after {records_at} s"
            if converged
            else f"not converged within {heal_timeout:.0f} s"
        )
    report.metrics["records_checked_after_heal"] = len(everything)
    report.metrics["heal_routes_converged_s"] = routes_at
    report.metrics["heal_records_converged_s"] = records_at
    if routes_at is None:
        tables = peer_addresses(chaos, nodes)
        for n in nodes:
            if not (tables[n.name] or set()) & {o.address for o in other[n.name]}:
                report.violations.append(
                    f"after heal: {n.name}'s routing table has no node of the other side "
                    f"after {heal_timeout:.0f} s"
                )
    if records_at is None:
        wait = wait_records(chaos, nodes, everything, 1, "after heal (final)")
        report.metrics["records_found_after_heal"] = (
            f"{round(wait.first_round_ok * len(nodes) * len(everything))}"
            f"/{len(nodes) * len(everything)}"
        )
        record_violations(report, wait, "after heal")
    else:
        report.metrics["records_found_after_heal"] = (
            f"{len(nodes) * len(everything)}/{len(nodes) * len(everything)}"
        )
    check_states(chaos, report, down_before)
    return report


def kill(chaos: Chaos, fraction: float, restart: bool, timeout: float) -> Report:
    _need(chaos, "kill")
    backend = chaos.backend
    report = chaos.report("kill" + (" --restart" if restart else ""))
    down_before = chaos.stopped()
    nodes = chaos.running()
    with report.phase("register") as p:
        records = register(chaos, nodes, "kill", report)
        p["detail"] = f"{len(records)} records, one from each node"
    report.metrics["records_registered"] = len(records)
    count = max(1, min(len(nodes) - 1, round(fraction * len(nodes))))
    victims = sorted(chaos.rng.sample(nodes, count), key=lambda n: n.name)
    survivors = [n for n in nodes if n not in victims]
    with report.phase("kill") as p:
        chaos.each(victims, backend.kill)
        p["detail"] = f"SIGKILL {count} of {len(nodes)}: {', '.join(v.name for v in victims)}"
    report.metrics["killed"] = count
    report.metrics["survivors"] = len(survivors)
    with report.phase("check survivors") as p:
        wait = wait_records(chaos, survivors, records, timeout, "after kill")
        p["detail"] = (
            f"all {len(records)} records found from all {len(survivors)} survivors"
            if wait.seconds is not None
            else "records missing"
        )
    report.metrics["first_round_found"] = f"{wait.first_round_ok:.1%}"
    report.metrics["all_found_after_s"] = wait.seconds
    record_violations(report, wait, "after the kill")
    check_states(chaos, report, [*down_before, *(v.name for v in victims)])
    if restart:
        with report.phase("restart") as p:
            chaos.each(victims, backend.start)
            p["detail"] = f"{count} nodes started again on their data directories"
        with report.phase("check all") as p:
            wait = wait_records(chaos, nodes, records, timeout, "after restart")
            p["detail"] = "all records from every node" if wait.seconds is not None else "missing"
        report.metrics["after_restart_found_s"] = wait.seconds
        record_violations(report, wait, "after the restart")
        check_states(chaos, report, down_before)
    return report


def _degraded(
    chaos: Chaos, report: Report, apply: Callable[[Node], None], what: str, duration: float,
    timeout: float,
) -> Report:  # fmt: skip
    """Register, degrade every node's network, check during and after."""
    down_before = chaos.stopped()
    nodes = chaos.running()
    with report.phase("register") as p:
        records = register(chaos, nodes, "before", report)
        p["detail"] = f"{len(records)} records, one from each node"
    report.metrics["records_registered"] = len(records)
    start = time.monotonic()
    try:
        with report.phase(what) as p:
            chaos.each(nodes, apply)
            p["detail"] = f"on all {len(nodes)} nodes"
        with report.phase(f"register under {what}") as p:
            during = register(chaos, nodes, "during", report, required=False)
            p["detail"] = f"{len(during)}/{len(nodes)} puts stored"
        with report.phase(f"check under {what}") as p:
            wait = wait_records(chaos, nodes, {**records, **during}, timeout, f"under {what}")
            p["detail"] = (
                f"all found after {wait.seconds} s" if wait.seconds is not None else "missing"
            )
        report.metrics[f"first_round_found_under_{what.split()[0]}"] = f"{wait.first_round_ok:.1%}"
        report.metrics["lookup_round_s_under_fault"] = wait.first_round_s
        report.metrics["all_found_under_fault_after_s"] = wait.seconds
        delayed = _stat_sum(chaos, nodes, "fault_delayed")
        if delayed:
            report.metrics["datagrams_held_by_kadnode_delay"] = delayed
        record_violations(report, wait, f"under {what}")
        left = duration - (time.monotonic() - start)
        if left > 0:
            chaos.progress(f"holding {what} for {left:.0f} s more")
            time.sleep(left)
    finally:
        with report.phase("clear") as p:
            _clear(chaos, nodes)
            p["detail"] = "rules removed"
    with report.phase("check after") as p:
        wait = wait_records(chaos, nodes, {**records, **during}, timeout, "after")
        p["detail"] = "all records from every node" if wait.seconds is not None else "missing"
    report.metrics["lookup_round_s_after_clear"] = wait.first_round_s
    record_violations(report, wait, "after clearing")
    check_states(chaos, report, down_before)
    return report


def loss(chaos: Chaos, probability: float, duration: float, timeout: float) -> Report:
    _need(chaos, "loss")
    report = chaos.report(f"loss {probability:.0%}")
    return _degraded(
        chaos,
        report,
        lambda n: chaos.backend.set_loss(n, probability),
        f"{probability:.0%} loss",
        duration,
        timeout,
    )


def delay(chaos: Chaos, ms: int, jitter_ms: int, duration: float, timeout: float) -> Report:
    """Every node's datagrams wait ``ms`` +- ``jitter_ms``: tc netem where the kernel has it,
    else kadnode's own send delay (``kadnode fault``, daemons run --allow-fault-injection)."""
    _need(chaos, "delay")
    report = chaos.report(f"delay {ms}+-{jitter_ms} ms")
    mechanisms: set[str] = set()

    def apply(node: Node) -> None:
        mechanisms.add(chaos.backend.set_delay(node, ms, jitter_ms))

    try:
        return _degraded(chaos, report, apply, f"{ms}+-{jitter_ms} ms delay", duration, timeout)
    finally:
        for mechanism in sorted(mechanisms):
            report.notes.append(f"delay mechanism: {mechanism}")
        report.metrics["delay_mechanism"] = "; ".join(sorted(mechanisms)) or None


def churn(chaos: Chaos, rounds: int, interval: float, timeout: float) -> Report:
    _need(chaos, "churn")
    backend = chaos.backend
    report = chaos.report("churn")
    down_before = chaos.stopped()
    nodes = chaos.running()
    with report.phase("register") as p:
        records = register(chaos, nodes, "churn", report)
        p["detail"] = f"{len(records)} records, one from each node"
    report.metrics["records_registered"] = len(records)
    replaced = []
    with report.phase("churn") as p:
        for round_ in range(1, rounds + 1):
            candidates = [n for n in chaos.running() if not n.bootstrap]
            if not candidates:
                break
            gone = chaos.rng.choice(candidates)
            backend.remove(gone)
            new = backend.add_node()
            replaced.append(f"{gone.name}->{new.name}")
            chaos.progress(f"churn round {round_}/{rounds}: {gone.name} left, {new.name} joined")
            time.sleep(interval)
        p["detail"] = f"{len(replaced)} nodes left for good, as many new ones joined"
    report.metrics["replaced"] = len(replaced)
    with report.phase("check") as p:
        current = chaos.running()
        wait = wait_records(chaos, current, records, timeout, "after churn")
        p["detail"] = (
            f"all {len(records)} records from all {len(current)} nodes"
            if wait.seconds is not None
            else "records missing"
        )
    report.metrics["first_round_found"] = f"{wait.first_round_ok:.1%}"
    report.metrics["all_found_after_s"] = wait.seconds
    record_violations(report, wait, "after churn")
    check_states(chaos, report, down_before)
    return report


def heal(chaos: Chaos, timeout: float) -> Report:
    """Remove every fault: flush the rules, start killed nodes, wait until all have contacts."""
    backend = chaos.backend
    report = chaos.report("heal")
    nodes = backend.nodes()
    with report.phase("clear rules") as p:
        running = [n for n in nodes if backend.status(n).running]
        _clear(chaos, running)  # every backend has at least a delay to clear
        p["detail"] = f"on {len(running)} running nodes"
    with report.phase("start stopped nodes") as p:
        stopped = [n for n in nodes if not backend.status(n).running]
        chaos.each(stopped, backend.start)
        p["detail"] = ", ".join(n.name for n in stopped) or "none were stopped"
    with report.phase("join") as p:
        sizes = wait_joined(chaos, backend.nodes(), timeout)
        p["detail"] = f"routing tables: min {min(sizes.values(), default=0)} contacts"
    check_states(chaos, report)
    return report


def status(chaos: Chaos) -> Report:
    report = chaos.report("status")
    nodes = chaos.backend.nodes()
    states = {n.name: chaos.backend.status(n) for n in nodes}
    tables = peer_addresses(chaos, [n for n in nodes if states[n.name].running])
    for n in nodes:
        size = tables.get(n.name)
        report.notes.append(
            f"{n.name:<10} {n.address:<22} {states[n.name].detail:<28} "
            f"{'' if size is None else f'{len(size)} contacts'}"
        )
    check_states(chaos, report, [n for n, s in states.items() if not s.running and not s.crashed])
    return report


def down(chaos: Chaos) -> Report:
    report = Report("down", chaos.backend.name, 0, chaos.seed)
    with report.phase("remove") as p:
        removed = chaos.backend.down()
        p["detail"] = f"{len(removed)} objects"
    report.notes += removed
    return report


def require_cluster(backend: Backend) -> None:
    if not backend.exists():
        raise ChaosError(f"no {backend.name} cluster is up: run 'chaos/run.py up' first")
