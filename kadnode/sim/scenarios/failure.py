"""Scenario ``failure``: a fraction p of the nodes fails at once. I/O: forks (one child per p).

Lookups and gets from the survivors right after the failure, before any
repair, beside the Chord paper's fig. 11 (without replication, failures ~ p),
then again one replication round later. Each p runs in a forked copy of the
grown network (:func:`kadnode.sim.fork.forked_map`), so every p starts from
the same state; progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from kadnode.config import Config
from kadnode.sim.fork import forked_map
from kadnode.sim.oracle import xor_closest, xor_closest_sorted
from kadnode.sim.report import Report
from kadnode.sim.world import (
    MIN_FOUND_NEAREST,
    Progress,
    World,
    measure_lookups,
    settle_gc,
    tuned_gc,
)
from kadnode.stats import mean, percentile

# The failure scenario shortens the replicate interval so that one full
# replication round fits in the run (everything else stays at defaults).
FAILURE_REPLICATE_INTERVAL = 600.0
FAILURE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)


def scenario_failure(
    nodes: int,
    seed: int,
    *,
    fractions: Sequence[float] = FAILURE_FRACTIONS,
    values: int = 200,
    lookups: int = 300,
    repair: bool = True,
    workers: int = 2,
    loss: float = 0.0,
    progress: Progress | None = None,
    world: World | None = None,
) -> Report:
    if world is None:
        world = World(
            "failure",
            seed,
            config=Config(replicate_interval=FAILURE_REPLICATE_INTERVAL),
            loss=loss,
            progress=progress,
        )
        with tuned_gc():
            world.grow(nodes)
    with tuned_gc():
        stored = world.put_values(values, "failure")
        world.settle(30.0)
        settle_gc()
    k = world.config.k
    ids = [m.id for m in world.members]
    holders_before = [
        sum(1 for m in world.members if m.store.get(key) is not None) for key, _ in stored
    ]
    closest_before = [xor_closest(ids, int.from_bytes(key, "big"), k) for key, _ in stored]
    world.progress(f"{values} values stored on {mean(holders_before):.1f} nodes each", force=True)

    def one(p: float) -> dict:
        world.progress.name = f"failure p={p}"
        return _failure_run(world, p, stored, closest_before, lookups, repair)

    with tuned_gc():
        outcomes = forked_map(one, list(fractions), workers)
    rows = []
    events = world.net.events
    for p, out in zip(fractions, outcomes, strict=True):
        events += out["events"]
        rows.append({"p": p, **out["row"]})
    columns = [
        ("p", "p failed"),
        ("killed", "nodes failed"),
        ("lookup_fail", "lookup failures"),
        ("exact", "exact k closest"),
        ("get_fail", "get failures"),
        ("primary_lost", "no replication (p)"),
        ("all_lost", "all k replicas lost"),
        ("near", "k nearest live holding"),
        ("replicas", "live replicas"),
        ("lookup_ms", "p50 lookup ms"),
        ("lookup_p95_ms", "p95 lookup ms"),
    ]
    if repair:
        columns += [
            ("get_fail_after", "get failures after"),
            ("near_after", "k nearest holding after"),
        ]
    report = Report(
        "failure",
        f"Mass failure of a fraction p of {nodes} nodes (k={k})",
        seed,
        nodes,
        columns,
        rows,
        params={
            "k": k,
            "values": values,
            "lookups per p": lookups,
            "replicate interval s": world.config.replicate_interval,
        },
    )
    report.notes = [
        "All failures at one instant; lookups and gets start right after, from survivors, before"
        " any repair. lookup failures: the first result is not the nearest live node.",
        "no replication (p): share of values whose single closest node failed, what a store"
        " without replication loses (Chord paper, fig. 11: failed lookups ~ p).",
        f"all k replicas lost: values none of whose k={k} closest nodes survived (~p^k).",
        "live replicas: surviving nodes holding each value (mean; caching puts copies beyond"
        f" the k nearest); k nearest live holding: how many of each value's k={k} nearest"
        " live nodes hold it, i.e. where a get looks first.",
    ]
    if repair:
        report.notes.append(
            f"after: one replication round later ({world.config.replicate_interval:.0f} s; the"
            " replicate interval is shortened from 3600 s so the round fits in the run)."
        )
    for row in rows:
        if row["all_lost"] == 0 and row["get_fail"] > 0:
            report.failures.append(f"p={row['p']}: {row['get_fail']:.1%} gets failed")
        if row["lookup_fail"] > 1 - MIN_FOUND_NEAREST:
            report.failures.append(f"p={row['p']}: {row['lookup_fail']:.1%} lookups failed")
    perf = world.perf()
    perf["events"] = events
    # The parent's events and its forked children's together, over the
    # parent's wall time: up to ``workers`` children ran at once, so this is
    # the rate of all of them combined, not one process's.
    perf["events_per_s"] = round(events / max(perf["wall_s"], 1e-9))
    report.perf = {
        ("events_per_s_all_workers" if key == "events_per_s" else key): value
        for key, value in perf.items()
    }
    digests = [out["digest"] for out in outcomes]
    report.digest = _combine([world.net.trace.hexdigest(), *digests])
    report.series = {"digests": dict(zip(map(str, fractions), digests, strict=True))}
    return report


def _near_holders(world: World, stored: list[tuple[bytes, int]]) -> float:
    """Mean number of each value's k nearest live nodes that hold it."""
    ids = sorted(m.id for m in world.members)
    by_id = {m.id: m for m in world.members}
    k = world.config.k
    return mean(
        [
            sum(
                1
                for i in xor_closest_sorted(ids, int.from_bytes(key, "big"), k)
                if by_id[i].store.get(key) is not None
            )
            for key, _ in stored
        ]
    )


def _combine(digests: Sequence[str]) -> str:
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _failure_run(
    world: World,
    p: float,
    stored: list[tuple[bytes, int]],
    closest_before: list[list[int]],
    lookups: int,
    repair: bool,
) -> dict:
    net = world.net
    world.rng = random.Random(f"kadnode-sim:failure:{world.seed}:{p}")
    events0 = net.events
    victims = net.fail(p, among=world.members, rng=world.rng)
    dead = {v.id for v in victims}
    world.members = [m for m in world.members if m.id not in dead]
    # Immediately: lookups and gets from survivors.
    m = measure_lookups(world, lookups, spread=10.0)
    gets = world.run_ops(
        [
            (world.rng.choice(world.members), lambda c, now, key=key: c.get(key, now))
            for key, _ in stored
        ],
        10.0,
    )
    get_fail = sum(1 for result, _ in gets if not result.found) / len(stored)
    primary_lost = sum(1 for c in closest_before if c[0] in dead) / len(stored)
    all_lost = sum(1 for c in closest_before if all(i in dead for i in c)) / len(stored)
    replicas = mean(
        [sum(1 for mm in world.members if mm.store.get(key) is not None) for key, _ in stored]
    )
    near = _near_holders(world, stored)
    row = {
        "killed": len(victims),
        "lookup_fail": 1 - m["nearest_ok"] / m["count"],
        "exact": m["exact"] / m["count"],
        "get_fail": get_fail,
        "primary_lost": primary_lost,
        "all_lost": all_lost,
        "replicas": replicas,
        "near": near,
        "lookup_ms": 1000 * percentile(m["latency"], 50),
        "lookup_p95_ms": 1000 * percentile(m["latency"], 95),
    }
    world.progress(
        f"lookups {row['lookup_fail']:.1%} failed, gets {get_fail:.1%} failed", force=True
    )
    if repair:
        world.settle(world.config.replicate_interval + 60.0)
        gets = world.run_ops(
            [
                (world.rng.choice(world.members), lambda c, now, key=key: c.get(key, now))
                for key, _ in stored
            ],
            10.0,
        )
        row["get_fail_after"] = sum(1 for result, _ in gets if not result.found) / len(stored)
        row["near_after"] = _near_holders(world, stored)
    return {"row": row, "events": net.events - events0, "digest": net.trace.hexdigest()}
