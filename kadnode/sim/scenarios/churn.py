"""Scenario ``churn``: lookups and gets over time while nodes leave and join. No I/O but
progress on stderr.

Session lengths are Weibull (Stutzbach & Rejaie 2006); every departure (a
crash) is followed by an arrival, half of them returning hosts that rejoin
through their saved contacts, as a restarted daemon does.
"""

from __future__ import annotations

from kadnode.config import REJOIN_CONTACTS
from kadnode.core.node import NodeCore
from kadnode.sim.oracle import weibull_median
from kadnode.sim.report import Report
from kadnode.sim.world import Op, Progress, World, finish_report, settle_gc, tuned_gc
from kadnode.stats import percentile

# Session lengths: Weibull. Stutzbach & Rejaie, "Understanding Churn in
# Peer-to-Peer Networks", IMC 2006, fit session lengths of Gnutella,
# BitTorrent and Kad with Weibull shapes 0.34-0.59 (e.g. BitTorrent torrents:
# k=0.38 / lambda=42.4 min, k=0.34 / 21.3 min, k=0.59 / 41.9 min): most
# sessions last minutes, a few last days. We take shape 0.5 and scale 1 h:
# median session 60 min * (ln 2)^2 = 28.8 min, mean 2 h.
CHURN_SHAPE = 0.5
CHURN_SCALE = 3600.0
# A departure is followed by an arrival (the population stays near N):
# half are returning hosts (same id, store and saved contacts, as a
# restarted kadnode daemon), half are new hosts with a new id.
CHURN_RETURNING = 0.5
CHURN_ARRIVAL_DELAY = 60.0  # mean, exponential

# Invariant every churn run must keep (the report lists a violation, and the
# command exits 1 naming the seed): lookups for a live node's id reach it in
# at least 99 % of cases.
MIN_CHURN_LOOKUPS = 0.99


def scenario_churn(
    nodes: int,
    seed: int,
    *,
    duration: float = 7200.0,
    bucket: float = 600.0,
    values: int = 100,
    rate: float = 1.0,
    shape: float = CHURN_SHAPE,
    scale: float = CHURN_SCALE,
    loss: float = 0.0,
    progress: Progress | None = None,
) -> Report:
    """Weibull sessions; each departure is followed by an arrival.

    ``rate`` lookups and ``rate`` gets per second of simulated time, from
    random members: lookups for a random member's id (success: that node
    answered), gets for a stored value (success: found).
    """
    world = World("churn", seed, loss=loss, progress=progress)
    net, rng = world.net, world.rng
    with tuned_gc():
        world.grow(nodes)
        stored = world.put_values(values, "churn")
        world.settle(10.0)
        settle_gc()
    t0 = net.now
    seeds = {s.id for s in world.seeds}
    saved: dict[int, list] = {}  # host index -> contacts saved at departure
    offline: list[int] = []
    stats = {"departures": 0, "returns": 0, "newcomers": 0}
    joining: list[tuple[Op, NodeCore]] = []
    session = lambda: rng.weibullvariate(scale, shape)  # noqa: E731

    def depart(core: NodeCore) -> None:
        addr = core.addr  # type: ignore[attr-defined]
        i = net.index[addr]
        if addr in net.down or net.cores[i] is not core:
            return
        entries = sorted(core.table.entries(), key=lambda e: -e.last_seen)
        saved[i] = [e.contact.addr for e in entries[:REJOIN_CONTACTS]]
        net.kill([addr])
        if core in world.members:
            world.members.remove(core)
        offline.append(i)
        stats["departures"] += 1
        net.at(net.now + rng.expovariate(1 / CHURN_ARRIVAL_DELAY), arrive)

    def arrive() -> None:
        if offline and rng.random() < CHURN_RETURNING:
            i = offline.pop(rng.randrange(len(offline)))
            core = net.restart(net.addrs[i])
            contacts = saved.pop(i)
            stats["returns"] += 1
        else:
            core = net.add_node()
            contacts = []
            stats["newcomers"] += 1
        addrs = world.seed_addrs() + contacts
        op = world.begin(core, World.bootstrap_from(addrs), "join")
        joining.append((op, core))
        net.at(net.now + session(), depart, core)

    for core in world.members:
        if core.id not in seeds:
            net.at(t0 + session(), depart, core)

    buckets: list[dict] = []
    inflight: list[Op] = []
    done: list[tuple[Op, bool, float]] = []
    tick = 10.0
    per_tick = max(1, round(rate * tick))
    per_bucket = max(1, round(bucket / tick))

    def launch_lookup() -> None:
        src, target = rng.choice(world.members), rng.choice(world.members)
        if target is not src:
            start = lambda c, now, i=target.id: c.lookup(i, now)  # noqa: E731
            inflight.append(world.begin(src, start, "lookup", (target.id, target.addr)))

    def launch_get() -> None:
        key = rng.choice(stored)[0]
        start = lambda c, now, k=key: c.get(k, now)  # noqa: E731
        inflight.append(world.begin(rng.choice(world.members), start, "get"))

    with tuned_gc():
        for n in range(1, round(duration / tick) + 1):
            begin = t0 + (n - 1) * tick
            for _ in range(per_tick):
                net.at(begin + rng.uniform(0, tick), launch_lookup)
                net.at(begin + rng.uniform(0, tick), launch_get)
            net.run_until(t0 + n * tick)
            still = []
            for op in inflight:
                if world.gone(op):
                    continue  # the asker left: not the network's failure
                got = world.poll(op)
                if got is None:
                    still.append(op)
                    continue
                result, at = got
                if op.kind == "lookup":
                    target_id, target_addr = op.info
                    if target_addr in net.down:
                        continue  # the target left meanwhile: nothing to find
                    ok = result.peer is not None and result.peer.node_id == target_id
                else:
                    ok = result.found
                done.append((op, ok, at - op.started))
            inflight = still
            pending = []
            for op, core in joining:
                if world.gone(op):
                    continue
                got = world.poll(op)
                if got is None:
                    pending.append((op, core))
                    continue
                if got[0].answered == 0:
                    world.join_failures += 1
                world.members.append(core)
            joining = pending
            if n % per_bucket == 0:
                settle_gc()
                buckets.append(_churn_bucket(world, done, n * tick, stats))
                done = []
                row = buckets[-1]
                world.progress(
                    f"t={row['minute']:.0f} min: {row['alive']} alive,"
                    f" lookups {row['lookup_ok']:.1%} ok, gets {row['get_ok']:.1%} ok",
                    force=True,
                )
    columns = [
        ("minute", "minute"),
        ("alive", "alive"),
        ("departures", "left"),
        ("arrivals", "joined"),
        ("lookups", "lookups"),
        ("lookup_ok", "lookup ok"),
        ("lookup_p50_ms", "p50 ms"),
        ("lookup_p95_ms", "p95 ms"),
        ("gets", "gets"),
        ("get_ok", "get ok"),
        ("get_p50_ms", "get p50 ms"),
        ("dead", "dead contacts in tables"),
    ]
    median = weibull_median(shape, scale)
    report = Report(
        "churn",
        f"Lookups under churn ({nodes} nodes, Weibull sessions, median {median / 60:.0f} min)",
        seed,
        nodes,
        columns,
        buckets,
        params={
            "session shape": shape,
            "session scale s": scale,
            "median session min": round(median / 60, 1),
            "returning share": CHURN_RETURNING,
            "ops per s": rate,
        },
    )
    report.notes = [
        "Sessions: Weibull (Stutzbach & Rejaie, IMC 2006: shapes 0.34-0.59 across Gnutella,"
        f" BitTorrent and Kad); shape {shape}, scale {scale / 3600:.1f} h. Seed nodes stay up.",
        f"Every departure (a crash, no goodbye) is followed by an arrival within"
        f" ~{CHURN_ARRIVAL_DELAY:.0f} s: {CHURN_RETURNING:.0%} a returning host (same id and store,"
        f" rejoining through its {REJOIN_CONTACTS} most recent contacts), the rest new hosts.",
        "lookup ok: a lookup for a live member's id reached that node; get ok: a value stored"
        " at the start was found. Ops whose asker (or target) left mid-way are not counted.",
        "dead contacts in tables: share of the live nodes' routing-table entries that point at"
        " hosts that are down (each costs a timeout when asked; dropped after 3).",
    ]
    total_lookups = sum(r["lookups"] for r in buckets)
    ok_lookups = sum(r["lookup_ok"] * r["lookups"] for r in buckets)
    if total_lookups and ok_lookups / total_lookups < MIN_CHURN_LOOKUPS:
        report.failures.append(f"only {ok_lookups / total_lookups:.1%} of lookups succeeded")
    return finish_report(world, report)


def _churn_bucket(world: World, done: list, elapsed: float, stats: dict) -> dict:
    lookups = [(ok, t) for op, ok, t in done if op.kind == "lookup"]
    gets = [(ok, t) for op, ok, t in done if op.kind == "get"]
    row = {
        "minute": elapsed / 60,
        "alive": len(world.members),
        "departures": stats["departures"],
        "arrivals": stats["returns"] + stats["newcomers"],
        "lookups": len(lookups),
        "lookup_ok": sum(ok for ok, _ in lookups) / max(1, len(lookups)),
        "lookup_p50_ms": 1000 * percentile([t for _, t in lookups], 50),
        "lookup_p95_ms": 1000 * percentile([t for _, t in lookups], 95),
        "gets": len(gets),
        "get_ok": sum(ok for ok, _ in gets) / max(1, len(gets)),
        "get_p50_ms": 1000 * percentile([t for _, t in gets], 50),
        "dead": _dead_share(world),
    }
    stats["departures"] = stats["returns"] = stats["newcomers"] = 0
    return row


def _dead_share(world: World) -> float:
    """Share of routing-table entries (of live members) that point at crashed hosts."""
    down, dead, total = world.net.down, 0, 0
    for m in world.members:
        for c in m.table.contacts():
            total += 1
            dead += c.addr in down
    return dead / max(1, total)
