"""The daemon's data directory: its lock, its permissions, its identity. Disk I/O.

The directory IS the node: it holds the ed25519 key its id derives from, the
values it keeps and the contacts it knew. So:

- One daemon at a time: an exclusive ``flock`` on ``kadnode.lock`` (which
  holds the pid) for as long as the daemon runs. A second one is refused.
- Private, whatever the umask: the directory is created 0700, the database
  0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files
  the database's mode). Group or other bits found on existing files are
  removed with a loud warning; where they cannot be, the daemon refuses to
  start.
- The identity is loaded or created, and the log says which. A new one is
  saved only once the node listens (:meth:`DataDir.started`).
- A start that fails leaves nothing behind: whatever this run created (the
  directory and its parents, the files) is removed again; nothing that was
  there before is touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
from pathlib import Path
from types import TracebackType

from kadnode.core.identity import SEED_BYTES, Identity
from kadnode.core.ids import to_hex
from kadnode.errors import StorageError
from kadnode.shell.apiguard import check_token
from kadnode.shell.sqlite_store import SqliteStore

log = logging.getLogger("kadnode")

DATA_FILE = "kadnode.sqlite3"
LOCK_FILE = "kadnode.lock"
TOKEN_FILE = "api.token"  # the control API's token (kadnode.shell.apiguard)
# SQLite's companions of the data file: they hold its pages, so the key too.
SIDECARS = ("-wal", "-shm", "-journal")
# Every file kadnode keeps in a data directory.
FILES = (DATA_FILE, *(DATA_FILE + s for s in SIDECARS), LOCK_FILE, TOKEN_FILE)
IDENTITY = "identity_seed"
PRIVATE = 0o077  # group and other bits: none may be set on the directory or its files


def _mode(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _one_line(exc: OSError) -> str:
    return exc.strerror or str(exc)


class DataDir:
    """Open with ``with DataDir(path) as data:``; ``data.store`` is the node's store.

    Leaving the block closes the store and releases the lock; if
    :meth:`started` was not called, it also removes what this run created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path / DATA_FILE
        self._created_dirs: list[Path] = []
        self._existed: set[str] | None = None  # our files there before us, once locked
        self._lock: int | None = None
        self._store: SqliteStore | None = None
        self._new_identity: Identity | None = None
        self._new_token = False  # logged once the node listens, as a new identity is
        self.is_started = False

    @property
    def store(self) -> SqliteStore:
        assert self._store is not None, "use DataDir as a context manager"
        return self._store

    def __enter__(self) -> DataDir:
        try:
            self._make_directory()
            self._check_writable(self.path, "data directory")
            self._make_private(self.path, key=False)
            self._take_lock()
            for name in FILES:
                self._check_file(self.path / name, key=name != LOCK_FILE)
            self._create_private(self.file)
            self._store = SqliteStore(self.file)
        except BaseException as exc:
            self._close()
            if isinstance(exc, OSError):
                raise self._cannot_use(_one_line(exc)) from None
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    # ---- the directory and its files ----

    def _make_directory(self) -> None:
        """Create the directory (0700) and missing parents, remembering which."""
        missing = []
        path = self.path
        while not os.path.lexists(path):
            missing.append(path)
            path = path.parent
        if not path.is_dir():
            raise self._cannot_use(f"{'it' if path == self.path else path} is not a directory")
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue  # made by someone else meanwhile: not ours to remove
            except OSError as exc:
                raise StorageError(
                    f"cannot create the data directory {path}: {_one_line(exc)}"
                ) from None
            self._created_dirs.append(path)
        if self.path in self._created_dirs:
            os.chmod(self.path, 0o700)  # the umask may have left more
        if self.path.stat().st_mode & stat.S_ISVTX:
            raise self._cannot_use("it is shared (sticky bit); give kadnode one of its own")

    def _make_private(self, path: Path, *, key: bool) -> None:
        """Remove group and other bits from ``path``; refuse a key file whose
        bits cannot be removed."""
        st = path.stat()
        if not st.st_mode & PRIVATE:
            return
        was = _mode(st)
        try:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~PRIVATE)
        except OSError as exc:
            if key:
                raise StorageError(
                    f"{path} is open to other users (mode {was}) and holds this node's private"
                    f" key; kadnode cannot make it private ({_one_line(exc)}): as its owner,"
                    f" run chmod go= {path}"
                ) from None
            log.warning("%s is open to other users (mode %s): %s", path, was, _one_line(exc))
            return
        if key:
            log.warning(
                "%s was open to other users (mode %s) and holds this node's private key: now"
                " private; if anyone else can log in here, treat the key as exposed (move the"
                " data directory away and start as a new node)",
                path,
                was,
            )
        else:
            log.info("%s was open to other users (mode %s): now private", path, was)

    def _check_file(self, path: Path, *, key: bool) -> None:
        """An existing file of ours: private, and (if it holds the key) writable."""
        if not path.exists():
            return
        self._make_private(path, key=key)
        if key:
            self._check_writable(path, "data file")

    @staticmethod
    def _check_writable(path: Path, what: str) -> None:
        if not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else os.R_OK)):
            raise StorageError(f"{what} {path} is not writable by this user (uid {os.getuid()})")

    def _create_private(self, path: Path) -> bool:
        """Create ``path`` empty with mode 0600 unless it exists; whether it did."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot create the data file {path}: {_one_line(exc)}") from None
        try:
            os.fchmod(fd, 0o600)  # the umask may have left less
        finally:
            os.close(fd)
        return True

    def _take_lock(self) -> None:
        path = self.path / LOCK_FILE
        created = self._create_private(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise self._cannot_lock(exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise self._cannot_lock(exc) from None
            raise StorageError(
                f"data directory {self.path} is in use by another kadnode (pid {holder})"
            ) from None
        self._lock = fd
        # Only now, holding the lock, is what is there ours to judge.
        self._existed = {name for name in FILES if os.path.lexists(self.path / name)}
        if created:
            self._existed.discard(LOCK_FILE)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())

    def _cannot_use(self, why: str) -> StorageError:
        return StorageError(f"cannot use the data directory {self.path}: {why}")

    def _cannot_lock(self, exc: OSError) -> StorageError:
        return StorageError(f"cannot lock the data directory {self.path}: {_one_line(exc)}")

    # ---- identity ----

    def identity(self) -> Identity:
        """The node's key: loaded from the data file, else a new one (saved by
        :meth:`started`, once the node listens)."""
        seed = self.store.get_meta(IDENTITY)
        if seed is None:
            self._new_identity = Identity.generate()
            return self._new_identity
        if len(seed) != SEED_BYTES:
            raise StorageError(
                f"the identity in {self.file} is damaged ({len(seed)} bytes, not {SEED_BYTES}):"
                " restore the file from a backup, or move it away to start as a new node"
            )
        identity = Identity.from_seed(seed)
        log.info("identity loaded from %s (id %s)", self.file, to_hex(identity.node_id))
        return identity

    def started(self) -> None:
        """The node listens: save a new identity; from now on nothing is rolled back."""
        new = self._new_identity
        if new is not None:
            values, contacts = len(self.store), len(self.store.load_contacts())
            self.store.set_meta(IDENTITY, new.seed)
            new_id = to_hex(new.node_id)
            if values or contacts:
                log.warning(
                    "no identity in %s, which holds %d values and %d contacts: created a new"
                    " one (id %s); if this node had another id, it is lost unless the file"
                    " is restored from a backup",
                    self.file,
                    values,
                    contacts,
                    new_id,
                )
            else:
                log.info("no identity in %s: created a new one (id %s)", self.file, new_id)
            self._new_identity = None
        if self._new_token:
            token = self.path / TOKEN_FILE
            log.info("API token written to %s (the kadnode CLI reads it from there)", token)
            self._new_token = False
        self.is_started = True

    # ---- the control API's token ----

    def api_token(self) -> str:
        """The token the control API asks for: read from ``api.token``, else a
        new one written there (0600), for the kadnode CLI to read."""
        path = self.path / TOKEN_FILE
        if not self._create_private(path):
            try:
                token = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = _one_line(exc) if isinstance(exc, OSError) else "not ASCII"
                raise StorageError(f"cannot read the API token {path}: {why}") from None
            if token:
                return check_token(token, f"the API token in {path}")
        token = secrets.token_urlsafe(32)
        path.write_text(token + "\n", encoding="ascii")
        self._new_token = True
        return token

    # ---- leaving ----

    def _close(self) -> None:
        store, self._store = self._store, None
        try:
            if store is not None:
                store.close()
        finally:
            if not self.is_started:
                self._roll_back()
            if self._lock is not None:
                os.close(self._lock)  # releases the flock
                self._lock = None

    def _roll_back(self) -> None:
        """Remove what this run created: files only while it holds the lock."""
        if self._existed is not None:
            for name in FILES:
                if name not in self._existed:
                    with contextlib.suppress(OSError):  # gone, or not ours to remove
                        os.unlink(self.path / name)
        for path in reversed(self._created_dirs):
            with contextlib.suppress(OSError):  # not empty: someone else's now
                path.rmdir()
