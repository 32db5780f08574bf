"""The value store: records with expiry and a republish schedule.

Two backends with one interface: :class:`MemoryStore` (tests, simulator,
demo; no I/O) and :class:`SqliteStore` (the daemon; disk I/O through the
stdlib sqlite3 in WAL mode, one transaction per write, so a value is on disk
before its STORE is acknowledged). The SQLite file also keeps the node's
identity and the contacts it knew, so a restarted node can rejoin alone.

Times are whatever clock the core runs on: the daemon passes wall-clock
seconds so that expiry survives a restart.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import msgpack

from .codec import Contact, Value, pack
from .errors import StorageError
from .ids import to_bytes

PLAIN, PEER, SHARED = 0, 1, 2


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
    # PLAIN: any bmuller-compatible value; PEER: a signed peer record (wire
    # form); SHARED: vector-clocked siblings (wire form).
    kind: int = 0

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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL NOT NULL,
    origin INTEGER NOT NULL,
    resend_at REAL NOT NULL,
    due_at REAL NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_due ON records (due_at);
CREATE TABLE IF NOT EXISTS contacts (
    id BLOB PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, last_seen REAL NOT NULL
);
"""


class SqliteStore:
    """Records, identity and contacts in one SQLite file (WAL). Disk I/O."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a committed transaction survives the process being
            # killed (it is in the WAL file); only power loss can undo the
            # last ones. That is the "SIGKILL loses nothing" promise.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the data file {self.path}: {exc}") from None
        self._count = self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        self._next_due: float | None = None
        self._next_due_known = False

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _row(row: tuple) -> Record:
        key, value, expires_at, origin, resend_at, kind = row
        value = msgpack.unpackb(value, raw=False)
        return Record(bytes(key), value, expires_at, bool(origin), resend_at, kind)

    def get(self, key: bytes) -> Record | None:
        row = self._db.execute(
            "SELECT key, value, expires_at, origin, resend_at, kind FROM records WHERE key = ?",
            (key,),
        ).fetchone()
        return self._row(row) if row else None

    def put(self, record: Record) -> None:
        existed = self._db.execute("SELECT 1 FROM records WHERE key = ?", (record.key,)).fetchone()
        self._db.execute(
            "INSERT INTO records (key, value, expires_at, origin, resend_at, due_at, kind)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value,"
            " expires_at=excluded.expires_at, origin=excluded.origin,"
            " resend_at=excluded.resend_at, due_at=excluded.due_at, kind=excluded.kind",
            (
                record.key,
                pack(record.value),
                record.expires_at,
                int(record.origin),
                record.resend_at,
                record.due_at,
                record.kind,
            ),
        )
        self._count += existed is None
        if self._next_due_known and (self._next_due is None or record.due_at <= self._next_due):
            self._next_due = record.due_at
        else:
            self._next_due_known = False

    def delete(self, key: bytes) -> None:
        self._count -= self._db.execute("DELETE FROM records WHERE key = ?", (key,)).rowcount
        self._next_due_known = False

    def keys(self) -> Iterator[bytes]:
        return iter([bytes(r[0]) for r in self._db.execute("SELECT key FROM records")])

    def next_due(self) -> float | None:
        if not self._next_due_known:
            self._next_due = self._db.execute("SELECT MIN(due_at) FROM records").fetchone()[0]
            self._next_due_known = True
        return self._next_due

    def due(self, now: float, limit: int) -> list[Record]:
        rows = self._db.execute(
            "SELECT key, value, expires_at, origin, resend_at, kind FROM records"
            " WHERE due_at <= ? ORDER BY due_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [self._row(r) for r in rows]

    # ---- identity and contacts ----

    def get_meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def set_meta(self, name: str, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, value),
        )

    def save_contacts(self, contacts: list[tuple[Contact, float]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM contacts")
            self._db.executemany(
                "INSERT OR REPLACE INTO contacts (id, host, port, last_seen) VALUES (?, ?, ?, ?)",
                [(to_bytes(c.node_id), c.host, c.port, seen) for c, seen in contacts],
            )

    def load_contacts(self) -> list[Contact]:
        rows = self._db.execute(
            "SELECT id, host, port FROM contacts ORDER BY last_seen DESC"
        ).fetchall()
        return [Contact(int.from_bytes(r[0], "big"), r[1], r[2]) for r in rows]

    def close(self) -> None:
        self._db.close()
