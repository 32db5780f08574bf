"""``kadnode run`` as real processes on 127.0.0.1, driven by the CLI and the control API.

Every daemon is a subprocess started through the ``daemons`` fixture, which
SIGKILLs whatever is still running at teardown. Ports come from binding
port-0 sockets; every wait polls against a deadline. ``pytest -s`` shows the
measured numbers (rejoin time, flood counts, RSS).
"""

from __future__ import annotations

import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemons import (
    HOST,
    JOINED,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Daemons,
    assert_one_line_error,
    cli_json,
    free_port,
    kadnode,
    wait_for,
)
from loopback import written

from kadnode.config import MAX_DATAGRAM, NETWORK_MARK
from kadnode.core.codec import REQUEST, RESPONSE, Response, decode, encode_request, encode_response
from kadnode.errors import DecodeError, KadnodeError
from kadnode.shell.httpserver import MAX_CONNECTIONS


def test_lookup_put_get_between_two_daemons(daemons: Daemons) -> None:
    a = daemons.start("a")
    b = daemons.start("b", bootstrap=[a])
    a_id = a.info()["id"]

    found = cli_json("lookup", a_id, api=b.api)
    assert found["found"] is True
    assert found["peer"] == {"id": a_id, "host": HOST, "port": a.port}

    put = cli_json("put", "greeting", "hello from a", api=a.api)
    assert (put["stored"], put["local"]) == (2, True)  # B acknowledged; A holds its own
    got = cli_json("get", "greeting", api=b.api)
    assert {k: got[k] for k in ("key", "found", "value")} == {
        "key": "greeting",
        "found": True,
        "value": "hello from a",
    }
    text = kadnode("get", "greeting", "--api", b.api)
    assert (text.returncode, text.stdout) == (0, "hello from a\n")

    missing = cli_json("get", "no such key", api=b.api, status=1)
    assert {k: missing[k] for k in ("key", "found", "value")} == {
        "key": "no such key",
        "found": False,
        "value": None,
    }


def test_malformed_id_is_one_line(daemons: Daemons) -> None:
    a = daemons.start("a")
    for bad_id in ("zz", "ab" * 19, "g" * 40, "ab" * 21, ""):
        assert_one_line_error(kadnode("lookup", bad_id, "--api", a.api), "id")
    assert a.proc.poll() is None


def test_cli_without_daemon_is_one_line() -> None:
    nobody = f"{HOST}:{free_port(socket.SOCK_STREAM)}"
    for command in (["info"], ["get", "k"], ["put", "k", "v"], ["peers"]):
        assert_one_line_error(kadnode(*command, "--api", nobody), "no kadnode daemon answering")


# ---- 2. SIGKILL, then rejoin from persisted contacts ------------------------------------------


def test_sigkilled_node_rejoins_from_saved_contacts(daemons: Daemons) -> None:
    a = daemons.start("a")
    # C joins before B, so B's join-time table (the one it saves) holds C.
    c = daemons.start("c", bootstrap=[a])
    b = daemons.start("b", bootstrap=[a])
    assert int(JOINED.search(b.log()).group(3)) == 2, b.log()
    b_id, c_id = b.info()["id"], c.info()["id"]
    # The join logs before it saves; poll the data file itself.
    wait_for(lambda: {a.port, c.port} <= b.saved_contact_ports(), 5.0, "B's saved contacts")

    put = cli_json("put", "survivor", "put by b", api=b.api)
    assert written(put) == 3  # B's own copy, A's and C's (acknowledged or on their way)

    b.proc.kill()
    assert b.proc.wait(STOP_TIMEOUT) == -signal.SIGKILL
    assert a.stop(signal.SIGTERM) == 0
    assert "stopped" in a.log()
    assert "Traceback" not in a.log()

    # Published while A and B are down: no replica acknowledges, so the put
    # fails its write quorum (one line), yet C keeps the value as its
    # publisher; B can only learn it through C after rejoining.
    late = kadnode("put", "while b was down", "put by c", "--api", c.api)
    assert_one_line_error(late, "write quorum")

    restarted = daemons.start("b", port=b.port, data_dir=b.data_dir)  # no --bootstrap
    answered, seeds, known = map(int, restarted.wait_log(JOINED).groups())
    rejoin_s = time.monotonic() - restarted.started_at
    print(
        f"\nrejoin: {answered} of {seeds} saved contacts answered, {known} known, "
        f"{rejoin_s:.2f} s from exec to joined"
    )
    assert (answered, seeds) == (1, 2)  # C answered, A is gone
    assert known >= 1

    assert restarted.info()["id"] == b_id
    peers = cli_json("peers", api=restarted.api)
    assert c_id in {p["id"] for p in peers["peers"]}
    for node in (c, restarted):
        got = cli_json("get", "survivor", api=node.api)
        assert (got["found"], got["value"]) == (True, "put by b")
    got = cli_json("get", "while b was down", api=restarted.api)
    assert (got["found"], got["value"]) == (True, "put by c")
    # Only C held it: B read it from C, or C handed it over when B came back.
    assert got["source"] == "local" or got["source"]["id"] == c_id, got


# ---- 3. SIGKILL loses nothing acknowledged ---------------------------------------------------


def test_sigkill_loses_no_acknowledged_value(daemons: Daemons) -> None:
    n_values, writers = 50, 4
    node = daemons.start("solo")
    acked: list[str] = []
    lock = threading.Lock()
    counter = iter(range(10**6))
    enough = threading.Event()

    def writer() -> None:
        client = node.client(timeout=5.0)
        while not enough.is_set():
            with lock:
                key = f"key-{next(counter)}"
            try:
                client.put(key, f"value of {key}")
            except KadnodeError:
                return  # the daemon was killed under us: this one was not acknowledged
            with lock:
                acked.append(key)
                if len(acked) >= n_values:
                    enough.set()

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(30.0), f"only {len(acked)} puts acknowledged"
        node.proc.kill()  # mid-stream: other writers may have puts in flight
    finally:
        enough.set()
        for thread in threads:
            thread.join(10.0)
    assert node.proc.wait(STOP_TIMEOUT) == -signal.SIGKILL
    with lock:
        survivors = list(acked)

    restarted = daemons.start("solo", port=node.port, data_dir=node.data_dir)
    assert restarted.info()["values"] >= len(survivors)
    client = restarted.client()
    lost = []
    for key in survivors:
        got = client.get(key)
        if (got["found"], got["value"], got["source"]) != (True, f"value of {key}", "local"):
            lost.append((key, got))
    print(f"\nsigkill: {len(survivors)} acknowledged puts, {len(lost)} lost")
    assert len(survivors) >= n_values
    assert lost == []


# ---- 4. hostile datagrams ---------------------------------------------------------------------

FLOOD_COUNT = 100_000
# A burst, then a ping the daemon must answer before the next burst: at most
# 65 datagrams wait at its socket, under 150 KB of the default 208 KB buffer
# even at the 2.3 KB that the largest here take of it, so the kernel has no
# reason to drop any, yet the daemon is never idle.
FLOOD_BURST = 64
FLOOD_SYNC_TIMEOUT = 5.0
FLOOD_DEADLINE = 60.0  # the whole flood; it takes 3 to 5 s
FLOOD_SEED = 20241124
# The README ("Limits a hostile network meets") states this same bound.
RSS_GROWTH_LIMIT_KB = 512


def hostile_datagrams(rng: random.Random, count: int) -> Iterator[bytes]:
    """Random bytes, truncated requests, garbage bodies, wrong arities, stray responses."""

    def rid() -> bytes:
        return rng.randbytes(20)

    def valid_request() -> bytes:
        method, args = rng.choice(
            [
                ("ping", [rid()]),
                ("store", [rid(), rid(), "value"]),
                ("find_node", [rid(), rid()]),
                ("find_value", [rid(), rid()]),
            ]
        )
        return encode_request(rid(), method, args)

    wrong_arity = [
        ("ping", lambda: []),
        ("ping", lambda: [rid(), rid()]),
        ("store", lambda: [rid(), rid()]),
        ("store", lambda: [rid(), rid(), "v", 1.0, 2]),
        ("find_node", lambda: [rid()]),
        ("find_node", lambda: [rid(), rid(), rid()]),
        ("find_value", lambda: []),
        ("find_value", lambda: [rid(), rid(), rid()]),
        ("ping", lambda: [rid()[:19]]),  # right arity, id one byte short
        ("no_such_method", lambda: [rid()]),
    ]
    reply_bodies = [
        lambda: rid(),
        lambda: True,
        lambda: [[rid(), HOST, rng.randint(1, 65535)]],
        lambda: {"value": "x", "ttl": 5.0},
        lambda: {"nodes": []},
    ]
    for i in range(count):
        kind = i % 5
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 1500))
        elif kind == 1:
            whole = valid_request()
            yield whole[: rng.randrange(len(whole))]
        elif kind == 2:
            garbage = b"\xc1" if rng.random() < 0.5 else b""  # 0xc1: never valid msgpack
            yield (
                bytes([rng.choice((REQUEST, RESPONSE))])
                + rid()
                + garbage
                + rng.randbytes(rng.randint(1, 200))
            )
        elif kind == 3:
            method, args = rng.choice(wrong_arity)
            yield encode_request(rid(), method, args())
        else:
            yield encode_response(rid(), rng.choice(reply_bodies)())


def expected_outcome(data: bytes) -> str:
    """Which of the daemon's counters this datagram should move."""
    if data[:1] == bytes((NETWORK_MARK,)):  # a private network's mark: dropped undecoded
        return "foreign_datagrams"
    try:
        message = decode(data, MAX_DATAGRAM)
    except DecodeError:
        return "bad_datagrams"
    return "unexpected_responses" if type(message) is Response else "requests_in"


@dataclass
class Flood:
    target: tuple[str, int]
    seed: int
    expected: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    syncs_answered: int = 0
    syncs_missed: int = 0
    seconds: float = 0.0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def _run(self) -> None:
        rng = random.Random(self.seed)
        sync_sender = rng.randbytes(20)
        start = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.settimeout(FLOOD_SYNC_TIMEOUT)
            for data in hostile_datagrams(rng, FLOOD_COUNT):
                sock.sendto(data, self.target)
                self.sent += 1
                self.expected[expected_outcome(data)] += 1
                if self.sent % FLOOD_BURST == 0:
                    self._sync(sock, rng, sync_sender)
                    if time.monotonic() - start > FLOOD_DEADLINE:
                        raise TimeoutError(f"{self.sent} sent in {FLOOD_DEADLINE:g} s")
            self._sync(sock, rng, sync_sender)
        self.seconds = time.monotonic() - start

    def _sync(self, sock: socket.socket, rng: random.Random, sender: bytes) -> None:
        """Ping the daemon and wait (at most FLOOD_SYNC_TIMEOUT) for its reply."""
        msg_id = rng.randbytes(20)
        sock.sendto(encode_request(msg_id, "ping", [sender]), self.target)
        self.expected["requests_in"] += 1
        try:
            while sock.recv(MAX_DATAGRAM)[1:21] != msg_id:
                pass  # a late reply to an earlier sync
        except TimeoutError:
            self.syncs_missed += 1
            return
        self.syncs_answered += 1


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket on 127.0.0.1:``port``
    (its receive buffer was full): the last column of /proc/net/udp."""
    local = f"{socket.htonl(0x7F000001):08X}:{port:04X}"  # as the kernel prints it
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[-1])
    raise AssertionError(f"no UDP socket on {HOST}:{port} in /proc/net/udp")


# The flood measures decoding and counting, not rate limits (tests/core/
# test_limits.py and chaos/attacks flood): the target answers any rate (its
# per-address limits are lifted for loopback, as for every test daemon).
UNLIMITED = ["--requests-per-second", "100000000"]


def test_hostile_datagram_flood(daemons: Daemons) -> None:
    target = daemons.start("target", extra=UNLIMITED)
    helper = daemons.start("helper", bootstrap=[target])
    # A third live node: the flood's raw pinger becomes a contact that never
    # answers, and a put needs a majority of the replica set (write quorum).
    daemons.start("third", bootstrap=[target])
    before = target.info()["stats"]
    drops_before = socket_drops(target.port)
    rss_before = target.rss_kb()

    flood = Flood((HOST, target.port), FLOOD_SEED)
    thread = threading.Thread(target=flood.run, daemon=True)
    thread.start()
    checks, slowest = 0, 0.0
    while thread.is_alive() or checks == 0:
        t = time.monotonic()
        pong = cli_json("ping", target.addr, api=helper.api)
        assert pong["alive"] is True, pong
        assert target.info()["id"] == pong["id"]
        checks += 1
        slowest = max(slowest, time.monotonic() - t)
    thread.join(60.0)
    assert not thread.is_alive(), "the flood did not end"
    if flood.error is not None:
        raise flood.error
    # The last sync was answered: the daemon has read every datagram before it.
    after = target.info()["stats"]
    dropped = socket_drops(target.port) - drops_before
    rss_after = target.rss_kb()

    moved = Counter({name: after[name] - before.get(name, 0) for name in after})
    print(
        f"\nflood (seed {FLOOD_SEED}): {flood.sent} hostile datagrams in {flood.seconds:.2f} s "
        f"({flood.sent / flood.seconds:,.0f}/s), bursts of {FLOOD_BURST}, "
        f"syncs answered {flood.syncs_answered}, missed {flood.syncs_missed}"
    )
    print(f"  dropped by the kernel at the daemon's socket: {dropped}")
    for name, expected in sorted(flood.expected.items()):
        print(f"  {name}: sent {expected}, counted {moved[name]}")
    print(f"  internal_errors: {moved['internal_errors']}")
    print(
        f"  rss: {rss_before} kB before, {rss_after} kB after "
        f"({rss_after - rss_before:+d} kB; bound {RSS_GROWTH_LIMIT_KB} kB)"
    )
    print(f"  liveness: {checks} ping+info checks during the flood, slowest {slowest:.2f} s")

    assert moved["internal_errors"] == 0
    # Every one counted: all reached the daemon, and each moved its counter.
    assert dropped == 0, f"the kernel dropped {dropped} at the daemon's socket"
    assert moved["bad_datagrams"] == flood.expected["bad_datagrams"]
    assert moved["foreign_datagrams"] == flood.expected["foreign_datagrams"]
    # Stray replies: the flood's, and any live peer's reply that came after the
    # target had retransmitted or given up (at most one per retransmission or
    # timeout of its own).
    late = moved["retransmits"] + moved["timeouts"]
    unexpected = moved["unexpected_responses"] - flood.expected["unexpected_responses"]
    assert 0 <= unexpected <= late, (unexpected, late)
    # Well-formed requests: the flood's (its syncs) and the live peers'.
    assert moved["requests_in"] >= flood.expected["requests_in"]
    assert rss_after - rss_before <= RSS_GROWTH_LIMIT_KB

    pong = cli_json("ping", target.addr, api=helper.api)
    assert pong["alive"] is True
    cli_json("put", "after the flood", "still here", api=helper.api)
    got = cli_json("get", "after the flood", api=target.api)
    assert got["value"] == "still here"
    assert "Traceback" not in target.log()


SLOWLORIS = 2000
SYSTEMD_NOFILE = 1024  # a systemd service's default open-file limit


def test_two_thousand_idle_connections_keep_neither_a_real_call_nor_udp_out(
    daemons: Daemons,
) -> None:
    """2,000 connections each hold half a request head (slowloris) against a daemon
    held to systemd's open-file limit: it keeps at most MAX_CONNECTIONS of them open,
    a real call is answered, and the node still answers on UDP."""
    limit = ("prlimit", f"--nofile={SYSTEMD_NOFILE}:{SYSTEMD_NOFILE}")
    target = daemons.start("target", prefix=limit)
    helper = daemons.start("helper", bootstrap=[target])
    held: list[socket.socket] = []
    try:
        for _ in range(SLOWLORIS):
            conn = socket.create_connection((HOST, target.api_port), timeout=5)
            conn.sendall(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
            held.append(conn)
        started = time.monotonic()
        info = target.client(timeout=10).info()
        took = time.monotonic() - started
        assert info["port"] == target.port
        pong = cli_json("ping", target.addr, api=helper.api)
        assert pong["alive"], pong
        open_files = len(list(Path(f"/proc/{target.proc.pid}/fd").iterdir()))
        print(f"  {SLOWLORIS} held: a real call took {took * 1000:.0f} ms; {open_files} files open")
        assert open_files < MAX_CONNECTIONS + 64  # the log, the socket, the database...
    finally:
        for conn in held:
            conn.close()


def test_the_readme_states_the_flood_tests_numbers() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    limits = readme.split("### Limits a hostile network meets")[1].split("\n#")[0]
    prose = " ".join(limits.split())
    for claim in (
        f"{FLOOD_COUNT:,} hostile datagrams",
        f"bursts of {FLOOD_BURST}",
        f"within {RSS_GROWTH_LIMIT_KB / 1024:g} MB",
        "every one counted",
        "pytest tests/shell/test_daemon.py -k flood -s",
    ):
        assert claim in prose, claim


# ---- 5. clean shutdown and a busy port ------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly(daemons: Daemons, sig: signal.Signals) -> None:
    seed = daemons.start("seed")
    node = daemons.start("node", bootstrap=[seed])
    t = time.monotonic()
    assert node.stop(sig) == 0
    print(f"\n{sig.name}: exited 0 in {time.monotonic() - t:.2f} s")
    log = node.log()
    assert "stopping" in log and log.rstrip().endswith("stopped"), log
    assert "Traceback" not in log


def test_signal_while_joining_stops_cleanly(daemons: Daemons) -> None:
    # The only seed is silent: the join is still waiting on its pings.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    silent.settimeout(START_TIMEOUT)
    try:
        dead_seed = f"{HOST}:{silent.getsockname()[1]}"
        node = daemons.spawn("joining", bootstrap=[dead_seed])
        assert silent.recv(MAX_DATAGRAM)  # the join's ping: it is waiting now
        assert node.stop(signal.SIGTERM) == 0
        assert "joined" not in node.log()
        assert node.log().rstrip().endswith("stopped")
    finally:
        silent.close()


def test_busy_ports_fail_with_one_line(daemons: Daemons, tmp_path: Path) -> None:
    first = daemons.start("first")
    other_udp = free_port(socket.SOCK_DGRAM)
    other_api = free_port(socket.SOCK_STREAM)
    for name, port, api_port in [
        ("udp", first.port, other_api),
        ("api", other_udp, first.api_port),
    ]:
        done = kadnode(
            "run",
            "--host",
            HOST,
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / f"second-{name}"),
            "--api",
            f"{HOST}:{api_port}",
            timeout=START_TIMEOUT,
        )
        assert_one_line_error(done, "kadnode: error: cannot listen: ")
        assert not (tmp_path / f"second-{name}").exists()  # a failed start leaves nothing
    assert first.proc.poll() is None
    assert first.info()["port"] == first.port
