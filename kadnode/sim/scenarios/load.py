"""Scenario ``load``: values held per node (min, median, p99, max, Gini index). No I/O but
progress on stderr.
"""

from __future__ import annotations

import statistics

from kadnode.sim.oracle import xor_closest
from kadnode.sim.report import Report
from kadnode.sim.world import Progress, World, finish_report, settle_gc, tuned_gc
from kadnode.stats import gini, mean, percentile


def scenario_load(
    nodes: int,
    seed: int,
    *,
    per_node: int = 10,
    loss: float = 0.0,
    progress: Progress | None = None,
) -> Report:
    world = World("load", seed, loss=loss, progress=progress)
    with tuned_gc():
        world.grow(nodes)
        total = per_node * nodes
        batch = 1000
        stored: list[tuple[bytes, int]] = []
        while len(stored) < total:
            stored += world.put_values(min(batch, total - len(stored)), "load", spread=20.0)
            world.progress(f"{len(stored)}/{total} values stored")
            settle_gc()
        world.settle(30.0)
    counts = [len(m.store) for m in world.members]
    k = world.config.k
    ids = [m.id for m in world.members]
    primary: dict[int, int] = {}
    for key, _ in stored:
        owner = xor_closest(ids, int.from_bytes(key, "big"), 1)[0]
        primary[owner] = primary.get(owner, 0) + 1
    primaries = [primary.get(i, 0) for i in ids]
    rows = []
    for name, data in (("replicas held", counts), ("keys owned (nearest)", primaries)):
        avg = mean(data)
        rows.append(
            {
                "what": name,
                "min": min(data),
                "median": statistics.median(data),
                "mean": avg,
                "p99": percentile(data, 99),
                "max": max(data),
                "max_mean": max(data) / avg if avg else 0.0,
                "gini": gini(data),
            }
        )
    report = Report(
        "load",
        f"Values per node: {total} values on {nodes} nodes (k={k})",
        seed,
        nodes,
        [
            ("what", "per node"),
            ("min", "min"),
            ("median", "median"),
            ("mean", "mean"),
            ("p99", "p99"),
            ("max", "max"),
            ("max_mean", "max/mean"),
            ("gini", "Gini"),
        ],
        rows,
        params={"values": total, "k": k},
        series={"counts": counts, "primaries": primaries},
    )
    report.notes = [
        f"replicas held: records in each node's store; each value goes to its k={k} nearest"
        f" nodes, so the mean is ~{k * total / nodes:.0f} (publishers keep their own copy too).",
        "keys owned: values whose XOR-nearest node it is. With random ids a node's share of"
        " the key space varies widely; storing on the k nearest averages k neighbouring"
        " shares, which flattens the load by about 1/sqrt(k).",
    ]
    stored_ok = sum(1 for c in counts if c > 0)
    if stored_ok < len(counts) * 0.9:
        report.failures.append(f"only {stored_ok} of {len(counts)} nodes hold anything")
    return finish_report(world, report)
