"""Both store backends behave the same; SQLite persists across reopen."""

from __future__ import annotations

import pytest

from kadnode.core.messages import Contact
from kadnode.core.store import MemoryStore, Record
from kadnode.errors import StorageError
from kadnode.shell.sqlite_store import SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "db.sqlite3")
    yield s
    s.close()


def rec(key: bytes, expires: float, resend: float, origin: bool = False, value="v") -> Record:
    return Record(key.ljust(20, b"\0"), value, expires, origin, resend)


def test_due_records_come_in_due_order_and_only_once(store):
    store.put(rec(b"a", 100.0, 50.0))
    store.put(rec(b"b", 30.0, 60.0))
    store.put(rec(b"c", 500.0, 400.0))
    store.put(rec(b"a", 100.0, 50.0))  # the same schedule twice
    assert store.next_due() == 30.0
    assert [r.key[:1] for r in store.due(60.0, 10)] == [b"b", b"a"]
    assert store.due(10.0, 10) == []
    assert len(store) == 3


def test_rescheduling_and_deleting_move_the_next_due_time(store):
    store.put(rec(b"a", 100.0, 50.0))
    store.put(rec(b"b", 300.0, 200.0))
    store.put(rec(b"a", 100.0, 90.0))
    assert store.next_due() == 90.0
    store.delete(b"a".ljust(20, b"\0"))
    assert store.next_due() == 200.0 and len(store) == 1
    store.delete(b"b".ljust(20, b"\0"))
    assert store.next_due() is None and len(store) == 0


def test_values_of_every_bmuller_type_round_trip(store):
    for i, value in enumerate(["text", b"\x00\xff", 7, 2.5, True]):
        store.put(rec(bytes([i]), 10.0, 10.0, value=value))
        assert store.get(bytes([i]).ljust(20, b"\0")).value == value


def test_sqlite_keeps_records_identity_and_contacts_across_reopen(tmp_path):
    path = tmp_path / "node" / "db.sqlite3"
    s = SqliteStore(path)
    s.put(rec(b"k", 1000.0, 500.0, origin=True))
    s.set_meta("node_id", b"\x01" * 20)
    s.save_contacts([(Contact(5, "127.0.0.1", 9000), 10.0), (Contact(6, "::1", 9001), 20.0)])
    s.close()
    s = SqliteStore(path)
    assert s.get(b"k".ljust(20, b"\0")) == rec(b"k", 1000.0, 500.0, origin=True)
    assert s.get_meta("node_id") == b"\x01" * 20
    assert s.load_contacts() == [Contact(6, "::1", 9001), Contact(5, "127.0.0.1", 9000)]
    assert len(s) == 1 and s.next_due() == 500.0
    s.close()


def test_an_unusable_data_directory_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot open the data file"):
        SqliteStore(blocker / "db.sqlite3")


# ---- what the disk can do wrong --------------------------------------------------------------


def test_corrupt_rows_are_set_aside_counted_and_the_rest_served(tmp_path, caplog):
    s = SqliteStore(tmp_path / "db.sqlite3")
    for name in (b"good", b"bad msgpack", b"bad kind", b"bad type", b"bad time"):
        s.put(rec(name, 100.0, 50.0, value=name.decode()))
    keys = {name: name.ljust(20, b"\0") for name in (b"bad msgpack", b"bad kind", b"bad type")}
    db = s._db
    db.execute("UPDATE records SET value = x'c1' WHERE key = ?", (keys[b"bad msgpack"],))
    db.execute("UPDATE records SET kind = 99 WHERE key = ?", (keys[b"bad kind"],))
    db.execute("UPDATE records SET value = x'9101' WHERE key = ?", (keys[b"bad type"],))  # [1]
    db.execute(
        "UPDATE records SET expires_at = 'soon' WHERE key = ?", (b"bad time".ljust(20, b"\0"),)
    )

    assert s.get(keys[b"bad msgpack"]) is None
    assert [r.value for r in s.due(1000.0, 10)] == ["good"]  # the others are set aside
    assert s.get(b"good".ljust(20, b"\0")).value == "good"
    assert len(s) == 1 and s.stats["corrupt_records"] == 4
    assert s.next_due() == 50.0 and list(s.keys()) == [b"good".ljust(20, b"\0")]
    kept = db.execute("SELECT COUNT(*) FROM corrupt_records").fetchone()[0]
    assert kept == 4  # kept for a person to look at, never served
    warned = [r for r in caplog.records if "corrupt record" in r.getMessage()]
    assert len(warned) == 1, warned  # logged once, then counted
    s.close()


def test_every_sqlite_failure_is_one_storage_error_naming_the_file(tmp_path):
    s = SqliteStore(tmp_path / "db.sqlite3")
    failures = []
    s.on_error = failures.append
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")  # a full disk
    with pytest.raises(StorageError, match=r"cannot write the data file .*db.sqlite3: .*full"):
        s.put(rec(b"big", 100.0, 50.0, value="x" * 100_000))
    assert len(failures) == 1 and isinstance(failures[0], StorageError)
    s.close()
    with pytest.raises(StorageError, match="cannot read the data file"):
        s.get(b"k".ljust(20, b"\0"))  # closed


def test_sqlite_keeps_each_sources_usage_across_a_reopen(tmp_path):
    path = tmp_path / "kadnode.sqlite3"
    store = SqliteStore(path)
    store.put(Record(b"a" * 20, "xx", 10.0, False, 5.0, source="s1"))
    store.put(Record(b"b" * 20, "yyyy", 10.0, False, 5.0, source="s1"))
    store.put(Record(b"a" * 20, "z", 10.0, False, 5.0, source="s2"))  # moves to s2
    store.put(Record(b"c" * 20, "mine", 10.0, True, 5.0))  # this node's own
    seen = (store.usage.of("s1"), store.usage.of("s2"), store.usage.bytes)
    assert store.oldest_from("s1") == b"b" * 20 and store.usage.heaviest() == "s1"
    assert store.keys_between(b"a" * 20, b"c" * 20, 10) == [b"a" * 20, b"b" * 20]
    store.close()
    again = SqliteStore(path)
    assert (again.usage.of("s1"), again.usage.of("s2"), again.usage.bytes) == seen
    again.delete(b"b" * 20)
    assert again.usage.of("s1") == (0, 0) and again.usage.heaviest() == "s2"
    assert again.get(b"a" * 20).source == "s2"
