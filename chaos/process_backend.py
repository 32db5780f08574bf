"""The process and netns backends: ``kadnode run`` daemons as local processes. Does I/O.

process: every daemon on 127.0.0.1 with a UDP port and an API port of its own.
It needs nothing but this checkout's venv, and offers kill and churn only: the
nodes share one network stack, so there is no per-node place for DROP rules.

netns (root, ``ip``, ``iptables``): every daemon in a network namespace of its
own, ``NAME-1`` ..., wired by veth pairs to a bridge that lives in a namespace
``NAME-hub`` (never in the host's), on 198.18.0.0/24, the range RFC 2544 sets
aside for test networks. A namespace ``NAME-dns`` runs bootstrap/seed_dns.py
with a zone that publishes the two bootstrap nodes under SRV
``_kadnode._udp.seeds.kadchaos.test``; every node joins with
``--dns-seed seeds.kadchaos.test --dns-server 198.18.0.2``. Partition, loss and
delay are iptables/tc inside the node's namespace (``ip netns exec``).

Both keep their state (pids, addresses, data directories, logs) in a state
directory, so ``up``, the faults and ``down`` can be separate commands. A pid
is only signalled while its /proc start time still matches the recorded one,
and a state directory (or state file) that is not ours alone -- owned by another
user, writable by group or others, or a symlink -- is refused before it is read:
the netns backend runs as root, and its default lives in /tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

from .cluster import Backend, ChaosError, NetnsFaults, Node, Status

READY_TIMEOUT = 30.0
NETNS_PORT = 8467
NETNS_API = "127.0.0.1:8468"
SUBNET = "198.18.0"  # RFC 2544 benchmarking range; lives only in our namespaces
DNS_IP = f"{SUBNET}.2"
SEED_NAME = "seeds.kadchaos.test"
ROOT = Path(__file__).resolve().parent.parent


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22); None if gone or dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: not running
        return None
    return int(fields[19])


def _check_private(path: Path, directory: bool) -> None:
    """Refuse ``path`` unless it is ours alone: a real directory (or regular file), owned by
    this user, writable by no group or other user. Nothing there yet is fine."""
    what = "state directory" if directory else "state file"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ChaosError(f"{what} {path}: {exc.strerror}") from None
    kind_ok = S_ISDIR(info.st_mode) if directory else S_ISREG(info.st_mode)
    if not kind_ok:
        problem = "is a symlink or not a " + ("directory" if directory else "regular file")
    elif info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
    elif info.st_mode & 0o022:
        problem = f"is writable by group or others (mode {info.st_mode & 0o777:o})"
    else:
        return
    raise ChaosError(
        f"refusing {what} {path}: it {problem}; remove it or pass --state-dir elsewhere"
    )


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ProcessBackend(Backend):
    name = "process"
    EXEMPT = "127.0.0.0/8"  # every daemon on loopback
    faults = frozenset({"kill", "churn", "delay"})

    def __init__(self, cluster: str = "kadchaos", state_dir: Path | None = None):
        self.cluster = cluster
        self.dir = state_dir or Path(f"/tmp/{cluster}-{self.name}")
        self.state_file = self.dir / "state.json"
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.lock = threading.RLock()
        self.state: dict[str, Any] = self._load()

    # ---- state ----

    def _check_dir(self) -> None:
        """Before anything in the state directory is read or trusted."""
        _check_private(self.dir, directory=True)
        _check_private(self.state_file, directory=False)

    def _load(self) -> dict[str, Any]:
        self._check_dir()
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self) -> None:
        with self.lock:  # nodes start and stop from several threads
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=1))
            tmp.chmod(0o644)  # never group-writable, whatever the umask: _check_dir refuses that
            tmp.replace(self.state_file)

    def _entry(self, node: Node) -> dict[str, Any]:
        for entry in self.state.get("nodes", []):
            if entry["name"] == node.name:
                return entry
        raise ChaosError(f"no node {node.name} in cluster {self.cluster!r}")

    def exists(self) -> bool:
        return bool(self.state.get("nodes"))

    def nodes(self) -> list[Node]:
        found = [
            Node(e["name"], e["ip"], e["port"], e["role"]) for e in self.state.get("nodes", [])
        ]
        return sorted(found, key=lambda n: (not n.bootstrap, n.name))

    # ---- what differs between process and netns ----

    def _prepare(self, count: int) -> None:
        """Set up whatever the nodes need before the first one starts."""

    def _new_entry(self, index: int, role: str) -> dict[str, Any]:
        return {
            "name": f"boot-{index}" if role == "bootstrap" else f"node-{index:02d}",
            "role": role,
            "ip": "127.0.0.1",
            "port": _free_port(socket.SOCK_DGRAM),
            "api": f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}",
            "index": index,
        }

    def _prefix(self, entry: dict[str, Any]) -> list[str]:
        return []

    def _listen_host(self, entry: dict[str, Any]) -> str:
        return entry["ip"]

    def _seed_args(self, entry: dict[str, Any]) -> list[str]:
        boots = [e for e in self.state["nodes"] if e["role"] == "bootstrap" and e is not entry]
        return [arg for e in boots for arg in ("--bootstrap", f"{e['ip']}:{e['port']}")]

    def _teardown(self) -> list[str]:
        return []

    # ---- lifecycle ----

    def up(self, count: int, progress: Any) -> list[Node]:
        if count < 3:
            raise ChaosError("a cluster needs at least 3 nodes (2 of them bootstrap nodes)")
        if self.exists():
            raise ChaosError(f"cluster {self.cluster!r} is up already: run 'down' first")
        # 0o755 whatever the umask; and check again: it may have appeared since __init__.
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._check_dir()
        self.state = {"backend": self.name, "cluster": self.cluster, "nodes": []}
        self._save()
        self._prepare(count)
        for index in range(1, count + 1):
            role = "bootstrap" if index <= 2 else "node"
            entry = self._new_entry(index, role)
            self.state["nodes"].append(entry)
        self._save()
        for entry in self.state["nodes"][:2]:
            self._launch(entry)
        for entry in self.state["nodes"][:2]:
            self._wait_api(entry)
        progress("bootstrap nodes answer; starting the others")
        for entry in self.state["nodes"][2:]:
            self._launch(entry)
        for entry in self.state["nodes"][2:]:
            self._wait_api(entry)
        return self.nodes()

    def _data_dir(self, entry: dict[str, Any]) -> Path:
        return self.dir / "data" / entry["name"]

    def _launch(self, entry: dict[str, Any]) -> None:
        data = self._data_dir(entry)
        data.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / f"{entry['name']}.log"
        argv = [
            *self._prefix(entry),
            _venv_bin("kadnode"),
            "run",
            "--host",
            self._listen_host(entry),
            "--port",
            str(entry["port"]),
            "--data-dir",
            str(data),
            "--api",
            entry["api"],
            "--allow-fault-injection",
            # Every node in one range (loopback, or the namespaces' /24): lift
            # the per-address and per-subnet limits there.
            "--exempt",
            self.EXEMPT,
            *self._seed_args(entry),
        ]
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.children[child.pid] = child
        entry.update(pid=child.pid, start=_start_time(child.pid), killed=False, log=str(log_path))
        self._save()

    def _alive(self, entry: dict[str, Any]) -> bool:
        pid = entry.get("pid")
        child = self.children.get(pid) if pid else None
        if child is not None and child.poll() is not None:
            entry["exit"] = child.returncode
            return False
        return bool(pid) and _start_time(pid) == entry.get("start") is not None

    def _wait_api(self, entry: dict[str, Any]) -> None:
        node = Node(entry["name"], entry["ip"], entry["port"], entry["role"])
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self._alive(entry):
                raise ChaosError(f"{entry['name']} exited: {self.logs(node, 5).strip()}")
            code, _, _ = self.exec(node, [_venv_bin("kadnode"), "info"], timeout=10)
            if code == 0:
                return
            time.sleep(0.3)
        raise ChaosError(f"{entry['name']}: control API not answering after {READY_TIMEOUT} s")

    def status(self, node: Node) -> Status:
        entry = self._entry(node)
        if self._alive(entry):
            return Status(True, False, "running")
        if entry.get("killed"):
            return Status(False, False, "killed by the harness (SIGKILL)")
        exit_code = entry.get("exit")
        detail = "exited" if exit_code is None else f"exited with code {exit_code}"
        return Status(False, True, detail)

    def _signal(self, entry: dict[str, Any], sig: int) -> None:
        if self._alive(entry):
            os.kill(entry["pid"], sig)
        child = self.children.pop(entry.get("pid") or -1, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
        else:  # started by an earlier command: wait for it to go
            deadline = time.monotonic() + 10
            while _start_time(entry["pid"]) == entry.get("start") and time.monotonic() < deadline:
                time.sleep(0.05)

    def kill(self, node: Node) -> None:
        entry = self._entry(node)
        self._signal(entry, signal.SIGKILL)
        entry["killed"] = True
        self._save()

    def start(self, node: Node) -> None:
        entry = self._entry(node)
        if self._alive(entry):
            return
        self._launch(entry)
        self._wait_api(entry)

    def add_node(self) -> Node:
        index = max(e["index"] for e in self.state["nodes"]) + 1
        entry = self._new_entry(index, "node")
        self.state["nodes"].append(entry)
        self._launch(entry)
        self._wait_api(entry)
        return Node(entry["name"], entry["ip"], entry["port"], entry["role"])

    def remove(self, node: Node) -> None:
        entry = self._entry(node)
        self._signal(entry, signal.SIGKILL)
        shutil.rmtree(self.dir / "data" / entry["name"], ignore_errors=True)
        self.state["nodes"].remove(entry)
        self._remove_node(entry)
        self._save()

    def _remove_node(self, entry: dict[str, Any]) -> None:
        """Per-node teardown for a node removed before ``down``."""

    def down(self) -> list[str]:
        removed = []
        for entry in self.state.get("nodes", []):
            if entry.get("pid") and self._alive(entry):
                self._signal(entry, signal.SIGKILL)
                removed.append(f"process {entry['pid']} ({entry['name']})")
        removed += self._teardown()
        if self.dir.exists():
            shutil.rmtree(self.dir)
            removed.append(f"state directory {self.dir}")
        self.state = {}
        return removed

    # ---- commands on nodes ----

    @property
    def kadnode(self) -> str:
        return _venv_bin("kadnode")

    @property
    def python(self) -> str:
        return sys.executable

    def exec(self, node: Node, argv: list[str], timeout: float) -> tuple[int, str, str]:
        entry = self._entry(node)
        data = self._data_dir(entry)
        env = {**os.environ, "KADNODE_API": entry["api"], "KADNODE_DATA_DIR": str(data)}
        result = subprocess.run(
            [*self._prefix(entry), *argv], capture_output=True, text=True, timeout=timeout, env=env
        )
        return result.returncode, result.stdout, result.stderr

    def logs(self, node: Node, lines: int = 20) -> str:
        try:
            text = Path(self._entry(node)["log"]).read_text(errors="replace")
        except (OSError, KeyError, ChaosError):
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise ChaosError(f"ip {' '.join(args)}: {result.stderr.strip()}")


class NetnsBackend(NetnsFaults, ProcessBackend):
    name = "netns"
    EXEMPT = f"{SUBNET}.0/24"  # every namespace's address
    faults = frozenset({"partition", "loss", "delay", "kill", "churn"})

    def __init__(self, cluster: str = "kadchaos", state_dir: Path | None = None):
        if os.geteuid() != 0:
            raise ChaosError("the netns backend needs root (ip netns, iptables)")
        for tool in ("ip", "iptables", "nsenter"):
            if shutil.which(tool) is None:
                raise ChaosError(f"the netns backend needs {tool!r} on PATH")
        super().__init__(cluster, state_dir)

    def _hub(self) -> str:
        return f"{self.cluster}-hub"

    def _prepare(self, count: int) -> None:
        if count > 240:
            raise ChaosError("the netns backend addresses at most 240 nodes")
        hub = self._hub()
        # A namespace is recorded (for down to delete) only once our ``ip netns add``
        # made it: if the name was taken, the namespace is someone else's.
        self.state["namespaces"] = []
        _ip("netns", "add", hub)
        self.state["namespaces"].append(hub)
        self._save()
        _ip("-n", hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub, "link", "set", "br0", "up")
        dns_ns = f"{self.cluster}-dns"
        self._wire(dns_ns, "vdns", DNS_IP)
        boots = [(f"boot-{i}", f"{SUBNET}.{10 + i}") for i in (1, 2)]
        zone = "".join(
            f"_kadnode._udp.{SEED_NAME}. IN SRV 10 50 {NETNS_PORT} {name}.kadchaos.test.\n"
            f"{name}.kadchaos.test. IN A {ip}\n"
            for name, ip in boots
        )
        zone_file = self.dir / "seeds.zone"
        zone_file.write_text(zone)
        log = open(self.dir / "seed-dns.log", "ab")  # noqa: SIM115 (the child keeps it)
        child = subprocess.Popen(
            ["ip", "netns", "exec", dns_ns, sys.executable, str(ROOT / "bootstrap" / "seed_dns.py"),
             "--zone", str(zone_file), "--listen", f"{DNS_IP}:53"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.children[child.pid] = child
        self.state["dns"] = {"pid": child.pid, "start": _start_time(child.pid)}
        self._save()

    def _wire(self, ns: str, veth: str, ip: str) -> None:
        """A namespace with one interface, eth0 at ``ip``, on the hub's bridge."""
        _ip("netns", "add", ns)  # fails if the name is taken: then it is not ours to record
        self.state["namespaces"].append(ns)
        self._save()
        _ip("-n", self._hub(), "link", "add", veth, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        _ip("-n", self._hub(), "link", "set", veth, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def _new_entry(self, index: int, role: str) -> dict[str, Any]:
        if index > 240:
            raise ChaosError("the netns backend addresses at most 240 nodes")
        entry = {
            "name": f"boot-{index}" if role == "bootstrap" else f"node-{index:02d}",
            "role": role,
            "ip": f"{SUBNET}.{10 + index}",
            "port": NETNS_PORT,
            "api": NETNS_API,
            "index": index,
            "ns": f"{self.cluster}-{index}",
        }
        self._wire(entry["ns"], f"v{index}", entry["ip"])
        return entry

    def _prefix(self, entry: dict[str, Any]) -> list[str]:
        return ["ip", "netns", "exec", entry["ns"]]

    def _listen_host(self, entry: dict[str, Any]) -> str:
        return "0.0.0.0"  # alone in its namespace

    def _seed_args(self, entry: dict[str, Any]) -> list[str]:
        # --advertise: the namespace shares the host's name, which resolves to
        # no address of the namespace's own.
        return ["--dns-seed", SEED_NAME, "--dns-server", DNS_IP,
                "--advertise", f"{entry['ip']}:{entry['port']}"]  # fmt: skip

    def _remove_node(self, entry: dict[str, Any]) -> None:
        subprocess.run(["ip", "netns", "del", entry["ns"]], capture_output=True, timeout=30)
        if entry["ns"] in self.state.get("namespaces", []):
            self.state["namespaces"].remove(entry["ns"])

    def _teardown(self) -> list[str]:
        removed = []
        dns = self.state.get("dns")
        if dns and _start_time(dns["pid"]) == dns["start"] is not None:
            os.kill(dns["pid"], signal.SIGKILL)
            child = self.children.pop(dns["pid"], None)
            if child is not None:
                child.wait(timeout=10)
            removed.append(f"process {dns['pid']} (seed-dns)")
        for ns in reversed(self.state.get("namespaces", [])):
            result = subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            if result.returncode == 0:
                removed.append(f"namespace {ns}")
        return removed

    def netns_prefix(self, node: Node) -> list[str]:
        return self._prefix(self._entry(node))
