"""The world every scenario runs in: a seeded virtual network, its members and seeds,
growth by the real join, operations started and awaited, and the measurements
scenarios share (lookups and Chord routes, checked against the oracle).

No network I/O: everything runs on :class:`~kadnode.sim.network.SimNetwork`.
It reads the wall clock and ``/proc/self/statm`` for its run figures, prints
progress lines to stderr, and tunes the garbage collector (:func:`tuned_gc`).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from kadnode.config import Config
from kadnode.core.ids import ID_BITS
from kadnode.core.node import NodeCore
from kadnode.sim.network import PairLatency, SimNetwork
from kadnode.sim.oracle import ring_successor, xor_closest_sorted
from kadnode.sim.report import Report

# ---- parameters, with their sources -----------------------------------------

# Well-known bootstrap nodes every newcomer is configured with (Mainline DHT
# clients ship two or three, e.g. router.bittorrent.com); they stay up.
SEEDS = 3
# A network grows in waves: at most this many joins in flight at once, and
# never more newcomers than members (the network at most doubles per wave).
JOIN_BATCH = 500
# Arrivals of one wave are spread uniformly over this many seconds.
JOIN_SPREAD = 5.0

# Invariant every run must keep (a report lists each violation, and the
# command exits 1 naming the seed): random-key lookups find the nearest live
# node, also right after a mass failure, in at least 99 % of cases. (Before
# the core's soft timeouts, slow first contacts timed out and 2-4 % of
# lookups missed their nearest node under lognormal latency:
# docs/sim/README.md.)
MIN_FOUND_NEAREST = 0.99


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ---- the Chord hook ------------------------------------------------------------


def chord_route(core: NodeCore) -> Callable[[int, float], int] | None:
    """Hook for Chord-style routing: the core's ``find_successor`` when it has one.

    The ring view (``kadnode.core.ring``) adds ``NodeCore.find_successor(key,
    now)``, completing with a result that has ``successor``, ``ok`` and
    ``hops``. The hops scenario measures it beside 1/2 log2 N (Chord paper,
    section 6.3) whenever this returns a callable, and leaves the column out
    otherwise.
    """
    return getattr(core, "find_successor", None)


# ---- progress and run bookkeeping ---------------------------------------------


class Progress:
    """Progress lines on stderr, at most one per ``every`` seconds of wall time."""

    def __init__(self, name: str, enabled: bool = True, every: float = 5.0):
        self.name = name
        self.enabled = enabled
        self.every = every
        self._last = -math.inf
        self.started = time.perf_counter()

    def __call__(self, message: str, force: bool = False) -> None:
        now = time.perf_counter()
        if self.enabled and (force or now - self._last >= self.every):
            self._last = now
            print(f"[sim {self.name} {now - self.started:7.1f}s] {message}", file=sys.stderr)


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Cheaper garbage collection for millions of long-lived objects.

    The cores' routing tables live for the whole run; scanning them in every
    full collection cost a third of the run time at 1000 nodes. Young
    collections stay (lookups leave reference cycles behind); long-lived
    objects are frozen out of the scans after each join wave
    (:func:`settle_gc`). Restored on exit.
    """
    threshold = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def settle_gc() -> None:
    gc.collect()
    gc.freeze()


@dataclass
class Op:
    kind: str
    key: tuple
    started: float
    core: NodeCore
    info: object = None


class World:
    """A simulated network plus what scenarios share: members, seeds, joins, ops."""

    def __init__(
        self,
        name: str,
        seed: int,
        *,
        config: Config | None = None,
        loss: float = 0.0,
        latency: PairLatency | None = None,
        progress: Progress | None = None,
    ):
        self.name = name
        self.seed = seed
        self.net = SimNetwork(
            seed=seed,
            latency=latency if latency is not None else PairLatency(seed),
            loss=loss,
            config=config or Config(),
        )
        self.rng = random.Random(f"kadnode-sim:{name}:{seed}")
        self.members: list[NodeCore] = []  # joined and alive
        self.seeds: list[NodeCore] = []
        self.join_failures = 0
        self.progress = progress or Progress(name, enabled=False)
        self.wall0 = time.perf_counter()
        self.rss0 = rss_bytes()
        self.build_wall = 0.0
        self.build_events = 0
        self.built = 0
        self.rss_per_node = 0.0

    @property
    def config(self) -> Config:
        return self.net.config

    # -- joining --

    def seed_addrs(self) -> list:
        return [s.addr for s in self.seeds]  # type: ignore[attr-defined]

    def first_node(self) -> None:
        core = self.net.add_node()
        self.members.append(core)
        self.seeds.append(core)

    def grow(self, target: int, *, stop_at: Sequence[int] = (), on_size=None) -> None:
        """Join newcomers in waves until there are ``target`` members.

        ``on_size(n)`` is called whenever the network reaches a size in
        ``stop_at`` (waves are cut so as to land on it exactly). The build
        figures (``build_wall``, ``build_events``) leave out the time and
        events spent inside ``on_size``: they count the joins alone.
        """
        if not self.members:
            self.first_node()
        marks = sorted(s for s in stop_at if s >= len(self.members))
        t0, ev0 = time.perf_counter(), self.net.events
        measuring_wall, measuring_events = 0.0, 0  # inside on_size

        def measure(n: int) -> None:
            nonlocal measuring_wall, measuring_events
            if on_size is None:
                return
            t, ev = time.perf_counter(), self.net.events
            on_size(n)
            measuring_wall += time.perf_counter() - t
            measuring_events += self.net.events - ev

        while len(self.members) < target:
            n = len(self.members)
            if marks and marks[0] == n:
                measure(n)
                marks.pop(0)
                continue
            limit = marks[0] if marks else target
            batch = min(JOIN_BATCH, n, target - n, limit - n)
            self.join_wave(batch)
            settle_gc()
            elapsed = time.perf_counter() - t0 - measuring_wall
            joined_events = self.net.events - ev0 - measuring_events
            self.progress(
                f"{len(self.members)}/{target} nodes joined, t={self.net.now:.0f}s simulated,"
                f" {joined_events / max(elapsed, 1e-9):,.0f} events/s"
            )
        if marks and marks[0] == len(self.members):
            measure(len(self.members))
        self.build_wall += time.perf_counter() - t0 - measuring_wall
        self.build_events += self.net.events - ev0 - measuring_events
        self.built = len(self.net.cores)
        self.rss_per_node = (rss_bytes() - self.rss0) / max(1, len(self.net.cores))

    def join_wave(self, size: int) -> None:
        net = self.net
        newcomers = [net.add_node() for _ in range(size)]
        ops = self.run_ops(
            [(core, self.bootstrap_from(self.seed_addrs())) for core in newcomers], JOIN_SPREAD
        )
        for core, (result, _) in zip(newcomers, ops, strict=True):
            if result.answered == 0:
                self.join_failures += 1
            self.members.append(core)
            if len(self.seeds) < SEEDS:
                self.seeds.append(core)

    @staticmethod
    def bootstrap_from(addrs: list) -> Callable[[NodeCore, float], int]:
        return lambda core, now: core.bootstrap(addrs, now)

    # -- operations --

    def begin(self, core: NodeCore, start: Callable[[NodeCore, float], int], kind: str, info=None):
        return Op(kind, self.net.start(core, start), self.net.now, core, info)

    def gone(self, op: Op) -> bool:
        """True when the node that started ``op`` crashed (even if restarted since)."""
        net = self.net
        addr = op.key[0]
        return addr in net.down or net.cores[net.index[addr]] is not op.core

    def run_ops(
        self, starts: Sequence[tuple[NodeCore, Callable[[NodeCore, float], int]]], spread: float
    ) -> list[tuple[object, float]]:
        """Start operations spread over ``spread`` seconds; wait for all.

        Returns (result, latency in seconds) for each, in order.
        """
        net = self.net
        ops: list[Op | None] = [None] * len(starts)

        def launch(i: int) -> None:
            core, start = starts[i]
            ops[i] = self.begin(core, start, "op")

        t0 = net.now
        for i in range(len(starts)):
            net.at(t0 + self.rng.uniform(0.0, spread), launch, i)
        net.run_until(t0 + spread)
        out = []
        for op in ops:
            assert op is not None
            result, done = self.finish(op)
            out.append((result, done - op.started))
        return out

    def finish(self, op: Op, limit: float = 600.0) -> tuple[object, float]:
        return self.net.finish(op.key, limit)

    def poll(self, op: Op) -> tuple[object, float] | None:
        """The result of ``op`` if it completed, without running the network."""
        if op.key in self.net.results:
            return self.net.results.pop(op.key), self.net.done_at.pop(op.key)
        return None

    def put_values(self, count: int, prefix: str, spread: float = 10.0) -> list[tuple[bytes, int]]:
        """Store ``count`` values from random members; returns (key, publisher index)."""
        items = []
        starts = []
        for i in range(count):
            key = self.rng.getrandbits(160).to_bytes(20, "big")
            publisher = self.rng.choice(self.members)
            value = f"{prefix}-{i}"
            items.append((key, self.net.index[publisher.addr]))  # type: ignore[attr-defined]
            starts.append((publisher, lambda c, now, k=key, v=value: c.put(k, v, now)))
        self.run_ops(starts, spread)
        return items

    def settle(self, seconds: float) -> None:
        self.net.run_until(self.net.now + seconds)

    def perf(self) -> dict:
        wall = time.perf_counter() - self.wall0
        net = self.net
        return {
            "wall_s": round(wall, 1),
            "simulated_s": round(net.now, 1),
            "nodes_created": len(net.cores),
            "events": net.events,
            "events_per_s": round(net.events / max(wall, 1e-9)),
            "datagrams_delivered": net.delivered,
            "datagrams_dropped": net.dropped,
            "build_wall_s": round(self.build_wall, 1),
            "build_events_per_s": round(self.build_events / max(self.build_wall, 1e-9)),
            "events_per_join": round(self.build_events / max(1, self.built - 1)),
            "rss_per_node_kib": round(self.rss_per_node / 1024, 1),
            "join_failures": self.join_failures,
        }


def finish_report(world: World, report: Report) -> Report:
    """Stamp ``report`` with the world's run figures and trace digest."""
    report.perf = world.perf()
    report.digest = world.net.trace.hexdigest()
    return report


# ---- measurements ----------------------------------------------------------------


def measure_lookups(world: World, count: int, spread: float = 20.0) -> dict:
    """Random-key lookups from random members, checked against the truth."""
    rng, members = world.rng, world.members
    ids = sorted(m.id for m in members)
    k = world.config.k
    pairs = [(rng.choice(members), rng.getrandbits(ID_BITS)) for _ in range(count)]
    results = world.run_ops(
        [(src, lambda c, now, t=t: c.lookup(t, now)) for src, t in pairs], spread
    )
    hops, latency, queried, nearest_ok, exact = [], [], [], 0, 0
    for (src, target), (result, took) in zip(pairs, results, strict=True):
        truth = xor_closest_sorted(ids, target, k, exclude=src.id)
        got = [c.node_id for c in result.closest]
        nearest_ok += bool(got) and got[0] == truth[0]
        exact += got == truth
        hops.append(result.hops)
        latency.append(took)
        queried.append(result.queried)
    return {
        "hops": hops,
        "latency": latency,
        "queried": queried,
        "nearest_ok": nearest_ok,
        "exact": exact,
        "count": count,
    }


def measure_routes(world: World, count: int, spread: float = 20.0) -> dict | None:
    """Chord routing through the hook, checked against the true successor."""
    members = world.members
    if chord_route(members[0]) is None:
        return None
    rng = world.rng
    ids = sorted(m.id for m in members)
    pairs = [(rng.choice(members), rng.getrandbits(ID_BITS)) for _ in range(count)]
    results = world.run_ops(
        [(src, lambda c, now, key=key: chord_route(c)(key, now)) for src, key in pairs], spread
    )
    hops, ok = [], 0
    for (src, key), (result, _) in zip(pairs, results, strict=True):
        owner = result.successor.node_id if result.successor is not None else src.id
        ok += bool(result.ok) and owner == ring_successor(ids, key)
        hops.append(result.hops)
    return {"hops": hops, "ok": ok, "count": count}
