"""Records, identity and contacts in one SQLite file (WAL). Disk I/O.

The daemon's :class:`~kadnode.core.store.Store`: a value is on disk before
its STORE is acknowledged. Times are whatever clock the core runs on: the
daemon passes wall-clock seconds so that expiry survives a restart.

Every failure of the disk or of SQLite is a :class:`~kadnode.errors.StorageError`
naming the file, passed to ``on_error`` first (the daemon stops on it). A
record row that does not decode is set aside in the ``corrupt_records`` table,
counted in ``stats["corrupt_records"]`` and never served; the rest are.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from kadnode.core import kinds
from kadnode.core.ids import to_bytes
from kadnode.core.messages import Contact, Kind
from kadnode.core.store import Record, Usage
from kadnode.core.wire import pack
from kadnode.errors import DecodeError, StorageError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL NOT NULL,
    origin INTEGER NOT NULL,
    resend_at REAL NOT NULL,
    due_at REAL NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_due ON records (due_at);
CREATE TABLE IF NOT EXISTS contacts (
    id BLOB PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS corrupt_records (
    key BLOB PRIMARY KEY, value BLOB, kind INTEGER, reason TEXT NOT NULL
);
"""


# Columns added after the first data files were written (quotas: kadnode.core.quotas).
_COLUMNS = "key, value, expires_at, origin, resend_at, kind, source, size"
_ADDED_COLUMNS = {
    "source": "TEXT NOT NULL DEFAULT ''",
    "size": "INTEGER NOT NULL DEFAULT 0",
    "seq": "INTEGER NOT NULL DEFAULT 0",
}


def _on_disk(doing: str) -> Callable[[F], F]:
    """A store method whose sqlite3 and OS errors become one StorageError line."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def guarded(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as exc:
                error = StorageError(f"cannot {doing} the data file {self.path}: {exc}")
            if self.on_error is not None:
                self.on_error(error)
            raise error

        return guarded  # type: ignore[return-value]

    return wrap


class SqliteStore:
    """Records, identity and contacts in one SQLite file (WAL). Disk I/O."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.on_error: Callable[[StorageError], None] | None = None
        self.stats: Counter[str] = Counter(corrupt_records=0)
        self._open()
        self._next_due: float | None = None
        self._next_due_known = False

    @_on_disk("open")
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives the process being
        # killed (it is in the WAL file); only power loss can undo the
        # last ones. That is the "SIGKILL loses nothing" promise.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        for name, spec in _ADDED_COLUMNS.items():  # a data file from before they existed
            if name not in columns:
                self._db.execute(f"ALTER TABLE records ADD COLUMN {name} {spec}")
        self._db.execute("CREATE INDEX IF NOT EXISTS records_source ON records (source, seq)")
        self._count = self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]
        self.usage = Usage()
        for source, count, size in self._db.execute(
            "SELECT source, COUNT(*), SUM(size) FROM records GROUP BY source"
        ):
            self.usage.add(source, size or 0, count)

    def __len__(self) -> int:
        return self._count

    def _record(self, row: tuple) -> Record | None:
        """The record of a row; None, once the row is set aside, if it does not decode."""
        key, value, expires_at, origin, resend_at, kind, source, size = row
        try:
            kind = Kind(kind)
            value = msgpack.unpackb(value, raw=False)
            kinds.check(kind, value)
            if not all(type(t) in (int, float) for t in (expires_at, resend_at)):
                raise ValueError("its times are not numbers")
        except (ValueError, TypeError, DecodeError, msgpack.UnpackException) as exc:
            self._set_aside(bytes(key), (str(exc) or type(exc).__name__)[:200])
            return None
        return Record(bytes(key), value, expires_at, bool(origin), resend_at, kind, source, size)

    def _records(self, rows: list[tuple]) -> list[Record]:
        return [r for r in map(self._record, rows) if r is not None]

    def _set_aside(self, key: bytes, reason: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO corrupt_records (key, value, kind, reason)"
                " SELECT key, value, kind, ? FROM records WHERE key = ?",
                (reason, key),
            )
            held = self._db.execute(
                "SELECT source, size FROM records WHERE key = ?", (key,)
            ).fetchone()
            if held is not None:
                self._db.execute("DELETE FROM records WHERE key = ?", (key,))
                self._count -= 1
                self.usage.add(held[0], -held[1], -1)
        self._next_due_known = False
        self.stats["corrupt_records"] += 1
        if self.stats["corrupt_records"] == 1:
            log.warning(
                "set aside a corrupt record in %s (key %s: %s): it is no longer served; "
                "counted in corrupt_records, further ones are not logged",
                self.path,
                key.hex(),
                reason,
            )

    @_on_disk("read")
    def get(self, key: bytes) -> Record | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE key = ?",
            (key,),
        ).fetchone()
        return self._record(row) if row else None

    @_on_disk("write")
    def put(self, record: Record) -> None:
        old = self._db.execute(
            "SELECT source, size FROM records WHERE key = ?", (record.key,)
        ).fetchone()
        self._seq += 1
        self._db.execute(
            "INSERT INTO records (key, value, expires_at, origin, resend_at, due_at, kind,"
            " source, size, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE"
            " SET value=excluded.value, expires_at=excluded.expires_at, origin=excluded.origin,"
            " resend_at=excluded.resend_at, due_at=excluded.due_at, kind=excluded.kind,"
            " source=excluded.source, size=excluded.size, seq=excluded.seq",
            (
                record.key,
                pack(record.value),
                record.expires_at,
                int(record.origin),
                record.resend_at,
                record.due_at,
                record.kind,
                record.source,
                record.size,
                self._seq,
            ),
        )
        if old is None:
            self._count += 1
        else:
            self.usage.add(old[0], -old[1], -1)
        self.usage.add(record.source, record.size)
        if self._next_due_known and (self._next_due is None or record.due_at <= self._next_due):
            self._next_due = record.due_at
        else:
            self._next_due_known = False

    @_on_disk("write")
    def delete(self, key: bytes) -> None:
        old = self._db.execute("SELECT source, size FROM records WHERE key = ?", (key,)).fetchone()
        if old is not None:
            self._db.execute("DELETE FROM records WHERE key = ?", (key,))
            self._count -= 1
            self.usage.add(old[0], -old[1], -1)
        self._next_due_known = False

    @_on_disk("read")
    def keys_between(self, low: bytes, high: bytes, limit: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT key FROM records WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (low, high, limit),
        )
        return [bytes(r[0]) for r in rows]

    @_on_disk("read")
    def oldest_from(self, source: str) -> bytes | None:
        row = self._db.execute(
            "SELECT key FROM records WHERE source = ? ORDER BY seq LIMIT 1", (source,)
        ).fetchone()
        return bytes(row[0]) if row else None

    @_on_disk("read")
    def keys(self) -> Iterator[bytes]:
        return iter([bytes(r[0]) for r in self._db.execute("SELECT key FROM records")])

    @_on_disk("read")
    def next_due(self) -> float | None:
        if not self._next_due_known:
            self._next_due = self._db.execute("SELECT MIN(due_at) FROM records").fetchone()[0]
            self._next_due_known = True
        return self._next_due

    @_on_disk("read")
    def due(self, now: float, limit: int) -> list[Record]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE due_at <= ? ORDER BY due_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return self._records(rows)

    # ---- identity and contacts ----

    @_on_disk("read")
    def get_meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    @_on_disk("write")
    def set_meta(self, name: str, value: bytes) -> None:
        self._db.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, value),
        )

    @_on_disk("write")
    def save_contacts(self, contacts: list[tuple[Contact, float]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM contacts")
            self._db.executemany(
                "INSERT OR REPLACE INTO contacts (id, host, port, last_seen) VALUES (?, ?, ?, ?)",
                [(to_bytes(c.node_id), c.host, c.port, seen) for c, seen in contacts],
            )

    @_on_disk("read")
    def load_contacts(self) -> list[Contact]:
        rows = self._db.execute(
            "SELECT id, host, port FROM contacts ORDER BY last_seen DESC"
        ).fetchall()
        return [Contact(int.from_bytes(r[0], "big"), r[1], r[2]) for r in rows]

    @_on_disk("close")
    def close(self) -> None:
        self._db.close()
