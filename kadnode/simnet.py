"""A virtual network and clock for node cores. No real I/O.

Many :class:`~kadnode.node.NodeCore` instances exchange datagrams through
one event queue on one virtual clock: fixed or random latency, loss,
blocked links (partitions), nodes down. Seeded and deterministic: the same
seed replays the same run. Tests and the simulator drive it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Config
from .node import Addr, NodeCore, OperationCompleted
from .storage import MemoryStore


@dataclass
class SimNetwork:
    seed: int = 0
    latency: Callable[[random.Random], float] = lambda rng: 0.01
    loss: float = 0.0
    config: Config = field(default_factory=Config)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.nodes: dict[Addr, NodeCore] = {}
        self.down: set[Addr] = set()
        self.blocked: Callable[[Addr, Addr], bool] | None = None
        self.results: dict[tuple[Addr, int], object] = {}
        self._queue: list[tuple[float, int, int, object]] = []  # (time, seq, kind, payload)
        self._seq = 0
        self._timers: dict[Addr, float] = {}
        self.delivered = 0
        self.dropped = 0
        self.trace = hashlib.sha256()

    def add_node(self, node_id: int | None = None, store=None) -> NodeCore:
        index = len(self.nodes)
        addr = (f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}", 4000)
        node_id = self.rng.getrandbits(160) if node_id is None else node_id
        core = NodeCore(
            node_id,
            store if store is not None else MemoryStore(),
            config=self.config,
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
        )
        core.addr = addr  # type: ignore[attr-defined]
        self.nodes[addr] = core
        self._schedule_timer(addr, core)
        return core

    def _push(self, at: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def _schedule_timer(self, addr: Addr, core: NodeCore) -> None:
        at = core.get_timer()
        if self._timers.get(addr) != at:
            self._timers[addr] = at
            self._push(max(at, self.now), 1, (addr, at))

    def flush(self, addr: Addr) -> None:
        """Collect what a node decided: datagrams, events, its next timer."""
        core = self.nodes[addr]
        for data, dest in core.datagrams_to_send():
            self.trace.update(data)
            if addr in self.down or dest in self.down or self.rng.random() < self.loss:
                self.dropped += 1
                continue
            if self.blocked is not None and self.blocked(addr, dest):
                self.dropped += 1
                continue
            self._push(self.now + self.latency(self.rng), 0, (data, addr, dest))
        while (event := core.next_event()) is not None:
            assert isinstance(event, OperationCompleted)
            self.results[(addr, event.op_id)] = event.result
        self._schedule_timer(addr, core)

    def step(self) -> bool:
        if not self._queue:
            return False
        at, _, kind, payload = heapq.heappop(self._queue)
        self.now = max(self.now, at)
        if kind == 0:
            data, src, dest = payload  # type: ignore[misc]
            core = self.nodes.get(dest)
            if core is None or dest in self.down:
                self.dropped += 1
                return True
            self.delivered += 1
            core.receive_datagram(data, src, self.now)
            self.flush(dest)
        else:
            addr, timer = payload  # type: ignore[misc]
            if self._timers.get(addr) != timer or addr in self.down:
                return True
            core = self.nodes[addr]
            core.handle_timer(self.now)
            self.flush(addr)
        return True

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            self.step()
        self.now = max(self.now, t)

    def call(self, core: NodeCore, start: Callable[[NodeCore, float], int], limit: float = 60.0):
        """Start an operation on ``core`` and run the network until it completes."""
        addr = core.addr  # type: ignore[attr-defined]
        op = start(core, self.now)
        self.flush(addr)
        deadline = self.now + limit
        while (addr, op) not in self.results:
            if not self._queue or self._queue[0][0] > deadline:
                raise TimeoutError(f"operation {op} on {addr} did not complete by {deadline}")
            self.step()
        return self.results.pop((addr, op))
