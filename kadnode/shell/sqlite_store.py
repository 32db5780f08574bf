"""Records, identity and contacts in one SQLite file (WAL). Disk I/O.

The daemon's :class:`~kadnode.core.store.Store`: a value is on disk before
its STORE is acknowledged. Times are whatever clock the core runs on: the
daemon passes wall-clock seconds so that expiry survives a restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgpack

from kadnode.core.ids import to_bytes
from kadnode.core.messages import Contact, Kind
from kadnode.core.store import Record
from kadnode.core.wire import pack
from kadnode.errors import StorageError

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
        return Record(bytes(key), value, expires_at, bool(origin), resend_at, Kind(kind))

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
