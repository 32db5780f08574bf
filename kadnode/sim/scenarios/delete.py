"""Scenario ``delete``: deletes that must stay deleted. No I/O but progress on stderr.

Signed values, shared values and a peer record are written and replicated;
some of their replicas crash; the network splits in two halves; on one half
the owner deletes its signed values (signed tombstones), a node deletes the
shared values (tombstones with the context it read) and a registered node
leaves (its record's tombstone). Then the network heals, the crashed
replicas come back with the old versions on their disks, and newcomers join
next to the keys (the join hand-off). Every probe after the heal reads each
key from a random node and counts the nodes still holding an old version.

What must hold: no read after the heal returns a deleted value, and by the
end no node holds an old version: the tombstones reach the other half, the
restarted replicas and the newcomers by read repair, anti-entropy and the
hand-off, and none of those paths brings the old version back.
"""

from __future__ import annotations

import heapq

from kadnode.core import kinds, signed
from kadnode.core.identity import Identity
from kadnode.core.messages import Kind
from kadnode.core.node import NodeCore
from kadnode.core.vclock import context, to_wire
from kadnode.sim.report import Report
from kadnode.sim.world import Progress, World, finish_report, tuned_gc

LABELS = {Kind.SIGNED: "signed value", Kind.SHARED: "shared value", Kind.PEER: "peer record"}


def scenario_delete(
    nodes: int,
    seed: int,
    *,
    keys: int = 20,
    crashed: int = 10,
    newcomers: int = 10,
    split_for: float = 600.0,
    watch_for: float = 900.0,
    probe_every: float = 60.0,
    loss: float = 0.0,
    progress: Progress | None = None,
) -> Report:
    """``keys`` signed and ``keys`` shared values and one peer record,
    deleted on one side of a split lasting ``split_for`` seconds; watched
    for ``watch_for`` seconds after the heal."""
    world = World("delete", seed, loss=loss, progress=progress)
    net, rng = world.net, world.rng
    with tuned_gc():
        world.grow(nodes)
        owner, leaver = _signer(world, "owner"), _signer(world, "leaver")
        world.run_ops(
            [(owner, lambda c, now, i=i: c.put_signed(f"v{i}", 1, f"s{i}".encode(), now))
             for i in range(keys)], 10.0)  # fmt: skip
        shared = [rng.getrandbits(160).to_bytes(20, "big") for _ in range(keys)]
        world.run_ops(
            [(rng.choice(world.members), lambda c, now, k=key: c.put_shared(k, "v", None, now))
             for key in shared], 10.0)  # fmt: skip
        world.run_ops([(leaver, lambda c, now: c.register(now))], 1.0)
        world.settle(30.0)
    owned = [(signed.target(owner.identity.public_key, f"s{i}".encode()), Kind.SIGNED)
             for i in range(keys)]  # fmt: skip
    tracked = [*owned, *((key, Kind.SHARED) for key in shared), (leaver.id_bytes, Kind.PEER)]

    # Replicas that will miss the deletes: holders of the keys, crashed now.
    holders = [m for m in world.members if m not in (owner, leaver) and _holds(m, tracked)]
    down = rng.sample(holders, min(crashed, len(holders)))
    net.kill(m.addr for m in down)  # type: ignore[attr-defined]
    alive = [m for m in world.members if m not in down]
    rest = [m for m in alive if m not in (owner, leaver)]
    rng.shuffle(rest)
    side_a = [owner, leaver, *rest[: len(rest) // 2]]
    side_b = rest[len(rest) // 2 :]
    deleter = side_a[2]
    split_at = net.now
    net.partition([[m.addr for m in side_a], [m.addr for m in side_b]])  # type: ignore[attr-defined]
    world.members = side_a
    with tuned_gc():
        world.run_ops(
            [(owner, lambda c, now, i=i: c.put_signed(None, 2, f"s{i}".encode(), now))
             for i in range(keys)], 10.0)  # fmt: skip
        reads = world.run_ops(
            [(deleter, lambda c, now, k=key: c.read(k, Kind.SHARED, now)) for key in shared], 10.0
        )
        world.run_ops(
            [
                (
                    deleter,
                    lambda c, now, k=key, p=read.payload: c.put_shared(k, None, _seen(p), now),
                )
                for key, (read, _) in zip(shared, reads, strict=True)
            ],
            10.0,
        )
        world.run_ops([(leaver, lambda c, now: c.leave(now))], 1.0)
        net.kill([leaver.addr])  # type: ignore[attr-defined]
        world.members = side_b
        during = _probe(world, tracked, side_b)
        world.settle(max(0.0, split_at + split_for - net.now))
        net.heal()
        healed_at = net.now
        world.members = [m for m in alive if m is not leaver]
        # The crashed replicas come back on their old stores, and rejoin.
        back = [net.restart(m.addr) for m in down]  # type: ignore[attr-defined]
        world.run_ops([(c, world.bootstrap_from(world.seed_addrs())) for c in back], 5.0)
        world.members += back
        # Newcomers whose ids sit next to the keys: the join hand-off's case.
        joiners = []
        for i in range(newcomers):
            key = int.from_bytes(tracked[i % len(tracked)][0], "big")
            joiners.append(net.add_node(node_id=key ^ rng.getrandbits(100)))
        world.run_ops([(c, world.bootstrap_from(world.seed_addrs())) for c in joiners], 5.0)
        world.members += joiners
        timeline = [{"t": 0.0, **during, "phase": "split, side B"}]
        while net.now < healed_at + watch_for - 1e-9:
            world.settle(probe_every)
            row = _probe(world, tracked, world.members)
            timeline.append({"t": net.now - healed_at, **row, "phase": "healed"})
            world.progress(
                f"healed +{net.now - healed_at:.0f}s: {row['stale']} old copies on replicas,"
                f" {row['live_reads']} reads returned a deleted value"
            )
    return _report(world, nodes, seed, keys, tracked, timeline, joiners, split_for, watch_for)


def _signer(world: World, name: str) -> NodeCore:
    """A member with an ed25519 identity (its id derived from the key), joined."""
    me = Identity.from_seed(world.rng.randbytes(32))
    core = world.net.add_node(node_id=me.node_id)
    core.identity = me
    core.addresses = (core.addr,)  # type: ignore[attr-defined]
    world.run_ops([(core, world.bootstrap_from(world.seed_addrs()))], 1.0)
    world.members.append(core)
    return core


def _seen(payload: object) -> list:
    return to_wire(context(kinds.siblings_from_wire(payload)))


def _holds(node: NodeCore, tracked: list[tuple[bytes, Kind]]) -> bool:
    return any(node.store.get(key) is not None for key, _ in tracked)


def _probe(world: World, tracked: list[tuple[bytes, Kind]], among: list[NodeCore]) -> dict:
    """Copies held, tombstones and old versions (on the key's k closest, and
    elsewhere), and one read of each key from a random node of ``among``."""
    stale = elsewhere = tombstones = 0
    k = world.config.k
    for key, kind in tracked:
        target = int.from_bytes(key, "big")
        replicas = {n.id for n in heapq.nsmallest(k, among, key=lambda n: n.id ^ target)}
        for node in among:
            record = node.store.get(key)
            if record is None or record.kind != kind:
                continue
            if kinds.deleted(kind, record.value):
                tombstones += 1
            elif node.id in replicas:
                stale += 1
            else:
                elsewhere += 1
    readers = [world.rng.choice(among) for _ in tracked]
    results = world.run_ops(
        [(r, lambda c, now, k=key, kd=kind: c.read(k, kd, now))
         for r, (key, kind) in zip(readers, tracked, strict=True)], 5.0)  # fmt: skip
    live = sum(
        1
        for (result, _), (_, kind) in zip(results, tracked, strict=True)
        if result.found and not kinds.deleted(kind, result.payload)
    )
    return {
        "tombstones": tombstones,
        "stale": stale,
        "elsewhere": elsewhere,
        "live_reads": live,
        "reads": len(tracked),
    }


def _report(world, nodes, seed, keys, tracked, timeline, joiners, split_for, watch_for) -> Report:
    healed = [r for r in timeline if r["phase"] == "healed"]
    clean = next((r["t"] for r in healed if r["stale"] == 0), None)
    handed = sum(
        1
        for j in joiners
        for key, kind in tracked
        if (rec := j.store.get(key)) is not None
        and rec.kind == kind
        and kinds.deleted(kind, rec.value)
    )
    old_at_joiners = sum(
        1
        for j in joiners
        for key, kind in tracked
        if (rec := j.store.get(key)) is not None
        and rec.kind == kind
        and not kinds.deleted(kind, rec.value)
    )
    stats = {name: sum(c.stats[name] for c in world.net.alive()) for name in ("read_repairs",)}
    report = Report(
        "delete",
        f"Deletes through a {split_for / 60:.0f}-min split, replica restarts and joins,"
        f" {nodes} nodes",
        seed,
        nodes,
        [
            ("phase", "phase"),
            ("t", "s since heal"),
            ("tombstones", "tombstones held"),
            ("stale", "old versions on replicas"),
            ("elsewhere", "old versions elsewhere"),
            ("live_reads", "reads returning a deleted value"),
            ("reads", "reads"),
        ],
        timeline,
        params={
            "signed values": keys,
            "shared values": keys,
            "peer records": 1,
            "split s": split_for,
            "watched after heal s": watch_for,
        },
        series={"timeline": timeline},
    )
    report.notes = [
        f"{keys} signed values (one owner), {keys} shared values (random writers) and one"
        " peer record are written; then replicas holding them crash, the network splits in"
        " two random halves, and on the owner's half every one is deleted: signed"
        " tombstones, shared tombstones with the context a read there returned, and the"
        " record's tombstone as its node leaves.",
        "Side B never sees the deletes while split: its reads return the old versions"
        " (the first row). At the heal the crashed replicas restart on their old stores"
        f" and rejoin, and {len(joiners)} newcomers join with ids next to the keys.",
        "old versions on replicas: copies of a deleted key that are not its tombstone, on"
        " its k closest live nodes (whom reads and anti-entropy reach); elsewhere: on nodes"
        " beyond them (side B's read repairs while split, copies written before newcomers or"
        " restarted nodes moved nearer, a shared value's writer's own copy). A copy elsewhere"
        " never wins a read that meets a tombstone; a replica's copy expires unless renewed,"
        " and each renewal, a writer's republish included, renews the tombstone that"
        " supersedes it too.",
        f"The newcomers hold {handed} tombstones and {old_at_joiners} old versions at the end;"
        f" read repairs sent in the whole run: {stats['read_repairs']}.",
        "No old version on any replica after "
        + (f"{clean:.0f} s." if clean is not None else f"the watch ({watch_for:.0f} s)."),
    ]
    if any(r["live_reads"] for r in healed):
        report.failures.append("a read after the heal returned a deleted value")
    if healed and healed[-1]["stale"]:
        report.failures.append(f"{healed[-1]['stale']} old versions still held at the end")
    return finish_report(world, report)
