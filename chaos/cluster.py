"""What every chaos backend offers: nodes, their states, commands on them, faults. No I/O here
except in :class:`NetnsFaults`, which runs iptables inside a node's network namespace.

A backend owns a set of running ``kadnode run`` daemons (containers, network
namespaces or plain processes) and can kill, restart, add and remove them.
Partition and loss exist only where each node has a network namespace of
its own: there iptables DROP rules in two chains of ours, jumped to from INPUT
and OUTPUT, cut or thin the node's traffic. Delay is tc netem in that
namespace where the kernel has netem; elsewhere (and on every backend without
namespaces) it is kadnode's own send delay: every daemon runs with
``--allow-fault-injection`` and ``kadnode fault MS --jitter-ms MS`` on the node
holds each datagram it sends.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

PROBE_SOURCE = (Path(__file__).parent / "probe.py").read_text()

CHAIN_IN, CHAIN_OUT = "KADCHAOS-IN", "KADCHAOS-OUT"
KADNODE_DELAY = "kadnode transport send delay (--allow-fault-injection)"
NETEM_DELAY = "tc netem delay"
NO_NETEM = "tc netem unavailable on this kernel"


class ChaosError(Exception):
    """Something the harness cannot do (no engine, no image, no cluster); one line."""


class FaultUnavailable(ChaosError):
    """This backend or kernel cannot inject that fault; the message says why."""


@dataclass
class Node:
    name: str
    ip: str
    port: int
    role: str  # "bootstrap" or "node"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def bootstrap(self) -> bool:
        return self.role == "bootstrap"


@dataclass(frozen=True, slots=True)
class Status:
    running: bool
    crashed: bool  # stopped, and not by the harness's own SIGKILL
    detail: str


class Backend(ABC):
    """A cluster of kadnode daemons the harness can break."""

    name: ClassVar[str]
    faults: ClassVar[frozenset[str]]

    @abstractmethod
    def up(self, count: int, progress: Any) -> list[Node]:
        """Start ``count`` nodes (two of them bootstrap nodes); the cluster must not exist."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether a cluster of this name is up (started and not taken down)."""

    @abstractmethod
    def nodes(self) -> list[Node]:
        """Every node of the cluster, running or not, bootstrap nodes first."""

    @abstractmethod
    def status(self, node: Node) -> Status: ...

    @abstractmethod
    def kill(self, node: Node) -> None:
        """SIGKILL the node's daemon; its data directory stays."""

    @abstractmethod
    def start(self, node: Node) -> None:
        """Start a killed node again on the same data directory (same identity)."""

    @abstractmethod
    def add_node(self) -> Node:
        """Start one more ordinary node with a fresh data directory (a new identity)."""

    @abstractmethod
    def remove(self, node: Node) -> None:
        """Stop a node for good and delete its data."""

    @abstractmethod
    def down(self) -> list[str]:
        """Remove every node and network of the cluster; what was removed, one line each."""

    @abstractmethod
    def exec(self, node: Node, argv: list[str], timeout: float) -> tuple[int, str, str]:
        """Run ``argv`` on the node, beside its daemon: (exit code, stdout, stderr)."""

    @property
    @abstractmethod
    def kadnode(self) -> str:
        """The kadnode command on the nodes."""

    @property
    @abstractmethod
    def python(self) -> str:
        """The interpreter, with kadnode importable, on the nodes."""

    def logs(self, node: Node, lines: int = 20) -> str:
        return ""

    # Network faults; backends without a namespace per node refuse them.
    def block(self, node: Node, ips: Iterable[str]) -> None:
        raise FaultUnavailable(f"the {self.name} backend cannot partition the network")

    def set_loss(self, node: Node, probability: float) -> None:
        raise FaultUnavailable(f"the {self.name} backend cannot drop datagrams")

    def set_delay(self, node: Node, ms: int, jitter_ms: int = 0) -> str:
        """Delay what the node sends by ``ms`` +- ``jitter_ms``; the mechanism used."""
        self.kadnode_fault(node, ms, jitter_ms)
        return KADNODE_DELAY

    def kadnode_fault(self, node: Node, ms: int, jitter_ms: int = 0) -> None:
        """``kadnode fault`` on the node (0 clears); FaultUnavailable if the daemon refuses."""
        argv = [self.kadnode, "fault", str(int(ms)), "--jitter-ms", str(int(jitter_ms))]
        code, out, err = self.exec(node, argv, timeout=30)
        if code != 0:
            reason = ((err or out).strip().splitlines() or [f"exit {code}"])[-1]
            raise FaultUnavailable(f"{node.name}: kadnode fault: {reason}")

    # Clock and CPU faults; only the docker backend has them (see DockerBackend).
    def set_clock(self, node: Node, offset_s: float) -> str:
        """Make the node's wall clock read ``offset_s`` seconds off; the mechanism used.
        0 puts it right."""
        raise FaultUnavailable(f"the {self.name} backend cannot set a node's clock")

    def clock_offset(self, node: Node) -> float:
        """How far the node's wall clock reads from the harness's, in seconds."""
        raise FaultUnavailable(f"the {self.name} backend cannot read a node's clock")

    def set_cpu(self, node: Node, cores: float | None) -> str:
        """Cap the node at ``cores`` CPUs (None lifts the cap); the mechanism used."""
        raise FaultUnavailable(f"the {self.name} backend cannot cap a node's CPU")

    def freeze(self, node: Node, frozen: bool) -> None:
        """Freeze every process of the node (it answers nothing), or thaw it."""
        raise FaultUnavailable(f"the {self.name} backend cannot freeze a node")

    def clear_faults(self, node: Node) -> None:
        """Remove every fault from the node (kadnode's send delay here)."""
        # A daemon without fault injection has no delay to clear.
        with contextlib.suppress(ChaosError, subprocess.TimeoutExpired):
            self.kadnode_fault(node, 0)

    def probe(self, node: Node, args: list[str], budget: float) -> Any:
        """Run chaos/probe.py on the node; its JSON, or {"error": ...}."""
        argv = [self.python, "-c", PROBE_SOURCE, str(budget), *args]
        try:
            code, out, err = self.exec(node, argv, timeout=budget + 30)
        except subprocess.TimeoutExpired:
            return {"error": f"probe on {node.name} did not finish in {budget + 30:.0f} s"}
        try:
            return json.loads(out)
        except ValueError:
            tail = (err or out).strip().splitlines()[-1:] or [f"exit {code}"]
            return {"error": f"probe on {node.name} failed: {tail[0]}"}


class NetnsFaults:
    """Partition, loss and delay inside a node's own network namespace.

    Subclasses say how to enter it (``nsenter -t PID -n`` for a container,
    ``ip netns exec NAME`` for a namespace); the host's iptables and tc
    binaries run there.
    """

    def netns_prefix(self, node: Node) -> list[str]:
        raise NotImplementedError

    def _netns_sh(self, node: Node, script: str) -> None:
        argv = [*self.netns_prefix(node), "sh", "-ec", script]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            raise FaultUnavailable(f"{node.name}: {reason}")

    _CHAINS = (
        f"iptables -w -N {CHAIN_IN} 2>/dev/null || true\n"
        f"iptables -w -N {CHAIN_OUT} 2>/dev/null || true\n"
        f"iptables -w -C INPUT -j {CHAIN_IN} 2>/dev/null || iptables -w -I INPUT -j {CHAIN_IN}\n"
        f"iptables -w -C OUTPUT -j {CHAIN_OUT} 2>/dev/null || "
        f"iptables -w -I OUTPUT -j {CHAIN_OUT}\n"
    )

    def block(self, node: Node, ips: Iterable[str]) -> None:
        """Drop everything from and to ``ips`` (one side of a partition)."""
        rules = "".join(
            f"iptables -w -A {CHAIN_IN} -s {ip} -j DROP\n"
            f"iptables -w -A {CHAIN_OUT} -d {ip} -j DROP\n"
            for ip in ips
        )
        self._netns_sh(node, self._CHAINS + rules)

    def set_loss(self, node: Node, probability: float) -> None:
        """Drop each kadnode datagram the node receives with ``probability``."""
        self._netns_sh(
            node,
            self._CHAINS + f"iptables -w -A {CHAIN_IN} -p udp --dport {node.port} "
            f"-m statistic --mode random --probability {probability:.4f} -j DROP\n",
        )

    netem: bool | None = None  # None: not tried yet

    def set_delay(self, node: Node, ms: int, jitter_ms: int = 0) -> str:
        """tc netem on the node's interface; kadnode's send delay where the kernel has no netem."""
        if self.netem is not False:
            jitter = f" {int(jitter_ms)}ms" if jitter_ms else ""
            try:
                netem = f"netem delay {int(ms)}ms{jitter}"
                self._netns_sh(node, f"tc qdisc add dev eth0 root {netem}\n")
                self.netem = True
                return NETEM_DELAY
            except FaultUnavailable:
                if self.netem:
                    raise  # netem worked on another node: this is a real failure
                self.netem = False
        self.kadnode_fault(node, ms, jitter_ms)  # type: ignore[attr-defined]
        return f"{KADNODE_DELAY}; {NO_NETEM}"

    def clear_faults(self, node: Node) -> None:
        self._netns_sh(
            node,
            f"iptables -w -F {CHAIN_IN} 2>/dev/null || true\n"
            f"iptables -w -F {CHAIN_OUT} 2>/dev/null || true\n"
            "tc qdisc del dev eth0 root 2>/dev/null || true\n",
        )
        super().clear_faults(node)  # type: ignore[misc]  (Backend's: kadnode's send delay)
