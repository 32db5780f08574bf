"""The value store's model: records with expiry and a resend schedule. Pure.

:class:`Record` is what a node holds for a key; :class:`Store` is what the
core needs of a backend. :class:`MemoryStore` (tests, simulator, demo) is
here; the daemon's SQLite backend is :mod:`kadnode.shell.sqlite_store`.

Times are whatever clock the core runs on: the daemon passes wall-clock
seconds so that expiry survives a restart.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from kadnode.core.messages import Kind, Value


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


class Store(Protocol):
    """What the core asks of a value store (memory here, SQLite in the shell)."""

    def __len__(self) -> int: ...
    def get(self, key: bytes) -> Record | None: ...
    def put(self, record: Record) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def keys(self) -> Iterator[bytes]: ...
    def next_due(self) -> float | None: ...
    def due(self, now: float, limit: int) -> list[Record]: ...
    def close(self) -> None: ...


class MemoryStore:
    """Records in a dict, with a lazy heap of due times. No I/O."""

    def __init__(self) -> None:
        self._records: dict[bytes, Record] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: bytes) -> Record | None:
        return self._records.get(key)

    def put(self, record: Record) -> None:
        self._records[record.key] = record
        heapq.heappush(self._heap, (record.due_at, record.key))

    def delete(self, key: bytes) -> None:
        self._records.pop(key, None)

    def keys(self) -> Iterator[bytes]:
        return iter(list(self._records))

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
