"""Scenario ``hops``: lookup hops and success against N. No I/O but progress on stderr.

A network is grown by the real join to N nodes and, at every power of two on
the way, random-key lookups from random members are measured beside log2 N
and Kademlia's estimate log_{2^b}(N/k) + c (Maymounkov & Mazieres 2002,
2.3 and 4.2), and checked against the true XOR-nearest nodes; Chord routing
too, when the core has a ring view (beside 1/2 log2 N).
"""

from __future__ import annotations

import math

from kadnode.sim.oracle import hop_bound, hop_model, one_bit_bound
from kadnode.sim.report import Report
from kadnode.sim.world import (
    MIN_FOUND_NEAREST,
    Progress,
    World,
    finish_report,
    measure_lookups,
    measure_routes,
    tuned_gc,
)
from kadnode.stats import mean, percentile


def powers_of_two(low: int, high: int) -> list[int]:
    sizes, n = [], low
    while n <= high:
        sizes.append(n)
        n *= 2
    if not sizes or sizes[-1] != high:
        sizes.append(high)
    return sizes


def scenario_hops(
    nodes: int,
    seed: int,
    *,
    lookups: int = 300,
    loss: float = 0.0,
    progress: Progress | None = None,
    world: World | None = None,
) -> Report:
    """Grow a network to ``nodes`` and measure lookups at every power of two.

    ``world``: grow this (empty) world instead of a new one; ``all`` passes
    the world the failure scenario then continues on.
    """
    world = world if world is not None else World("hops", seed, loss=loss, progress=progress)
    k = world.config.k
    sizes = powers_of_two(min(64, nodes), nodes)
    rows: list[dict] = []

    def at_size(n: int) -> None:
        world.settle(30.0)  # let the last wave's joins and pings end
        m = measure_lookups(world, lookups)
        route = measure_routes(world, lookups)
        row = {
            "n": n,
            "log2n": math.log2(n),
            "mean": mean(m["hops"]),
            "p95": percentile(m["hops"], 95),
            "max": max(m["hops"]),
            "nearest": m["nearest_ok"] / m["count"],
            "exact": m["exact"] / m["count"],
            "queried": mean(m["queried"]),
            "latency_ms": 1000 * percentile(m["latency"], 50),
        }
        if route is not None:
            row["chord"] = mean(route["hops"])
            row["half_log2n"] = 0.5 * math.log2(n)
            row["chord_ok"] = route["ok"] / route["count"]
        rows.append(row)
        world.progress(
            f"N={n}: {row['mean']:.2f} hops, {row['nearest'] * 100:.1f}% found the nearest",
            force=True,
        )

    with tuned_gc():
        world.grow(nodes, stop_at=sizes, on_size=at_size)
    # c fitted by least squares (the model's only free constant).
    c = mean([r["mean"] - hop_model(r["n"], k, 0.0) for r in rows])
    for row in rows:
        row["model"] = hop_model(row["n"], k, c)
        row["bound"] = one_bit_bound(row["n"], k)
    columns = [
        ("n", "N"),
        ("log2n", "log2 N"),
        ("mean", "mean hops"),
        ("p95", "p95"),
        ("max", "max"),
        ("model", f"log_k(N/k)+{c:.2f}"),
        ("bound", "log2(N/k)+1"),
        ("nearest", "found nearest"),
        ("exact", "exact k closest"),
        ("queried", "requests/lookup"),
        ("latency_ms", "p50 latency ms"),
    ]
    if rows and "chord" in rows[0]:
        columns += [("chord", "Chord hops"), ("half_log2n", "1/2 log2 N"), ("chord_ok", "Chord ok")]
    report = Report(
        "hops",
        f"Lookup hops against N (k={k}, alpha={world.config.alpha})",
        seed,
        nodes,
        columns,
        rows,
        params={"k": k, "alpha": world.config.alpha, "lookups per size": lookups},
        series={"c": c, "k": k},
    )
    report.notes = [
        "hops = depth of the nearest answering node in the lookup's discovery tree"
        " (1: a contact the asker already knew).",
        f"log_k(N/k)+c is Kademlia's log_(2^b)(N/k)+c with 2^b = k: a full bucket of k random"
        f" nodes resolves ~log2 k = {math.log2(k):.1f} bits per hop; c = {c:.2f} fitted."
        " log2(N/k)+1 is the one-bit-per-hop bound (b = 1).",
        "found nearest: the lookup's first result is the true XOR-nearest node;"
        " exact: its k results are exactly the true k nearest, in order.",
        "Networks are grown by the real join in waves through 3 seed nodes; lookups are for"
        " random keys from random members, under lognormal latency (median 50 ms one way).",
    ]
    if "chord" not in (rows[0] if rows else {}):
        report.notes.append("Chord routing hops: no ring view in this core (hook chord_route).")
    for row in rows:
        if row["nearest"] < MIN_FOUND_NEAREST:
            report.failures.append(f"N={row['n']}: only {row['nearest']:.1%} found the nearest")
        if row["max"] > hop_bound(row["n"], k):
            report.failures.append(
                f"N={row['n']}: {row['max']} hops, over the bound {hop_bound(row['n'], k):.1f}"
            )
    return finish_report(world, report)
