"""Scenario ``latency``: how long lookups, puts and gets take, and how sure
lookups are, under wide-area latency and packet loss. No I/O but progress on
stderr.

For each loss rate a network is grown by the real join under that loss, on
the simulator's lognormal latency (median one way
:data:`~kadnode.sim.network.LATENCY_MEDIAN`, so ~100 ms a round trip), and
then, with the same loss:

- lookup: ``NodeCore.lookup`` of a random id from a random member;
- put: ``NodeCore.put`` from a random member, to its quorum verdict;
- get: ``NodeCore.get`` of a stored key from a random member;

each timed from start to completion in simulated time (medians). A lookup
found the nearest when its first result is the true XOR-nearest live node,
and is exact when its results are exactly the true k nearest, in order.

At no loss, also joining: newcomers join through the seeds, spread over
JOIN_WINDOW seconds, and at set round trips (2 x the median one-way
latency) after a newcomer's first reply from a seed arrives, a random member
starts a lookup of the newcomer's id; it is findable then if that lookup
reaches it (issue 14: a node answers lookups and is findable within 3 round
trips of its first seed reply).
"""

from __future__ import annotations

from kadnode.core import codec
from kadnode.core.proof import wire_bytes
from kadnode.sim.network import LATENCY_MEDIAN
from kadnode.sim.report import Report
from kadnode.sim.world import Progress, World, finish_report, measure_lookups, tuned_gc
from kadnode.stats import mean, percentile

LOSSES = (0.0, 0.01, 0.05, 0.2)
# Idle traffic is counted over this much simulated time with no operations:
# several stabilize (15 s) and token (150 s) periods.
IDLE_WINDOW = 300.0
# Joining: this many newcomers, over this many seconds, each probed by one
# lookup at each of these round trips after its first seed reply.
JOINERS = 50
JOIN_WINDOW = 20.0
PROBE_RTTS = (1, 2, 3, 5, 10)


def measure_idle(world: World, seconds: float) -> list[dict]:
    """Datagrams and bytes each member sends per second while nothing is asked
    of the network, by kind (requests by their message; replies together)."""
    net = world.net
    counts: dict[str, list[int]] = {}

    def watch(_now: float, src: int, _dest: int | None, data: bytes, _delivered: bool) -> None:
        kind = "replies"
        if data[:1] == bytes([codec.REQUEST]):
            kind = type(codec.decode(data, len(data)).message).__name__  # type: ignore[union-attr]
        held = counts.setdefault(kind, [0, 0])
        held[0] += 1
        held[1] += wire_bytes(len(data), net.addrs[src][0])

    net.observer = watch
    try:
        world.settle(seconds)
    finally:
        net.observer = None
    per = len(world.members) * seconds
    rows = [
        {"kind": kind, "datagrams_s": n / per, "bytes_s": size / per}
        for kind, (n, size) in sorted(counts.items(), key=lambda item: -item[1][1])
    ]
    rows.append(
        {
            "kind": "all",
            "datagrams_s": sum(r["datagrams_s"] for r in rows),
            "bytes_s": sum(r["bytes_s"] for r in rows),
        }
    )
    return rows


def measure_joins(world: World, count: int, window: float) -> list[dict]:
    """For each of PROBE_RTTS: the share of ``count`` newcomers that a lookup
    from a random member, started that many round trips after the newcomer's
    first seed reply arrived, reached."""
    net, rng = world.net, world.rng
    rtt = 2 * LATENCY_MEDIAN
    seeds = {net.index[addr] for addr in world.seed_addrs()}
    members = list(world.members)
    newcomers: dict[int, object] = {}  # index -> core, until its first seed reply
    probes: list[tuple[int, int, object]] = []  # (round trips, newcomer id, op)

    def probe(rtts: int, node_id: int) -> None:
        start = lambda c, now, i=node_id: c.lookup(i, now)  # noqa: E731
        probes.append((rtts, node_id, world.begin(rng.choice(members), start, "probe")))

    def watch(now: float, src: int, dest: int | None, data: bytes, delivered: bool) -> None:
        if delivered and src in seeds and dest in newcomers and data[:1] != bytes([codec.REQUEST]):
            core = newcomers.pop(dest)
            for rtts in PROBE_RTTS:
                net.at(now + rtts * rtt, probe, rtts, core.id)  # type: ignore[attr-defined]

    def arrive() -> None:
        core = net.add_node()
        newcomers[net.index[core.addr]] = core  # type: ignore[attr-defined]
        world.begin(core, World.bootstrap_from(world.seed_addrs()), "join")

    t0 = net.now
    for _ in range(count):
        net.at(t0 + rng.uniform(0.0, window), arrive)
    net.observer = watch
    try:
        world.settle(window + max(PROBE_RTTS) * rtt + 1.0)
    finally:
        net.observer = None
    reached: dict[int, list[bool]] = {rtts: [] for rtts in PROBE_RTTS}
    for rtts, node_id, op in probes:
        peer = world.finish(op)[0].peer  # type: ignore[attr-defined]
        reached[rtts].append(peer is not None and peer.node_id == node_id)
    return [
        {"rtts": rtts, "probes": len(got), "lookup_ok": sum(got) / max(1, len(got))}
        for rtts, got in reached.items()
    ]


def scenario_latency(
    nodes: int,
    seed: int,
    *,
    loss: float | None = None,
    lookups: int = 300,
    values: int = 100,
    progress: Progress | None = None,
) -> Report:
    """``loss``: that one rate; by default each of :data:`LOSSES`."""
    rows: list[dict] = []
    world = None
    for rate in LOSSES if loss is None else (loss,):
        world = World("latency", seed, loss=rate, progress=progress)
        with tuned_gc():
            world.grow(nodes)
            world.settle(30.0)
            if not rows:
                idle = measure_idle(world, IDLE_WINDOW)
            m = measure_lookups(world, lookups)
            rng, members = world.rng, world.members
            keys = [rng.getrandbits(160).to_bytes(20, "big") for _ in range(values)]
            puts = world.run_ops(
                [
                    (rng.choice(members), lambda c, now, k=key: c.put(k, "latency", now))
                    for key in keys
                ],
                20.0,
            )
            gets = world.run_ops(
                [(rng.choice(members), lambda c, now, k=key: c.get(k, now)) for key in keys], 20.0
            )
            if not rows:  # after the rest: the newcomers are not among the members measured
                joins = measure_joins(world, JOINERS, JOIN_WINDOW)
        row = {
            "loss": rate,
            "lookup_ms": 1000 * percentile(m["latency"], 50),
            "lookup_rtt": percentile(m["latency"], 50) / (2 * LATENCY_MEDIAN),
            "put_ms": 1000 * percentile([took for _, took in puts], 50),
            "get_ms": 1000 * percentile([took for _, took in gets], 50),
            "nearest": m["nearest_ok"] / m["count"],
            "exact": m["exact"] / m["count"],
            "queried": mean(m["queried"]),
            "get_ok": sum(1 for result, _ in gets if result.found) / len(gets),  # type: ignore[attr-defined]
        }
        rows.append(row)
        world.progress(
            f"loss {rate:.0%}: lookup p50 {row['lookup_ms']:.0f} ms,"
            f" {row['nearest']:.1%} found the nearest",
            force=True,
        )
    assert world is not None
    report = Report(
        "latency",
        f"Lookups, puts and gets on {nodes} nodes under latency and loss",
        seed,
        nodes,
        [
            ("loss", "loss"),
            ("lookup_ms", "lookup p50 ms"),
            ("lookup_rtt", "lookup p50 RTT"),
            ("put_ms", "put p50 ms"),
            ("get_ms", "get p50 ms"),
            ("nearest", "found the nearest"),
            ("exact", "exact k closest"),
            ("queried", "requests per lookup"),
            ("get_ok", "gets found"),
        ],
        rows,
        params={"lookups": lookups, "values": values, "k": world.config.k},
    )
    report.extra.append(
        (
            f"Idle traffic per node (loss {rows[0]['loss']:.0%}, {IDLE_WINDOW:.0f} s with no"
            " operations, IP and UDP headers included)",
            [("kind", "sent"), ("datagrams_s", "datagrams/s"), ("bytes_s", "bytes/s")],
            idle,
        )
    )
    report.extra.append(
        (
            f"Joining (loss {rows[0]['loss']:.0%}): {JOINERS} newcomers; a lookup of each from a"
            " random member, started this many round trips after its first seed reply",
            [("rtts", "round trips"), ("probes", "lookups"), ("lookup_ok", "reached the newcomer")],
            joins,
        )
    )
    report.notes = [
        f"latency: lognormal per pair, median {1000 * LATENCY_MEDIAN:.0f} ms one way;"
        " RTT = 2 x that median. Each loss rate grows its own network under that loss.",
        "found the nearest: the lookup's first result is the true XOR-nearest live node;"
        " exact k closest: its results are exactly the true k nearest, in order.",
    ]
    return finish_report(world, report)
