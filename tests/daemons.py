"""Real ``kadnode run`` processes on 127.0.0.1, for the tests that drive them.

Every daemon is a subprocess started through the ``daemons`` fixture, which
SIGKILLs whatever is still running at teardown. Ports come from binding
port-0 sockets; every wait polls against a deadline. ``pytest -s`` shows the
measured numbers (rejoin time, flood counts, RSS).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack
from loopback import API_DATA_DIRS, token_of, with_data_dir

from kadnode.cli.client import ApiClient
from kadnode.config import MAX_DATAGRAM
from kadnode.core.codec import NATIVE_MAGIC, Response, decode, encode_request
from kadnode.core.messages import Kind
from kadnode.shell.datadir import DATA_FILE

T = TypeVar("T")

HOST = "127.0.0.1"
KADNODE = [sys.executable, "-m", "kadnode.cli"]
# No KADNODE_* setting of the machine's (kadnode.cli.settings) reaches the tests.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("KADNODE_")} | {
    "PYTHONUNBUFFERED": "1"
}
# Logged once the UDP socket and the control API both listen.
STARTED = re.compile(r"node ([0-9a-f]{40}) on udp .* control api http://")
JOINED = re.compile(r"joined: (\d+) of (\d+) seeds answered, (\d+) contacts known")
CLI_TIMEOUT = 20.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
RAW_TIMEOUT = 3.0


# ---- helpers ---------------------------------------------------------------------------------


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(0.02)


def kadnode(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KADNODE, *with_data_dir(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


def cli_json(*args: str, api: str, status: int = 0) -> dict:
    """Run an API command with ``--json``; check its exit status; return the JSON."""
    done = kadnode(*args, "--api", api, "--json")
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert done.stderr == ""
    return json.loads(done.stdout)


def assert_one_line_error(done: subprocess.CompletedProcess[str], contains: str = "") -> str:
    """Exit 2, nothing on stdout, exactly one ``kadnode: error:`` line on stderr."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kadnode: error: "), lines[0]
    assert contains in lines[0], lines[0]
    return lines[0]


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    api_port: int
    data_dir: Path
    log_path: Path
    started_at: float

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def api(self) -> str:
        return f"{HOST}:{self.api_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        def check() -> re.Match[str] | None:
            found = pattern.search(self.log())
            if found is None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            return found

        try:
            return wait_for(check, timeout, f"{pattern.pattern!r} in {self.name}'s log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log()}") from None

    def client(self, timeout: float = 10.0) -> ApiClient:
        return ApiClient(self.api, timeout=timeout, token=self.token)

    @property
    def token(self) -> str | None:
        return token_of(self.api)

    def info(self) -> dict:
        return self.client().info()

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig``; the exit status, which must come within STOP_TIMEOUT."""
        self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT)

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def saved_contact_ports(self) -> set[int]:
        """The contacts persisted in the data file, read beside the running daemon."""
        return {port for (port,) in self._saved("SELECT port FROM contacts")}

    def saved_value(self, key: bytes) -> tuple[Kind, Any] | None:
        """The (kind, wire form) the data file holds under ``key``: what a stopped
        daemon will serve when it starts again."""
        rows = self._saved("SELECT kind, value FROM records WHERE key = ?", (key,))
        return (Kind(rows[0][0]), msgpack.unpackb(rows[0][1], raw=False)) if rows else None

    def _saved(self, query: str, args: tuple = ()) -> list[tuple]:
        uri = f"file:{self.data_dir / DATA_FILE}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=2.0)
        try:
            return db.execute(query, args).fetchall()
        finally:
            db.close()


class Daemons:
    """Starts ``kadnode run`` subprocesses; :meth:`close` kills the ones still running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Daemon] = []

    def start(
        self,
        name: str,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        bootstrap: Sequence[Daemon] = (),
        extra: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> Daemon:
        """Start a daemon and wait until it listens (and, with seeds, has joined);
        ``extra``: more ``kadnode run`` options; ``prefix``: a command that execs it
        (``prlimit ...``)."""
        seeds = [seed.addr for seed in bootstrap]
        daemon = self.spawn(
            name, port=port, data_dir=data_dir, bootstrap=seeds, extra=extra, prefix=prefix
        )
        if bootstrap:
            daemon.wait_log(JOINED)
        return daemon

    def spawn(
        self,
        name: str,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        bootstrap: Sequence[str] = (),
        extra: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> Daemon:
        """Start a daemon seeded with ``bootstrap`` addresses; return once it listens."""
        port = port or free_port(socket.SOCK_DGRAM)
        api_port = free_port(socket.SOCK_STREAM)
        data_dir = data_dir or self.root / name
        log_path = self.root / f"{name}.{len(self.started)}.log"
        args = [
            *prefix,
            *KADNODE,
            "run",
            "--host",
            HOST,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--api",
            f"{HOST}:{api_port}",
        ]
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        # Every daemon on 127.0.0.1: the per-address limits are lifted there.
        args += ["--exempt", "127.0.0.0/8", *extra]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=ENV
            )
        daemon = Daemon(name, proc, port, api_port, data_dir, log_path, time.monotonic())
        API_DATA_DIRS[daemon.api] = data_dir
        self.started.append(daemon)
        daemon.wait_log(STARTED)
        return daemon

    def close(self) -> None:
        for daemon in self.started:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
            daemon.proc.wait(STOP_TIMEOUT)


# The ``daemons`` fixture (a Daemons group, closed at teardown) is in conftest.py.


def network(daemons: Daemons, *names: str) -> list[Daemon]:
    """A seed, then every other node joined through it; returns once all know all."""
    seed = daemons.start(names[0])
    nodes = [seed, *(daemons.start(name, bootstrap=[seed]) for name in names[1:])]
    for node in nodes:
        wait_for(lambda n=node: n.info()["peers"] == len(nodes) - 1, 5.0, f"{node.name}'s peers")
    return nodes


class RawNode:
    """A bare UDP socket speaking kadnode's native wire: no node behind it."""

    def __init__(self) -> None:
        self.id = os.urandom(20)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(RAW_TIMEOUT)

    def close(self) -> None:
        self.sock.close()

    def request(self, daemon: Daemon, method: str, args: list) -> Any:
        """One request; the reply's body (requests the daemon sends us are skipped)."""
        msg_id = NATIVE_MAGIC + os.urandom(16)
        self.sock.sendto(encode_request(msg_id, method, [self.id, *args]), (HOST, daemon.port))
        deadline = time.monotonic() + RAW_TIMEOUT
        while time.monotonic() < deadline:
            message = decode(self.sock.recv(MAX_DATAGRAM), MAX_DATAGRAM)
            if type(message) is Response and message.msg_id == msg_id:
                return message.body
        raise AssertionError(f"no reply to {method} from {daemon.name}")

    def token(self, daemon: Daemon) -> bytes:
        reply = self.request(daemon, "ping", [])
        assert {"id", "token"} <= set(reply), reply
        return reply["token"]

    def held(self, daemon: Daemon, key: bytes) -> tuple[Kind, Any] | None:
        """The (kind, wire form) ``daemon`` holds under ``key``; None if it holds nothing."""
        reply = self.request(daemon, "find_value", [key])
        if "value" not in reply:
            return None
        return Kind(reply.get("kind", Kind.PLAIN)), reply["value"]

    def put(self, daemon: Daemon, key: bytes, kind: Kind, wire: Any, token: bytes) -> Any:
        """A kn_put of ``wire`` under ``key``; the reply, ``{"ok": ..., "reason": ...}``."""
        return self.request(daemon, "kn_put", [key, kind, wire, 3600.0, token])

    def record(self, daemon: Daemon, node_id: str) -> list:
        """The peer record ``daemon`` holds for ``node_id``, in wire form."""
        held = self.held(daemon, bytes.fromhex(node_id))
        assert held is not None and held[0] == Kind.PEER, held
        return held[1]

    def put_record(self, daemon: Daemon, node_id: str, wire: list, token: bytes) -> Any:
        return self.put(daemon, bytes.fromhex(node_id), Kind.PEER, wire, token)


# ---- 1. two daemons, the CLI contract --------------------------------------------------------
