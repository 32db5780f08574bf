"""The value store's model: records with expiry and a resend schedule. Pure.

:class:`Record` is what a node holds for a key; :class:`Store` is what the
core needs of a backend. :class:`MemoryStore` (tests, simulator, demo) is
here; the daemon's SQLite backend is :mod:`kadnode.shell.sqlite_store`.

Every record held for others carries its ``source``, the /24 (/48) it was
last stored from, and both stores keep each source's count and bytes
(:class:`Usage`), so that quotas (kadnode.core.quotas) cost O(1) per write
and a full store can give up the heaviest source's oldest record first.
Keys are kept in order too: the records near an id are a range
(:meth:`Store.keys_between`), not a scan of the whole store.

Times are whatever clock the core runs on: the daemon passes wall-clock
seconds so that expiry survives a restart.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from kadnode.core.messages import Kind, Value
from kadnode.core.wire import pack


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: Value
    expires_at: float
    # True on the node that published it: it republishes the value with a
    # fresh lifetime every republish interval (paper 2.5). Replicas only
    # re-send what they hold, with its remaining lifetime.
    origin: bool
    # Next time this node re-sends the record (replicate or republish).
    resend_at: float
    kind: Kind = Kind.PLAIN
    # The subnet it was last stored from; "" for this node's own writes.
    source: str = ""
    # Its value's size packed (bytes), for quotas.
    size: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.size < 0:
            object.__setattr__(self, "size", len(pack(self.value)))

    @property
    def due_at(self) -> float:
        return min(self.expires_at, self.resend_at)

    def with_schedule(
        self, *, expires_at: float | None = None, resend_at: float | None = None
    ) -> Record:
        return replace(
            self,
            expires_at=self.expires_at if expires_at is None else expires_at,
            resend_at=self.resend_at if resend_at is None else resend_at,
        )


class Usage:
    """Values and bytes held per source, with the heaviest source at hand
    (a lazy max-heap: O(log n) per change)."""

    def __init__(self) -> None:
        self.by_source: dict[str, list[int]] = {}  # source -> [values, bytes]
        self.bytes = 0
        self._heap: list[tuple[int, str]] = []

    def add(self, source: str, size: int, count: int = 1) -> None:
        self.bytes += size
        if not source:
            return
        held = self.by_source.setdefault(source, [0, 0])
        held[0] += count
        held[1] += size
        if held[0] <= 0:
            del self.by_source[source]
            return
        heap = self._heap
        heapq.heappush(heap, (-held[1], source))
        if len(heap) > 2 * len(self.by_source) + 64:  # mostly stale entries: rebuilt
            heap[:] = [(-b, s) for s, (_, b) in self.by_source.items()]
            heapq.heapify(heap)

    def of(self, source: str) -> tuple[int, int]:
        held = self.by_source.get(source)
        return (held[0], held[1]) if held else (0, 0)

    def heaviest(self) -> str | None:
        heap = self._heap
        while heap:
            weight, source = heap[0]
            held = self.by_source.get(source)
            if held is not None and held[1] == -weight:
                return source
            heapq.heappop(heap)
        return None


class Store(Protocol):
    """What the core asks of a value store (memory here, SQLite in the shell)."""

    usage: Usage

    def __len__(self) -> int: ...
    def __contains__(self, key: bytes) -> bool: ...
    def get(self, key: bytes) -> Record | None: ...
    def put(self, record: Record) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def keys(self) -> Iterator[bytes]: ...
    def keys_between(self, low: bytes, high: bytes, limit: int) -> list[bytes]: ...
    def oldest_from(self, source: str) -> bytes | None: ...
    def next_due(self) -> float | None: ...
    def due(self, now: float, limit: int) -> list[Record]: ...
    def close(self) -> None: ...


class MemoryStore:
    """Records in a dict, with a lazy heap of due times. No I/O."""

    def __init__(self) -> None:
        self._records: dict[bytes, Record] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._sorted: list[bytes] = []
        self._by_source: dict[str, dict[bytes, None]] = {}  # keys, oldest first
        self.usage = Usage()

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def get(self, key: bytes) -> Record | None:
        return self._records.get(key)

    def put(self, record: Record) -> None:
        key = record.key
        old = self._records.get(key)
        if old is None:
            bisect.insort(self._sorted, key)
        else:
            self._unaccount(old)
        self._records[key] = record
        self.usage.add(record.source, record.size)
        if record.source:
            self._by_source.setdefault(record.source, {})[key] = None
        heapq.heappush(self._heap, (record.due_at, key))

    def delete(self, key: bytes) -> None:
        old = self._records.pop(key, None)
        if old is not None:
            self._unaccount(old)
            del self._sorted[bisect.bisect_left(self._sorted, key)]

    def _unaccount(self, record: Record) -> None:
        self.usage.add(record.source, -record.size, -1)
        keys = self._by_source.get(record.source)
        if keys is not None:
            keys.pop(record.key, None)
            if not keys:
                del self._by_source[record.source]

    def keys(self) -> Iterator[bytes]:
        return iter(list(self._records))

    def keys_between(self, low: bytes, high: bytes, limit: int) -> list[bytes]:
        start = bisect.bisect_left(self._sorted, low)
        end = bisect.bisect_left(self._sorted, high, start)
        return self._sorted[start : min(end, start + limit)]

    def oldest_from(self, source: str) -> bytes | None:
        keys = self._by_source.get(source)
        return next(iter(keys)) if keys else None

    def _clean_top(self) -> None:
        heap = self._heap
        while heap:
            due, key = heap[0]
            record = self._records.get(key)
            if record is not None and record.due_at == due:
                return
            heapq.heappop(heap)

    def next_due(self) -> float | None:
        self._clean_top()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, limit: int) -> list[Record]:
        out: dict[bytes, Record] = {}
        heap = self._heap
        while len(out) < limit:
            self._clean_top()
            if not heap or heap[0][0] > now:
                break
            _, key = heapq.heappop(heap)
            out[key] = self._records[key]  # a key put twice at one due time comes once
        # Put them back: the caller reschedules or deletes each one.
        for record in out.values():
            heapq.heappush(heap, (record.due_at, record.key))
        return list(out.values())

    def close(self) -> None:
        pass
