"""The data directory and what a daemon says about itself at start-up.

One daemon per directory (a lock); the directory and its files private whatever
the umask; the identity loaded or created, and the log saying which; a start
that fails leaves the directory as it found it; never advertising loopback
unless listening only there; a broken disk or a corrupt row as one line, never
a traceback. In-process daemons (tests/loopback.py) where the log is enough,
real ``kadnode run`` processes (tests/daemons.py) for exit statuses. All on
127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemons import (
    ENV,
    KADNODE,
    START_TIMEOUT,
    Daemons,
    assert_one_line_error,
    cli_json,
    free_port,
    kadnode,
)
from loopback import HOST, STOP_S, Running, daemon, nodes

from kadnode.core.ids import to_hex
from kadnode.core.store import Record
from kadnode.errors import ApiError, KadnodeError, LocalProtocolError, StorageError
from kadnode.shell import daemon as daemon_module
from kadnode.shell.daemon import DaemonOptions, advertised, local_addresses, run_daemon
from kadnode.shell.datadir import DATA_FILE, FILES, IDENTITY, LOCK_FILE, DataDir
from kadnode.shell.sqlite_store import SqliteStore

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="kadnode")
    return caplog


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def unprivileged() -> list[str]:
    """The prefix that runs a command as a user file permissions apply to: none when
    the tests do not run as root; setpriv to ``nobody`` when they do. Skips otherwise."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("runs as root, which ignores file permissions, and setpriv is missing")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, *KADNODE, "--version"], capture_output=True, text=True, timeout=30, env=ENV
    )
    if probe.returncode != 0:
        pytest.skip(f"runs as root, and user {NOBODY} cannot run kadnode: {probe.stderr[-200:]}")
    return prefix


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kadnode-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_as(prefix: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``kadnode run`` on ``data_dir`` behind ``prefix``; it must end by itself."""
    api = f"{HOST}:{free_port(socket.SOCK_STREAM)}"
    argv = ["run", "--host", HOST, "--port", "0", "--api", api, "--data-dir", str(data_dir)]
    return subprocess.run(
        [*prefix, *KADNODE, *argv],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        env=ENV,
        cwd="/",
    )


def options(data_dir: Path, **changes: object) -> DaemonOptions:
    fields = dict(host=HOST, port=0, data_dir=data_dir, api_host=HOST, api_port=0)
    return DaemonOptions(**{**fields, **changes})  # type: ignore[arg-type]


async def started_once(data_dir: Path) -> str:
    """Start a daemon on ``data_dir`` and stop it; its id."""
    async with daemon(data_dir) as running:
        return to_hex(running.server.id)


# ---- 3. one daemon per data directory --------------------------------------------------------


def test_a_second_daemon_on_a_directory_in_use_gets_one_line_and_exit_2(daemons: Daemons) -> None:
    first = daemons.start("first")
    first_id = first.info()["id"]
    api = f"{HOST}:{free_port(socket.SOCK_STREAM)}"
    argv = ["--host", HOST, "--port", "0", "--api", api, "--data-dir", str(first.data_dir)]
    second = kadnode("run", *argv, timeout=START_TIMEOUT)
    in_use = f"data directory {first.data_dir} is in use by another kadnode (pid {first.proc.pid})"
    assert_one_line_error(second, in_use)
    assert first.proc.poll() is None
    assert first.info()["id"] == first_id


def test_the_lock_is_held_while_open_and_released_after(tmp_path: Path) -> None:
    with (
        DataDir(tmp_path / "d"),
        pytest.raises(StorageError, match=rf"in use by another kadnode \(pid {os.getpid()}\)"),
    ):
        DataDir(tmp_path / "d").__enter__()
    with DataDir(tmp_path / "d"):
        pass


# ---- 4. private, whatever the umask ----------------------------------------------------------


async def test_the_directory_and_its_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    with umask(0):
        async with daemon(data_dir):
            present = {name: mode(data_dir / name) for name in FILES if (data_dir / name).exists()}
            assert mode(data_dir) == 0o700
    assert set(present) >= {DATA_FILE, DATA_FILE + "-wal", DATA_FILE + "-shm", LOCK_FILE}
    assert present == dict.fromkeys(present, 0o600)


async def test_key_files_open_to_others_are_made_private_with_a_loud_warning(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "d"
    with DataDir(data_dir) as data:
        data.identity()
        data.started()
    data_dir.chmod(0o755)
    (data_dir / DATA_FILE).chmod(0o644)
    info_logs.clear()
    await started_once(data_dir)
    warnings = messages(info_logs, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{data_dir / DATA_FILE} was open to other users (mode 0644)")
    assert "private key" in warnings[0]
    assert (mode(data_dir), mode(data_dir / DATA_FILE)) == (0o700, 0o600)


def test_a_key_file_that_cannot_be_made_private_is_refused(shared_dir: Path) -> None:
    prefix = unprivileged()
    if not prefix:
        pytest.skip("needs a data file owned by another user than the daemon's: run as root")
    data_dir = shared_dir / "d"
    data_dir.mkdir(mode=0o700)
    (data_dir / DATA_FILE).write_bytes(b"")
    (data_dir / DATA_FILE).chmod(0o644)  # readable by all; only its owner may change that
    os.chown(data_dir, NOBODY, NOBODY)  # the daemon's directory, holding a file it does not own
    done = run_as(prefix, data_dir)
    assert_one_line_error(done, f"{data_dir / DATA_FILE} is open to other users (mode 0644)")
    assert sorted(os.listdir(data_dir)) == [DATA_FILE]  # its lock file went with it


# ---- 5. the identity: loaded or created, and said so ------------------------------------------


async def test_the_log_says_whether_the_identity_was_created_or_loaded(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "d"
    node_id = await started_once(data_dir)
    assert f"no identity in {data_dir / DATA_FILE}: created a new one (id {node_id})" in messages(
        info_logs
    )
    info_logs.clear()
    assert await started_once(data_dir) == node_id
    assert f"identity loaded from {data_dir / DATA_FILE} (id {node_id})" in messages(info_logs)


async def test_an_identity_missing_beside_values_is_a_loud_warning(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "d"
    old_id = await started_once(data_dir)
    store = SqliteStore(data_dir / DATA_FILE)
    store.put(Record(b"k" * 20, "kept", 2e9, True, 2e9))
    store._db.execute("DELETE FROM meta")  # the identity is gone, the values are not
    store.close()
    info_logs.clear()
    new_id = await started_once(data_dir)
    assert new_id != old_id
    warnings = messages(info_logs, logging.WARNING)
    assert warnings == [
        f"no identity in {data_dir / DATA_FILE}, which holds 1 values and 0 contacts: created"
        f" a new one (id {new_id}); if this node had another id, it is lost unless the file"
        " is restored from a backup"
    ]


async def test_a_damaged_identity_is_refused_not_replaced(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / DATA_FILE)
    store.set_meta(IDENTITY, b"\x01" * 31)
    store.close()
    with pytest.raises(StorageError, match=r"identity in .* is damaged \(31 bytes, not 32\)"):
        await asyncio.wait_for(run_daemon(options(tmp_path), stop=asyncio.Event()), STOP_S)
    store = SqliteStore(tmp_path / DATA_FILE)
    assert store.get_meta(IDENTITY) == b"\x01" * 31
    store.close()


def snapshot(path: Path) -> tuple:
    """What a failed start must leave as it was: the files, and the identity."""
    if not path.exists():
        return ()
    files = sorted(os.listdir(path))
    if DATA_FILE not in files:
        return (files,)
    db = sqlite3.connect(f"file:{path / DATA_FILE}?mode=ro", uri=True)
    try:
        return files, db.execute("SELECT name FROM meta").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("before", ["nothing", "an empty directory", "a data file, no identity"])
@pytest.mark.parametrize("failure", ["busy udp port", "busy api port", "address not here"])
async def test_a_failed_start_leaves_the_data_directory_as_it_found_it(
    tmp_path: Path, before: str, failure: str
) -> None:
    data_dir = tmp_path / "parent" / "d"
    if before != "nothing":
        data_dir.mkdir(parents=True)
    if before == "a data file, no identity":
        SqliteStore(data_dir / DATA_FILE).close()
    found = snapshot(data_dir)
    with contextlib.ExitStack() as held:
        udp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        udp.bind((HOST, 0))
        tcp = held.enter_context(socket.socket())
        tcp.bind((HOST, 0))
        tcp.listen()
        change = {
            "busy udp port": {"port": udp.getsockname()[1]},
            "busy api port": {"api_port": tcp.getsockname()[1]},
            "address not here": {"host": "203.0.113.77"},  # TEST-NET-3: no local interface
        }[failure]
        with pytest.raises(KadnodeError, match="cannot listen"):
            await asyncio.wait_for(
                run_daemon(options(data_dir, **change), stop=asyncio.Event()), STOP_S
            )
    assert snapshot(data_dir) == found
    assert (tmp_path / "parent").exists() == (before != "nothing")


# ---- 6. what it advertises --------------------------------------------------------------------


def fake_host(monkeypatch: pytest.MonkeyPatch, addresses: dict[socket.AddressFamily, list[str]]):
    async def local(families: tuple[socket.AddressFamily, ...]) -> list[str]:
        return [a for family in families for a in addresses.get(family, [])]

    monkeypatch.setattr(daemon_module, "local_addresses", local)


LOOPBACK_ONLY = {
    socket.AF_INET: ["127.0.0.1", "127.0.1.1", "169.254.7.7"],
    socket.AF_INET6: ["::1", "fe80::1%eth0", "fe80::2"],
}


async def test_listening_everywhere_it_never_advertises_loopback(monkeypatch) -> None:
    # The host name resolves to 127.0.1.1 (Debian's /etc/hosts) and there is no route out.
    fake_host(monkeypatch, LOOPBACK_ONLY)
    assert await advertised("0.0.0.0", 8467, []) == ()
    assert await advertised("::", 8467, []) == ()
    # Listening only on loopback, loopback is where it is.
    assert await advertised("127.0.0.1", 8467, []) == (("127.0.0.1", 8467),)
    # Told to, it says what it is told.
    assert await advertised("0.0.0.0", 8467, [("127.0.0.1", 9)]) == (("127.0.0.1", 9),)


async def test_listening_everywhere_it_advertises_the_reachable_addresses_of_its_families(
    monkeypatch,
) -> None:
    fake_host(
        monkeypatch,
        {
            socket.AF_INET: [*LOOPBACK_ONLY[socket.AF_INET], "192.0.2.7", "192.0.2.7"],
            socket.AF_INET6: [*LOOPBACK_ONLY[socket.AF_INET6], "2001:db8::7"],
        },
    )
    assert await advertised("0.0.0.0", 8467, []) == (("192.0.2.7", 8467),)
    assert await advertised("::", 8467, []) == (("192.0.2.7", 8467), ("2001:db8::7", 8467))


async def test_this_hosts_addresses_are_of_the_families_asked_for() -> None:
    found = await local_addresses((socket.AF_INET,))  # sends nothing
    assert all(socket.inet_pton(socket.AF_INET, a) for a in found), found


async def test_the_start_up_log_says_what_it_advertises(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    async with daemon(tmp_path / "d") as running:
        port = running.server.address[1]
        assert f"advertising {HOST}:{port} (where it listens)" in messages(info_logs)


async def test_with_nothing_to_advertise_it_says_to_set_advertise(
    tmp_path: Path, info_logs: pytest.LogCaptureFixture
) -> None:
    daemon_module.say_advertised((), options(tmp_path, host="0.0.0.0"))
    assert messages(info_logs, logging.WARNING) == [daemon_module.NO_ADDRESS]
    async with daemon(tmp_path / "d") as running:
        running.server.core.addresses = ()
        with pytest.raises(LocalProtocolError, match="restart it with --advertise HOST:PORT"):
            await asyncio.to_thread(running.client().register)


# ---- 7. the disk as one line, never a traceback ---------------------------------------------


def test_a_read_only_data_directory_with_a_leftover_wal_is_one_line(
    daemons: Daemons, shared_dir: Path
) -> None:
    prefix = unprivileged()
    data_dir = shared_dir / "d"
    node = daemons.start("node", data_dir=data_dir)
    node.proc.kill()  # leaves its -wal behind
    node.proc.wait(STOP_S)
    assert (data_dir / (DATA_FILE + "-wal")).exists()
    # Readable by everyone, as kadnode used to leave it; writable by its owner only.
    for path in [data_dir, *data_dir.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    if not prefix:
        data_dir.chmod(0o555)
    left = sorted(os.listdir(data_dir))
    done = run_as(prefix, data_dir)
    try:
        assert_one_line_error(done, f"data directory {data_dir} is not writable by this user")
        assert sorted(os.listdir(data_dir)) == left
    finally:
        data_dir.chmod(0o755)


def test_a_data_directory_that_cannot_be_one_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    for path, why in [
        (tmp_path / "file", "it is not a directory"),
        (tmp_path / "file" / "d", f"{tmp_path / 'file'} is not a directory"),
        (shared, "it is shared (sticky bit)"),
    ]:
        with pytest.raises(
            StorageError, match=re.escape(f"cannot use the data directory {path}: {why}")
        ):
            DataDir(path).__enter__()
    assert mode(shared) == 0o1777 and os.listdir(shared) == []  # refused, not "made private"


async def stopped_by_itself(running: Running) -> KadnodeError | None:
    """What stopped the daemon within STOP_S, unasked (None if it did not stop)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(running.daemon.stop.wait(), STOP_S)
    return running.daemon.failure


READ_ONLY = r"^cannot write the data file .*: attempt to write a readonly database$"


async def test_a_storage_failure_while_running_stops_the_daemon_with_one_line(
    tmp_path: Path,
) -> None:
    # It ends with the failure; stopping, its last save of contacts fails again.
    with pytest.raises(StorageError, match=READ_ONLY):
        async with daemon(tmp_path / "d") as running:
            running.daemon.store._db.execute("PRAGMA query_only = ON")  # as a disk gone read-only
            with pytest.raises(ApiError, match=READ_ONLY):
                await asyncio.to_thread(running.client().put, "k", "v")
            failure = await stopped_by_itself(running)
    assert isinstance(failure, StorageError)


async def test_a_storage_failure_while_answering_a_peer_stops_the_daemon_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(StorageError, match=READ_ONLY):
        async with daemon(tmp_path / "d") as running, nodes(1, running.server.address) as peers:
            running.daemon.store._db.execute("PRAGMA query_only = ON")
            storing = asyncio.create_task(peers[0].put("k", "v"))  # its STORE reaches the daemon
            failure = await stopped_by_itself(running)
            storing.cancel()
    assert isinstance(failure, StorageError)
    logged = [r for r in caplog.records if "while handling a datagram" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is None, logged  # one line, no traceback


def test_a_corrupt_record_row_is_set_aside_counted_and_never_fatal(daemons: Daemons) -> None:
    node = daemons.start("node")
    for key in ("good", "undecodable", "unknown kind"):
        cli_json("put", key, f"value of {key}", api=node.api)
    assert node.stop(signal.SIGTERM) == 0
    db = sqlite3.connect(node.data_dir / DATA_FILE)
    with db:
        digest = {
            key: hashlib.sha1(key.encode()).digest() for key in ("undecodable", "unknown kind")
        }
        db.execute("UPDATE records SET value = x'c1' WHERE key = ?", (digest["undecodable"],))
        db.execute("UPDATE records SET kind = 99 WHERE key = ?", (digest["unknown kind"],))
    db.close()

    node = daemons.start("node", port=node.port, data_dir=node.data_dir)
    assert cli_json("get", "good", api=node.api)["value"] == "value of good"
    assert cli_json("get", "undecodable", api=node.api, status=1)["found"] is False
    assert node.info()["stats"]["corrupt_records"] == 1
    assert node.stop(signal.SIGTERM) == 0  # the leave reads every row, the other one too
    log = node.log()
    assert "Traceback" not in log
    assert log.count("set aside a corrupt record") == 1, log
    assert log.rstrip().endswith("stopped")
