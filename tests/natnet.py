"""A real NAT built from Linux network namespaces, kadnode daemons on both sides. Does I/O.

Every namespace is named ``TAG`` + a suffix; :meth:`NatNet.build` makes them
and :meth:`NatNet.close` deletes exactly the ones it made (and ends, by pid,
every process this module started). Traffic never leaves them::

    pub1 .. pubN  198.18.(10+i).2/24 --+
    probe         198.18.50.2/24   ----+-- inet: a router, each /24's gateway at .1
    nat (wan)     198.18.100.2/24  ----+
    nat (br0)     10.77.0.1/24, MASQUERADE out of wan, no port forwarding
    priv1, priv2  10.77.0.2, 10.77.0.3 on nat's bridge

Each public host has a /24 of its own in 198.18.0.0/15 (RFC 2544's benchmarking
range): kadnode limits contacts per /24, and no ``--exempt`` lifts that here.
``inet`` knows no route to 10.77.0.0/24, so a public host reaches a private one
only through a binding the private one made by sending first; Linux conntrack
lets in only replies from the address and port it sent to (a port-restricted
NAT). ``probe`` runs no daemon: it is the stranger that tells whether an address
in a routing table answers anyone but the nodes it already talks to.

Every daemon listens on 0.0.0.0:8467 with its control API on 127.0.0.1:8468,
each namespace having a loopback of its own, with no --advertise: each finds
its own interface address (its default route's source), and a private one
learns the NAT's mapping from what its peers see (kadnode.core.reach). The
public ones join through pub1, the private ones through pub1 and pub2.

For the tests' assertions: :meth:`NatNet.info`, :meth:`NatNet.contacts`,
:meth:`NatNet.cli` (any API verb, as JSON), :meth:`NatNet.private_entries`,
:meth:`NatNet.probe_ping`, :meth:`NatNet.unreachable_public_entries` and
:meth:`NatNet.udp_through_nat`. Needs root, ``ip`` and ``iptables``
(:func:`missing` says what is absent).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons import CLI_TIMEOUT, JOINED, KADNODE, START_TIMEOUT, STARTED, STOP_TIMEOUT, wait_for

ROOT = Path(__file__).resolve().parents[1]
PROBE = str(ROOT / "tests" / "natprobe.py")
PORT = 8467
API = "127.0.0.1:8468"
NAT_WAN = "198.18.100.2"
WAN_NET = "198.18.100"
PROBE_NET = "198.18.50"
LAN_NET = "10.77.0"
LAN = f"{LAN_NET}.0/24"
# No KADNODE_* setting of the machine's reaches the daemons; this checkout's package does.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("KADNODE_")} | {
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
SETTLE_TIMEOUT = 20.0  # for the tables to fill after the joins
PROBE_PING_S = 2.0


def missing() -> str | None:
    """Why the topology cannot be built here; None when it can."""
    if os.geteuid() != 0:
        return "the NAT topology needs root (ip netns, iptables)"
    absent = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if absent:
        return f"the NAT topology needs {' and '.join(absent)} on PATH"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return "ip netns does not work here"
    return None


def run(argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=ENV)


def must(argv: Sequence[str]) -> None:
    done = run(argv)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass
class Host:
    """One namespace with one daemon: ``pub3``, ``priv1`` ..."""

    name: str
    ns: str
    ip: str
    public: bool
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    id: str = ""  # the daemon's node id (hex), once it has started

    @property
    def addr(self) -> str:
        return f"{self.ip}:{PORT}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class NatNet:
    """The topology and its daemons: :meth:`build`, :meth:`start`, then always :meth:`close`.
    ``root`` holds the data directories and logs; ``tag`` prefixes every namespace's name
    (unique per run: ``knat<pid>-``)."""

    root: Path
    tag: str
    n_public: int = 5
    n_private: int = 2
    extra: Sequence[str] = ()  # more ``kadnode run`` options, for every daemon
    namespaces: list[str] = field(default_factory=list, init=False)  # ours: close deletes them
    helpers: list[subprocess.Popen[str]] = field(default_factory=list, init=False)
    public: list[Host] = field(init=False)
    private: list[Host] = field(init=False)
    probe_ns: str = field(init=False)

    def __post_init__(self) -> None:
        # 198.18.11-49 for public hosts (50 is the probe's, 100 the NAT's); 10.77.0.2-254.
        assert 1 <= self.n_public <= 39 and 1 <= self.n_private <= 253

        def host(name: str, ip: str, public: bool) -> Host:
            data = self.root / name
            return Host(name, self.tag + name, ip, public, data, self.root / f"{name}.log")

        self.public = [
            host(f"pub{i}", f"198.18.{10 + i}.2", True) for i in range(1, self.n_public + 1)
        ]
        self.private = [
            host(f"priv{j}", f"{LAN_NET}.{1 + j}", False) for j in range(1, self.n_private + 1)
        ]
        self.probe_ns = self.tag + "probe"

    @property
    def hosts(self) -> list[Host]:
        return [*self.public, *self.private]

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def label(self, contact: dict[str, Any]) -> str:
        """A contact as ``name@host:port`` (``?`` for an id none of our daemons has)."""
        return f"{self.name_of(contact['id']) or '?'}@{contact['host']}:{contact['port']}"

    def name_of(self, node_id: str) -> str | None:
        """Which of our daemons has ``node_id``; None for none of them."""
        return next((h.name for h in self.hosts if h.id == node_id), None)

    # ---- the topology ------------------------------------------------------------------------

    def _netns(self, ns: str) -> str:
        must(["ip", "netns", "add", ns])  # fails if the name is taken: then it is not ours
        self.namespaces.append(ns)
        must(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def _link(self, router: str, router_if: str, ns: str, net: str, inner: str = "eth0") -> None:
        """A veth from ``router`` (at net.1/24) into ``ns`` (at net.2/24, its default route)."""
        must(["ip", "-n", router, "link", "add", router_if, "type", "veth",
              "peer", "name", inner, "netns", ns])  # fmt: skip
        must(["ip", "-n", router, "addr", "add", f"{net}.1/24", "dev", router_if])
        must(["ip", "-n", router, "link", "set", router_if, "up"])
        must(["ip", "-n", ns, "addr", "add", f"{net}.2/24", "dev", inner])
        must(["ip", "-n", ns, "link", "set", inner, "up"])
        must(["ip", "-n", ns, "route", "add", "default", "via", f"{net}.1"])

    def _forward(self, ns: str) -> None:
        must(["ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])

    def build(self) -> None:
        inet = self._netns(self.tag + "inet")
        self._forward(inet)
        for i, host in enumerate(self.public, 1):
            self._link(inet, f"p{i}", self._netns(host.ns), f"198.18.{10 + i}")
        self._link(inet, "probe", self._netns(self.probe_ns), PROBE_NET)
        nat = self._netns(self.tag + "nat")
        self._link(inet, "nat", nat, WAN_NET, inner="wan")
        self._forward(nat)
        must(["ip", "-n", nat, "link", "add", "br0", "type", "bridge"])
        must(["ip", "-n", nat, "addr", "add", f"{LAN_NET}.1/24", "dev", "br0"])
        must(["ip", "-n", nat, "link", "set", "br0", "up"])
        for j, host in enumerate(self.private, 1):
            self._netns(host.ns)
            must(["ip", "-n", nat, "link", "add", f"l{j}", "type", "veth",
                  "peer", "name", "eth0", "netns", host.ns])  # fmt: skip
            must(["ip", "-n", nat, "link", "set", f"l{j}", "master", "br0", "up"])
            must(["ip", "-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0"])
            must(["ip", "-n", host.ns, "link", "set", "eth0", "up"])
            must(["ip", "-n", host.ns, "route", "add", "default", "via", f"{LAN_NET}.1"])
        must(["ip", "netns", "exec", nat, "iptables", "-t", "nat", "-A", "POSTROUTING",
              "-s", LAN, "-o", "wan", "-j", "MASQUERADE"])  # fmt: skip

    # ---- daemons -----------------------------------------------------------------------------

    def _spawn(self, host: Host, seeds: Sequence[Host]) -> None:
        host.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["ip", "netns", "exec", host.ns, *KADNODE, "run",
                "--host", "0.0.0.0", "--port", str(PORT), "--data-dir", str(host.data_dir),
                "--api", API, *self.extra]  # fmt: skip
        for seed in seeds:
            argv += ["--bootstrap", seed.addr]
        with host.log_path.open("ab") as log:
            host.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=ENV
            )

    def _wait_log(self, host: Host, pattern: re.Pattern[str]) -> None:
        def seen() -> bool:
            if pattern.search(host.log()):
                return True
            if host.proc is not None and host.proc.poll() is not None:
                raise AssertionError(f"{host.name} exited {host.proc.returncode}:\n{host.log()}")
            return False

        try:
            wait_for(seen, START_TIMEOUT, f"{pattern.pattern!r} in {host.name}'s log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {host.name} log ---\n{host.log()}") from None

    def start(self) -> None:
        """pub1 alone, then the other public nodes through it, then the private ones
        through pub1 and pub2; return once every table holds every public node."""
        first, *rest = self.public
        self._spawn(first, [])
        self._wait_log(first, STARTED)
        for host in rest:
            self._spawn(host, [first])
        for host in rest:
            self._wait_log(host, JOINED)
        for host in self.private:
            self._spawn(host, self.public[:2])
        for host in self.private:
            self._wait_log(host, JOINED)
        for host in self.hosts:
            host.id = self.info(host)["id"]
        for host in self.hosts:
            others = {h.id for h in self.public} - {host.id}
            wait_for(
                lambda h=host, o=others: o <= {c["id"] for c in self.contacts(h)},
                SETTLE_TIMEOUT,
                f"{host.name}'s table to hold every public node",
            )

    # ---- commands in a namespace -------------------------------------------------------------

    def run_in(self, ns: str, argv: Sequence[str], timeout: float = CLI_TIMEOUT):
        return run(["ip", "netns", "exec", ns, *argv], timeout=timeout)

    def cli_run(self, host: Host, *args: str, timeout: float = CLI_TIMEOUT, json: bool = True):
        """``kadnode [--json] ARGS`` against ``host``'s daemon; the finished process."""
        argv = [*KADNODE, "--api", API, "--data-dir", str(host.data_dir)]
        argv += ["--json", *args] if json else list(args)
        return self.run_in(host.ns, argv, timeout)

    def cli(self, host: Host, *args: str, timeout: float = CLI_TIMEOUT) -> Any:
        """``kadnode --json ARGS`` against ``host``'s daemon; its JSON (exit 0 asserted)."""
        done = self.cli_run(host, *args, timeout=timeout)
        assert done.returncode == 0, (
            f"{host.name}: kadnode {' '.join(args)} exited {done.returncode}: "
            f"{done.stderr.strip() or done.stdout.strip()}"
        )
        return json.loads(done.stdout)

    def info(self, host: Host) -> dict[str, Any]:
        """``kadnode info``: id, host, port, peers, values, stats ..."""
        return self.cli(host, "info")

    def contacts(self, host: Host) -> list[dict[str, Any]]:
        """``host``'s routing table: ``{"id", "host", "port", "failures", "last_seen_s"}`` each."""
        return self.cli(host, "peers")["peers"]

    def private_entries(self) -> dict[str, list[dict[str, Any]]]:
        """For each public node, the contacts its table holds for private nodes, each with
        ``"node"``: which private node (``priv1`` ...)."""
        private = {h.id: h.name for h in self.private}
        return {
            host.name: [
                {**c, "node": private[c["id"]]} for c in self.contacts(host) if c["id"] in private
            ]
            for host in self.public
        }

    # ---- UDP from inside the namespaces (tests/natprobe.py) --------------------------------

    def _helper(self, ns: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, PROBE, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=ENV,
        )  # fmt: skip
        self.helpers.append(proc)
        return proc

    def _line(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        """The helper's next JSON line (its own timeouts bound the wait)."""
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            proc.wait(STOP_TIMEOUT)
            said = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"natprobe said nothing: {said}")
        return json.loads(line)

    def probe_ping(self, addresses: Sequence[str], ns: str | None = None) -> dict[str, str | None]:
        """A native kadnode ping from a socket no node stands behind, in ``ns`` (default:
        the probe namespace, which has never sent anything else); ``HOST:PORT`` -> the
        node id that answered, or None. The pinged node may add the prober as a contact
        (the sender of a request is one), which then falls silent."""
        if not addresses:
            return {}
        proc = self._helper(ns or self.probe_ns, "ping", str(PROBE_PING_S), *addresses)
        answered = self._line(proc)
        proc.wait(STOP_TIMEOUT)
        return answered

    def unreachable_public_entries(self) -> list[dict[str, Any]]:
        """Every entry of a public node's table whose address does not answer a ping from the
        probe namespace, a stranger; each is the contact with ``"table"`` (whose table) and
        ``"node"`` (whose id it carries, or None). Entries for public nodes are expected to
        answer; entries for private nodes that name the NAT's WAN address are expected not
        to (a port-restricted NAT lets in only the peers a node sent to)."""
        tables = {host.name: self.contacts(host) for host in self.public}
        addresses = sorted({f"{c['host']}:{c['port']}" for t in tables.values() for c in t})
        answered = self.probe_ping(addresses)
        return [
            {**c, "table": name, "node": self.name_of(c["id"])}
            for name, table in tables.items()
            for c in table
            if answered.get(f"{c['host']}:{c['port']}") != c["id"]
        ]

    def udp_through_nat(
        self, private: Host, public: Host, stranger: Host, port: int = 40001, seconds: float = 2.0
    ) -> dict[str, Any]:
        """``private`` sends one datagram from ``port`` to an echo on ``public``; then, while
        ``private`` listens on that port, ``stranger`` (a public host) sends to the mapped
        address the echo saw and to ``private``'s own LAN address. Returns ``{"mapped":
        "ip:port" the echo saw (None: no echo came back), "arrived": [what reached
        ``private`` after the echo]}``."""
        echo = self._helper(public.ns, "echo", str(port), str(seconds + 5.0))
        assert self._line(echo) == {"ready": True}
        natted = self._helper(private.ns, "natted", str(port), f"{public.ip}:{port}", str(seconds))
        mapped = self._line(natted)["mapped"]
        targets = [f"{private.ip}:{port}"] + ([mapped] if mapped else [])
        sender = self._helper(stranger.ns, "send", *targets)
        sender.wait(STOP_TIMEOUT)
        arrived = []
        while "done" not in (line := self._line(natted)):
            arrived.append(line)
        natted.wait(STOP_TIMEOUT)
        echo.kill()
        echo.wait(STOP_TIMEOUT)
        return {"mapped": mapped, "arrived": arrived}

    # ---- teardown ----------------------------------------------------------------------------

    def tail_logs(self, lines: int = 15) -> str:
        return "\n".join(
            f"--- {h.name} ---\n" + "\n".join(h.log().splitlines()[-lines:]) for h in self.hosts
        )

    def close(self) -> list[str]:
        """End every process we started (by its pid), then delete our namespaces;
        what is left over (namespaces that would not go), for the caller to report."""
        procs = [h.proc for h in self.hosts if h.proc is not None] + self.helpers
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        left = []
        for ns in reversed(self.namespaces):
            if run(["ip", "netns", "del", ns]).returncode != 0:
                left.append(ns)
        self.namespaces = left
        return left
