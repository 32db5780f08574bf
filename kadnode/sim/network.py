"""A virtual network and clock for node cores. No real I/O.

Many :class:`~kadnode.core.node.NodeCore` instances exchange their real wire
datagrams through one event queue on one virtual clock. The protocol code
runs unchanged; only the network is simulated:

* latency: a constant, any ``f(rng)``, or :class:`PairLatency` (a fixed base
  delay per pair of hosts drawn from a lognormal, plus per-datagram jitter);
* loss: each datagram is dropped with probability ``loss``;
* partitions: :meth:`SimNetwork.partition` puts hosts in groups and drops
  every datagram between groups until :meth:`SimNetwork.heal`;
* crashes: a host in ``down`` neither sends, receives nor wakes up;
  :meth:`SimNetwork.fail` crashes a random fraction at one instant (mass
  failure); :meth:`SimNetwork.restart` brings one back as a new process
  with the same identity and store (a daemon restarted on its SQLite file);
  churn (Weibull sessions) is scripted on top, in :mod:`kadnode.sim.scenarios.churn`;
* clock skew: with ``clock_skew > 0`` every node's clock runs at its own
  rate (``1 +- clock_skew``) from its own offset; or ``clock_for(index)``
  gives each new host its clock, ``(offset, rate)``, read as ``offset +
  rate * now`` from its start on (a machine booted with a wrong clock:
  :mod:`kadnode.sim.scenarios.skew`); cores only ever see their local time.

Seeded and deterministic (pebble / FoundationDB style): one seed replays the
same run, datagram for datagram. ``trace`` is a SHA-256 over every delivered
datagram (time, source, destination, bytes) and every completed operation
(time, node, operation id and its result's values: :func:`behaviour`); two
runs with the same seed end with the same ``trace.hexdigest()``. Nothing in
it depends on a Python name or repr, so moving or renaming a class leaves it
unchanged: only what the nodes did can change it.

An optional ``observer(now, src, dest, data, delivered)`` sees every datagram
as it is delivered (``delivered`` True) or dropped (False; ``dest`` is None
for an address outside the network); it only watches, so the run and its
trace are the same with or without one (:mod:`kadnode.sim.script` prints
stories with it).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from statistics import NormalDist

from kadnode.config import Config
from kadnode.core.events import OperationCompleted
from kadnode.core.messages import Addr
from kadnode.core.node import NodeCore
from kadnode.core.store import MemoryStore

DATAGRAM, TIMER, CALL = 0, 1, 2
INF = math.inf
_M64 = (1 << 64) - 1
_TRACE_HEADER = struct.Struct("<dII")
_EVENT_HEADER = struct.Struct("<dIQ")


def behaviour(value: object) -> object:
    """A result as plain values (tuples of numbers, text and bytes), nothing
    named: dataclasses by their fields in order, enums by their values,
    dicts and sets sorted. Its ``repr`` is the same in any Python process."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, Enum):
        return behaviour(value.value)
    if is_dataclass(value):
        return tuple(behaviour(getattr(value, f.name)) for f in fields(value) if f.repr)
    if isinstance(value, dict):
        return tuple(sorted((behaviour(k), behaviour(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(behaviour(v) for v in value)
    if isinstance(value, frozenset | set):
        return tuple(sorted(behaviour(v) for v in value))
    raise TypeError(f"no behaviour digest for {type(value).__name__}")


# The latency model's defaults. A 50 ms median one-way delay (100 ms RTT) is
# the usual figure for paths between random Internet hosts; inter-host
# delays are skewed with a long tail, modelled here as lognormal (as in the
# King measurements of DNS-server pairs, Gummadi et al., IMW 2002, used by
# p2psim and most DHT simulators). sigma 0.5 puts 80 % of pairs between
# 26 and 95 ms one way.
LATENCY_MEDIAN = 0.050
LATENCY_SIGMA = 0.5
# Queueing jitter on top of the base delay: exponential, mean 10 % of base.
LATENCY_JITTER = 0.10


class PairLatency:
    """One-way delay = base(src, dest) + jitter.

    The base delay of each unordered pair of hosts is fixed for the whole run
    (so the cores' per-contact RTT estimators see a stable path) and drawn
    from a lognormal by hashing the pair with the seed: nothing is stored
    per pair, so 10,000 hosts cost no memory here. Jitter is exponential
    with a mean of ``jitter`` times the base, drawn from the wire rng, so
    datagrams between one pair may be reordered, as on the Internet.
    """

    TABLE_BITS = 16

    def __init__(
        self,
        seed: int,
        median: float = LATENCY_MEDIAN,
        sigma: float = LATENCY_SIGMA,
        jitter: float = LATENCY_JITTER,
    ):
        self.median = median
        self.sigma = sigma
        self.jitter = jitter
        self._salt = random.Random(seed ^ 0x5EED1A7E).getrandbits(64)
        n = 1 << self.TABLE_BITS
        normal = NormalDist()
        # Quantiles of the lognormal at (i + 1/2)/n: a lookup table instead of
        # an inverse CDF per datagram.
        self._table = [median * math.exp(sigma * normal.inv_cdf((i + 0.5) / n)) for i in range(n)]
        self._mask = n - 1

    def base(self, a: int, b: int) -> float:
        """The fixed one-way delay between hosts number ``a`` and ``b``."""
        if a > b:
            a, b = b, a
        h = (a * 0x9E3779B97F4A7C15 + b * 0xC2B2AE3D27D4EB4F + self._salt) & _M64
        h ^= h >> 31
        h = (h * 0xBF58476D1CE4E5B9) & _M64
        h ^= h >> 29
        return self._table[h & self._mask]

    def __call__(self, a: int, b: int, rng: random.Random) -> float:
        base = self.base(a, b)
        if self.jitter <= 0:
            return base
        return base + rng.expovariate(1.0 / (self.jitter * base))


def _constant_latency(_rng: random.Random) -> float:
    return 0.01


# How long the simulator's NATs keep a mapping open after the host's last
# datagram out: Linux's nf_conntrack_udp_timeout_stream (120 s), for a flow
# that has seen replies.
SIM_NAT_MAPPING = 120.0


@dataclass
class SimNetwork:
    seed: int = 0
    # A PairLatency, or any f(rng) -> seconds (the old interface).
    latency: PairLatency | Callable[[random.Random], float] = _constant_latency
    loss: float = 0.0
    config: Config = field(default_factory=Config)
    now: float = 0.0
    clock_skew: float = 0.0  # max relative clock rate error, e.g. 1e-4 = 100 ppm
    # Each new host's clock, (offset s, rate), by its index; instead of the
    # random draw of clock_skew. None: true time (or that draw).
    clock_for: Callable[[int], tuple[float, float]] | None = None
    observer: Callable[[float, int, int | None, bytes, bool], None] | None = None

    def __post_init__(self) -> None:
        # One stream for everything (ids, node rngs, loss, jitter), drawn in
        # the same order as earlier versions of this module, so seeded tests
        # keep their networks.
        self.rng = random.Random(self.seed)
        self.cores: list[NodeCore] = []
        self.addrs: list[Addr] = []
        self.index: dict[Addr, int] = {}
        self.down: set[Addr] = set()
        self.results: dict[tuple[Addr, int], object] = {}
        self.done_at: dict[tuple[Addr, int], float] = {}
        self._forget: set[tuple[Addr, int]] = set()
        self._group: list[int] | None = None
        self._queue: list[tuple] = []  # (time, seq, kind, a, b, c)
        self._seq = 0
        self._wake: list[float] = []  # earliest live wake-up queued per node
        self._rate: list[float] = []
        self._offset: list[float] = []
        self._last_local: list[float] = []
        # NAT (add_node's ``nat``): the address each host's datagrams arrive
        # from (its mapping, behind NAT); mapped address -> host; and each NATed
        # host's pinholes, (host, remote address) -> last datagram out.
        self.seen_as: list[Addr] = []
        self.mapped: dict[Addr, int] = {}
        self.cones: dict[int, str] = {}
        self.holes: dict[tuple[int, Addr], float] = {}
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self.timers = 0
        self.calls = 0
        self.trace = hashlib.sha256()
        self.set_latency(self.latency)

    def set_latency(self, latency: PairLatency | Callable[[random.Random], float]) -> None:
        self.latency = latency
        if isinstance(latency, PairLatency):
            self._delay = latency
        else:
            self._delay = lambda _a, _b, rng: latency(rng)

    # ---- hosts -------------------------------------------------------------------

    def add_node(
        self, node_id: int | None = None, store=None, nat: str | None = None, cone: str = "port"
    ) -> NodeCore:
        """A host with a node. Each host has its own /24, as on the internet:
        the per-subnet limits of kadnode.core.routing and kadnode.core.limits
        apply as they would. ``nat``: the host sits behind a NAT whose public
        address is ``nat``; its datagrams leave from a port of its own there,
        and (``cone`` "port", as Linux MASQUERADE behaves) only datagrams from
        an address it sent to in the last SIM_NAT_MAPPING seconds come back in;
        "full": anything sent to its mapping does (a forwarded port). Nobody
        outside reaches its private address."""
        index = len(self.cores)
        addr = (f"{10 + (index >> 16)}.{index >> 8 & 255}.{index & 255}.1", 4000)
        node_id = self.rng.getrandbits(160) if node_id is None else node_id
        if self.clock_for is not None:
            offset, rate = self.clock_for(index)
        elif self.clock_skew > 0:
            rate = 1.0 + self.rng.uniform(-self.clock_skew, self.clock_skew)
            offset = self.rng.uniform(0.0, 1e6)
        else:
            rate, offset = 1.0, 0.0
        self._rate.append(rate)
        self._offset.append(offset)
        self._last_local.append(-INF)
        self._wake.append(INF)
        self.addrs.append(addr)
        self.index[addr] = index
        if nat is None:
            self.seen_as.append(addr)
        else:
            mapped = (nat, 40000 + index)
            self.seen_as.append(mapped)
            self.mapped[mapped] = index
            self.cones[index] = cone
        self.cores.append(None)  # type: ignore[arg-type]
        if self._group is not None:
            self._group.append(0)
        core = self._new_core(index, node_id, store if store is not None else MemoryStore())
        return core

    def _new_core(self, index: int, node_id: int, store) -> NodeCore:
        addr = self.addrs[index]
        core = NodeCore(
            node_id,
            store,
            config=self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.local_time(index),
        )
        core.addr = addr  # type: ignore[attr-defined]
        self.cores[index] = core
        self._wake[index] = INF
        self._flush(index)
        return core

    def restart(self, addr: Addr, store=None) -> NodeCore:
        """Bring a host back as a new process: same id and store, empty memory.

        What a daemon restarted on its data file is: it keeps its identity
        and values, loses its routing table and requests in flight (the
        caller rejoins it, e.g. from the contacts it saved).
        """
        index = self.index[addr]
        old = self.cores[index]
        self.down.discard(addr)
        # The new process numbers its operations from 1 again: forget what
        # the old one left behind, so no result is taken for another's.
        for key in [key for key in self.results if key[0] == addr]:
            del self.results[key]
            self.done_at.pop(key, None)
        self._forget = {key for key in self._forget if key[0] != addr}
        return self._new_core(index, old.id, old.store if store is None else store)

    def kill(self, addrs: Iterable[Addr]) -> None:
        """Crash hosts: from now on they neither send, receive nor wake up."""
        self.down.update(addrs)

    def fail(
        self,
        fraction: float,
        among: list[NodeCore] | None = None,
        rng: random.Random | None = None,
    ) -> list[NodeCore]:
        """Mass failure: crash a random ``fraction`` of ``among`` (default: the live
        nodes) at one instant; returns the victims."""
        pool = self.alive() if among is None else among
        victims = (rng or self.rng).sample(pool, round(fraction * len(pool)))
        self.kill(v.addr for v in victims)  # type: ignore[attr-defined]
        return victims

    def alive(self) -> list[NodeCore]:
        down = self.down
        return [c for c, a in zip(self.cores, self.addrs, strict=True) if a not in down]

    @property
    def local_clocks(self) -> bool:
        """Whether hosts' clocks differ from the network's (``now``)."""
        return self.clock_skew > 0 or self.clock_for is not None

    def local_time(self, index: int) -> float:
        """What host ``index``'s clock reads now (never going backwards)."""
        if not self.local_clocks:
            return self.now
        local = self._offset[index] + self.now * self._rate[index]
        if local < self._last_local[index]:
            local = self._last_local[index]
        self._last_local[index] = local
        return local

    # ---- partitions ------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[Addr]]) -> None:
        """Drop every datagram between hosts of different groups.

        Hosts not named in any group form group 0 together.
        """
        group = [0] * len(self.cores)
        for number, members in enumerate(groups, start=1):
            for addr in members:
                group[self.index[addr]] = number
        self._group = group

    def heal(self) -> None:
        self._group = None

    # ---- the event loop -------------------------------------------------------

    def _push(self, at: float, kind: int, a: object, b: object = None, c: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b, c))

    def at(self, when: float, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (scenario scripting)."""
        self._push(max(when, self.now), CALL, fn, args)

    def flush(self, addr: Addr) -> None:
        """Collect what a node decided: datagrams, events, its next timer."""
        self._flush(self.index[addr])

    def _flush(self, i: int) -> None:
        core = self.cores[i]
        out = core.datagrams_to_send()
        if out:
            now = self.now
            src = self.addrs[i]
            self.sent += len(out)
            down = self.down
            observer = self.observer
            if src in down:
                self.dropped += len(out)
                if observer is not None:
                    for data, dest in out:
                        observer(now, i, self.index.get(dest), data, False)
            else:
                index, loss, wire, group = self.index, self.loss, self.rng, self._group
                delay, queue = self._delay, self._queue
                for data, dest in out:
                    j = self._route(i, dest) if self.mapped else index.get(dest)
                    if (
                        j is None
                        or dest in down
                        or wire.random() < loss
                        or (group is not None and group[i] != group[j])
                    ):
                        self.dropped += 1
                        if observer is not None:
                            observer(now, i, j, data, False)
                        continue
                    self._seq += 1
                    heapq.heappush(
                        queue, (now + delay(i, j, wire), self._seq, DATAGRAM, data, i, j)
                    )
        event = core.next_event()
        if event is not None:
            addr = self.addrs[i]
            while event is not None:
                assert isinstance(event, OperationCompleted)
                key = (addr, event.op_id)
                self.trace.update(_EVENT_HEADER.pack(self.now, i, event.op_id))
                self.trace.update(repr(behaviour(event.result)).encode())
                if key in self._forget:
                    self._forget.discard(key)
                else:
                    self.results[key] = event.result
                    self.done_at[key] = self.now
                event = core.next_event()
        timer = core.get_timer()
        at = (timer - self._offset[i]) / self._rate[i] if self.local_clocks else timer
        if at < self._wake[i]:
            self._wake[i] = at
            self._push(at if at > self.now else self.now, TIMER, i, at, timer)

    def _route(self, i: int, dest: Addr) -> int | None:
        """The host a datagram from host ``i`` to ``dest`` reaches through the
        NATs (add_node), if any; it opens ``i``'s pinhole towards ``dest``."""
        if i in self.cones:
            self.holes[(i, dest)] = self.now
        j = self.mapped.get(dest)
        if j is not None:
            if self.cones[j] == "full":
                return j
            opened = self.holes.get((j, self.seen_as[i]))
            return j if opened is not None and self.now - opened < SIM_NAT_MAPPING else None
        j = self.index.get(dest)
        if j is not None and j in self.cones and self.seen_as[i][0] != self.seen_as[j][0]:
            return None  # a private address, from outside its NAT
        return j

    def step(self) -> bool:
        if not self._queue:
            return False
        at, _, kind, a, b, c = heapq.heappop(self._queue)
        if at > self.now:
            self.now = at
        if kind == DATAGRAM:
            src, dest = b, c
            observer = self.observer
            if self.addrs[dest] in self.down:
                self.dropped += 1
                if observer is not None:
                    observer(self.now, src, dest, a, False)
                return True
            self.delivered += 1
            if observer is not None:
                observer(self.now, src, dest, a, True)
            self.trace.update(_TRACE_HEADER.pack(self.now, src, dest))
            self.trace.update(a)
            local = self.local_time(dest) if self.local_clocks else self.now
            self.cores[dest].receive_datagram(a, self.seen_as[src], local)
            self._flush(dest)
        elif kind == TIMER:
            i = a
            if self._wake[i] != b:
                return True  # superseded by an earlier wake-up
            self._wake[i] = INF
            if self.addrs[i] in self.down:
                return True
            self.timers += 1
            if not self.local_clocks:
                local = self.now
            else:  # never wake a core before the time it asked for
                local = self.local_time(i)
                if local < c:
                    local = self._last_local[i] = c
            self.cores[i].handle_timer(local)
            self._flush(i)
        else:
            self.calls += 1
            a(*b)
        return True

    @property
    def events(self) -> int:
        """Events processed so far: datagrams delivered, timers fired, calls run."""
        return self.delivered + self.timers + self.calls

    def run_until(self, t: float) -> None:
        queue, step = self._queue, self.step
        while queue and queue[0][0] <= t:
            step()
        if t > self.now:
            self.now = t

    # ---- operations ------------------------------------------------------------

    def start(
        self, core: NodeCore, begin: Callable[[NodeCore, float], int], keep: bool = True
    ) -> tuple[Addr, int]:
        """Start an operation on ``core`` now; returns the key its result will have.

        With ``keep=False`` the result is not kept (background traffic).
        """
        addr = core.addr  # type: ignore[attr-defined]
        i = self.index[addr]
        op = begin(core, self.local_time(i))
        key = (addr, op)
        if not keep:
            self._forget.add(key)
        self._flush(i)
        return key

    def finish(self, key: tuple[Addr, int], limit: float = 60.0) -> tuple[object, float]:
        """Run until the operation ``key`` completes; return (result, virtual time done)."""
        deadline = self.now + limit
        results, queue, step = self.results, self._queue, self.step
        while key not in results:
            if not queue or queue[0][0] > deadline:
                raise TimeoutError(
                    f"operation {key[1]} on {key[0]} did not complete by t={deadline:.3f}"
                    f" (seed {self.seed})"
                )
            step()
        return results.pop(key), self.done_at.pop(key)

    def wait(self, key: tuple[Addr, int], limit: float = 60.0):
        """Run until the operation ``key`` completes; return its result."""
        return self.finish(key, limit)[0]

    def call(self, core: NodeCore, start: Callable[[NodeCore, float], int], limit: float = 60.0):
        """Start an operation on ``core`` and run the network until it completes."""
        return self.wait(self.start(core, start), limit)
