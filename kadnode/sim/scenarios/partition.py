"""Scenario ``partition``: two random halves cut apart, then healed. No I/O but progress
on stderr.

Measures how far the routing tables and ring drift apart while split, the
time after the heal until they span both halves again and cross-half lookups
succeed as before, and which records were lost.
"""

from __future__ import annotations

from kadnode.core.ids import ID_BITS, ID_SPACE
from kadnode.core.node import NodeCore
from kadnode.sim.oracle import ring_successor, xor_closest_sorted
from kadnode.sim.report import Report
from kadnode.sim.world import Progress, World, finish_report, settle_gc, tuned_gc


def scenario_partition(
    nodes: int,
    seed: int,
    *,
    split_for: float = 3600.0,
    watch_for: float = 3600.0,
    probe_every: float = 30.0,
    probes: int = 40,
    values: int = 100,
    workload: float = 600.0,
    loss: float = 0.0,
    progress: Progress | None = None,
) -> Report:
    """Two random halves cut apart for ``split_for`` seconds, then healed.

    Background traffic: each node looks up a random key every ``workload``
    seconds on average (an application using the network), besides the
    core's own maintenance (refresh, replication, ring stabilization). The
    default split lasts one refresh interval, so every bucket is refreshed
    (and meets the cut) while split.
    """
    world = World("partition", seed, loss=loss, progress=progress)
    net, rng = world.net, world.rng
    k = world.config.k
    with tuned_gc():
        world.grow(nodes)
        before = world.put_values(values, "before")
        world.settle(10.0)
        settle_gc()
    members = list(world.members)
    shuffled = members[:]
    rng.shuffle(shuffled)
    half = {m.id: i % 2 for i, m in enumerate(shuffled)}
    sides = [[m for m in members if half[m.id] == s] for s in (0, 1)]
    ids = sorted(half)
    neighbours = {m.id: set(xor_closest_sorted(ids, m.id, k, exclude=m.id)) for m in members}

    def background(until: float) -> None:
        rate = len(members) / workload
        t = net.now
        while True:
            t += rng.expovariate(rate)
            if t >= until:
                break
            net.at(t, _background_lookup, world, rng.choice(members))

    timeline: list[dict] = []

    def observe(phase: str, with_probes: bool) -> dict:
        row = {"phase": phase, "t": net.now - split_at, **_tables(members, half, neighbours)}
        if with_probes:
            row["cross_ok"] = _cross_probe(world, sides, probes)
        timeline.append(row)
        return row

    with tuned_gc():
        split_at = net.now
        base = observe("before", True)
        net.partition([[m.addr for m in side] for side in sides])  # type: ignore[attr-defined]
        background(split_at + split_for + watch_for)
        during: list[tuple[bytes, int]] = []
        everyone = world.members
        for s in (0, 1):
            world.members = sides[s]
            during += world.put_values(values // 2, f"during-{s}")
        world.members = everyone
        while net.now < split_at + split_for - 1e-9:
            world.settle(min(60.0, split_at + split_for - net.now))
            row = observe("split", False)
            world.progress(
                f"split +{row['t']:.0f}s: {row['cross_share']:.1%} of contacts across,"
                f" {row['neighbours']:.1%} of neighbours known"
            )
        net.heal()
        healed_at = net.now
        # Times after the heal (None: not within the watch) at which each
        # view is back to what it was before the split.
        back: dict[str, float | None] = {"lookups": None, "ring": None, "neighbours": None}
        while net.now < healed_at + watch_for - 1e-9:
            world.settle(probe_every)
            row = observe("healed", True)
            since = net.now - healed_at
            reached = {
                # every node spans both halves; cross-half lookups succeed as
                # often as before the split (give or take one probe)
                "lookups": row["span"] == 1.0
                and row["cross_ok"] >= base["cross_ok"] - 1 / probes - 1e-9,
                "ring": row["ring_ok"] is None or row["ring_ok"] >= base["ring_ok"] - 1e-9,
                "neighbours": row["neighbours"] >= base["neighbours"] - 0.005,
            }
            for name, ok in reached.items():
                if ok and back[name] is None:
                    back[name] = since
            world.progress(
                f"healed +{since:.0f}s: {row['span']:.1%} span,"
                f" {row['neighbours']:.1%} of neighbours known, cross lookups {row['cross_ok']:.0%}"
            )
        # Every record, read from one node of each half.
        lost, missed, asked = [], 0, 0
        records = [(key, "before") for key, _ in before] + [(key, "during") for key, _ in during]
        askers = [(rng.choice(sides[0]), rng.choice(sides[1])) for _ in records]
        results = world.run_ops(
            [
                (asker, lambda c, now, key=key: c.get(key, now))
                for (key, _), pair in zip(records, askers, strict=True)
                for asker in pair
            ],
            10.0,
        )
        for i, (key, when) in enumerate(records):
            found = [results[2 * i][0].found, results[2 * i + 1][0].found]
            asked += 2
            missed += found.count(False)
            if not any(found):
                lost.append((key.hex(), when))
    split_end = [r for r in timeline if r["phase"] == "split"][-1]
    after = [r for r in timeline if r["phase"] == "healed"]
    summary = {
        "nodes": len(members),
        "split_s": split_for,
        "cross_split": split_end["cross_share"],
        "neighbours_split": split_end["neighbours"],
        "ring_split": split_end["ring_ok"],
        "lookups_back": _after(back["lookups"], watch_for),
        "ring_back": _after(back["ring"], watch_for),
        "neighbours_back": _after(back["neighbours"], watch_for),
        "neighbours_end": after[-1]["neighbours"],
        "records": len(records),
        "lost": len(lost),
        "missed_gets": missed,
    }
    columns = [
        ("nodes", "nodes"),
        ("split_s", "split s"),
        ("cross_split", "contacts across at heal"),
        ("neighbours_split", "neighbours known at heal"),
        ("ring_split", "ring right at heal"),
        ("lookups_back", "spanning + lookups ok after s"),
        ("ring_back", "ring right after s"),
        ("neighbours_back", "neighbours back after s"),
        ("neighbours_end", "neighbours known at end"),
        ("records", "records"),
        ("lost", "records lost"),
        ("missed_gets", "gets missed"),
    ]
    marks = [0.0, 60.0, 600.0, split_for, *(split_for + d for d in (30, 60, 120, 300, 600))]
    picked: list[dict] = []
    for mark in [*marks, timeline[-1]["t"]]:
        nearest = min(timeline, key=lambda r: abs(r["t"] - mark))
        if nearest not in picked and abs(nearest["t"] - mark) <= 60.0:
            picked.append(nearest)
    report = Report(
        "partition",
        f"Partition of {len(members)} nodes in two halves for {split_for / 60:.0f} min, then heal",
        seed,
        nodes,
        columns,
        [summary],
        params={
            "split s": split_for,
            "watched after heal s": watch_for,
            "probe lookups": probes,
            "background lookup per node every s": workload,
        },
        series={"timeline": timeline, "back": back, "split_for": split_for},
    )
    report.extra = [
        (
            "Timeline",
            [
                ("phase", "phase"),
                ("t", "s since split"),
                ("span", "nodes spanning"),
                ("cross_share", "contacts across"),
                ("neighbours", "neighbours known"),
                ("ring_ok", "ring successor right"),
                ("cross_ok", "cross lookups ok"),
            ],
            picked,
        )
    ]
    report.notes = [
        "Halves are random; all datagrams between them are dropped while split.",
        "span: nodes whose table holds at least one node of the other half; contacts across:"
        " share of all table entries in the other half (about 1/2 when whole); neighbours"
        f" known: share of each node's true {k} XOR-nearest nodes (of the whole network) in"
        " its table; ring successor right: against the whole network.",
        "After the heal, times until each view is back to its level before the split (probed"
        f" every {probe_every:.0f} s): every node spans both halves and cross-half lookups succeed"
        " as often as before (give or take one probe); every ring successor right; each node"
        " knows its true k nearest neighbours again (within 0.5 %). '>' : not within the watch.",
        f"cross lookups: {probes} lookups per probe for the id of a node in the other half"
        " (success: that node answered); their misses before the split and after the heal"
        " are the slow-first-contact timeouts (see hops).",
        f"Records: {values} values stored before the split, {values // 2} on each side during"
        " it; at the end each is read from one node of each half; lost = found by neither.",
    ]
    if back["lookups"] is None:
        report.failures.append(
            f"cross-half lookups did not recover within {watch_for:.0f} s of the heal"
        )
    if lost:
        report.failures.append(f"{len(lost)} records lost")
    return finish_report(world, report)


def _after(seconds: float | None, watched: float) -> str:
    return f"> {watched:.0f}" if seconds is None else f"{seconds:.0f}"


def _background_lookup(world: World, core: NodeCore) -> None:
    if core.addr in world.net.down:  # type: ignore[attr-defined]
        return
    target = world.rng.getrandbits(ID_BITS)
    world.net.start(core, lambda c, now: c.lookup(target, now), keep=False)


def _tables(members: list[NodeCore], half: dict[int, int], neighbours: dict[int, set]) -> dict:
    """What the routing tables say about the two halves (observed, no traffic)."""
    spanning, across, total, known = 0, 0, 0, 0
    for m in members:
        mine = half[m.id]
        contacts = [c.node_id for c in m.table.contacts()]
        other = sum(1 for c in contacts if half.get(c, mine) != mine)
        spanning += other > 0
        across += other
        total += len(contacts)
        near = neighbours[m.id]
        known += sum(1 for c in contacts if c in near) / max(1, len(near))
    return {
        "span": spanning / len(members),
        "cross_share": across / max(1, total),
        "neighbours": known / len(members),
        "ring_ok": _ring_ok(members),
    }


def _ring_ok(members: list[NodeCore]) -> float | None:
    if not members or getattr(members[0], "ring", None) is None:
        return None
    ids = sorted(m.id for m in members)
    ok = 0
    for m in members:
        succ = m.ring.successor
        ok += succ is not None and succ.node_id == ring_successor(ids, (m.id + 1) % ID_SPACE)
    return ok / len(members)


def _cross_probe(world: World, sides: list[list[NodeCore]], probes: int) -> float:
    rng = world.rng
    starts, targets = [], []
    for i in range(probes):
        src_side = i % 2
        src = rng.choice(sides[src_side])
        target = rng.choice(sides[1 - src_side]).id
        targets.append(target)
        starts.append((src, lambda c, now, t=target: c.lookup(t, now)))
    results = world.run_ops(starts, 5.0)
    hits = sum(
        1
        for (result, _), target in zip(results, targets, strict=True)
        if result.peer is not None and result.peer.node_id == target
    )
    return hits / probes
