"""The docker backend: one container per node on a user network of our own. Does I/O (docker).

Layout, for a cluster named NAME (default ``kadchaos``):

- network NAME: a bridge with ``internal: true``, so no container traffic
  leaves it, not even DNS;
- NAME-dns: ``kadnode-seed-dns`` from the image, the upstream server of every
  node's resolver (docker's embedded DNS forwards what it cannot answer, the
  SRV question ``_kadnode._udp.bootstrap``, there, and gets NXDOMAIN at once);
- NAME-boot-1, NAME-boot-2: bootstrap nodes sharing the network alias
  ``bootstrap``;
- NAME-node-03 ...: ordinary nodes.

Every node runs ``kadnode run --dns-seed bootstrap``: docker's embedded DNS
answers the A records of the alias, one per bootstrap container. Commands on
a node are ``docker exec``; partition and loss are iptables DROP rules in the
container's network namespace, entered from the host with ``nsenter -t PID -n``
(the image needs no iptables and no extra capabilities); delay is tc netem
there, or, where the kernel has no netem, ``kadnode fault`` through docker exec
(every daemon runs with ``--allow-fault-injection``).

Clock skew is libfaketime (Debian's, in the image): every container runs
with it preloaded, reading its offset from a file (:data:`CLOCK_FILE`) that
the harness writes; it fakes the wall clock only (``CLOCK_REALTIME``, what
``time.time`` reads), never ``CLOCK_MONOTONIC``, as a wrong or stepped
machine clock would. Slow nodes are a CPU quota (``docker update
--cpu-quota``: the cgroup's cpu.max) and ``docker pause``/``unpause`` (the
cgroup freezer).
"""

from __future__ import annotations

import time
from typing import Any

from .cluster import Backend, ChaosError, FaultUnavailable, NetnsFaults, Node, Status

LABEL = "kadnode.chaos"
ROLE = "kadnode.chaos.role"
SEED_ALIAS = "bootstrap"
PORT = 8467
DATA_DIR = "/var/lib/kadnode"
SIGKILLED = 137  # 128 + 9: the exit code of a container the harness killed
READY_TIMEOUT = 30.0
FREEZE_ATTEMPTS = 3
CPU_PERIOD_US = 100_000  # the cgroup's scheduling period; the quota is a share of it
FAKETIME_LIB = "/usr/local/lib/libfaketime.so.1"  # deploy/Dockerfile links it there
CLOCK_FILE = "/tmp/kadnode-clock"  # libfaketime re-reads it every second
FAKETIME_ENV = {
    "LD_PRELOAD": FAKETIME_LIB,
    "FAKETIME_TIMESTAMP_FILE": CLOCK_FILE,  # absent: the true time
    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    "FAKETIME_CACHE_DURATION": "1",
}
CLOCK_MECHANISM = (
    f"libfaketime preloaded in every container, offset from {CLOCK_FILE} "
    "(CLOCK_REALTIME only; CLOCK_MONOTONIC untouched)"
)


def engine(timeout: float = 300.0) -> Any:
    """A docker client that has answered a ping; ChaosError if there is none."""
    try:
        import docker
    except ImportError:
        raise ChaosError("the docker Python SDK is missing: pip install docker") from None
    try:
        client = docker.from_env(version="auto", timeout=timeout)
        client.ping()
    except Exception as exc:
        raise ChaosError(f"no docker engine answers: {exc}") from None
    return client


class DockerBackend(NetnsFaults, Backend):
    name = "docker"
    faults = frozenset({"partition", "loss", "delay", "kill", "churn", "skew", "slow"})

    def __init__(self, cluster: str = "kadchaos", image: str = "kadnode:local"):
        self.cluster = cluster
        self.image = image
        self.client = engine()
        self._removed = 0  # the highest node number removed by this process

    # ---- lifecycle ----

    def exists(self) -> bool:
        networks = self.client.networks.list(filters={"label": f"{LABEL}={self.cluster}"})
        return bool(self._containers() or networks)

    def up(self, count: int, progress: Any) -> list[Node]:
        import docker

        if count < 3:
            raise ChaosError("a cluster needs at least 3 nodes (2 of them bootstrap nodes)")
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise ChaosError(
                f"image {self.image} not found: build it with deploy/build-image.sh --offline"
            ) from None
        if self.exists():
            raise ChaosError(f"cluster {self.cluster!r} is up already: run 'down' first")
        labels = {LABEL: self.cluster}
        self.client.networks.create(self.cluster, driver="bridge", internal=True, labels=labels)
        dns = self.client.containers.run(
            self.image,
            name=f"{self.cluster}-dns",
            entrypoint=["kadnode-seed-dns"],
            command=["--listen", "0.0.0.0:53"],
            detach=True,
            network=self.cluster,
            labels={**labels, ROLE: "dns"},
        )
        dns.reload()
        self.dns_ip = dns.attrs["NetworkSettings"]["Networks"][self.cluster]["IPAddress"]
        progress(f"network {self.cluster} (internal), seed-dns at {self.dns_ip}")
        boots = [self._run(f"boot-{i}", "bootstrap") for i in (1, 2)]
        for container in boots:
            self._wait_api(container)
        progress("bootstrap nodes answer; starting the others")
        for i in range(3, count + 1):
            self._run(f"node-{i:02d}", "node")
        return self.nodes()

    def _run(self, short: str, role: str) -> Any:
        aliases = [short] + ([SEED_ALIAS] if role == "bootstrap" else [])
        networking = {self.cluster: self.client.api.create_endpoint_config(aliases=aliases)}
        return self.client.containers.run(
            self.image,
            command=[
                "run",
                "--data-dir",
                DATA_DIR,
                "--dns-seed",
                SEED_ALIAS,
                "--api",
                "127.0.0.1:8468",
                "--allow-fault-injection",
                # Every container sits in this network's subnet: lift the
                # per-address and per-subnet limits there.
                "--exempt",
                self._subnet(),
            ],
            name=f"{self.cluster}-{short}",
            hostname=short,
            detach=True,
            network=self.cluster,
            networking_config=networking,
            dns=[self._dns_ip()],
            environment=FAKETIME_ENV,
            labels={LABEL: self.cluster, ROLE: role},
        )

    def _subnet(self) -> str:
        network = self.client.networks.get(self.cluster)
        return network.attrs["IPAM"]["Config"][0]["Subnet"]

    def _dns_ip(self) -> str:
        if not getattr(self, "dns_ip", None):
            dns = self.client.containers.get(f"{self.cluster}-dns")
            self.dns_ip = dns.attrs["NetworkSettings"]["Networks"][self.cluster]["IPAddress"]
        return self.dns_ip

    def _wait_api(self, container: Any) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            container.reload()
            if container.status != "running":
                raise ChaosError(f"{container.name} stopped: {container.logs(tail=5).decode()}")
            code, _ = container.exec_run(["kadnode", "info"])
            if code == 0:
                return
            time.sleep(0.5)
        raise ChaosError(f"{container.name}: control API not answering after {READY_TIMEOUT} s")

    def _containers(self, role: str | None = None) -> list[Any]:
        filters = {"label": [f"{LABEL}={self.cluster}"]}
        if role:
            filters["label"].append(f"{ROLE}={role}")
        return sorted(self.client.containers.list(all=True, filters=filters), key=lambda c: c.name)

    def _node(self, container: Any) -> Node:
        net = container.attrs["NetworkSettings"]["Networks"].get(self.cluster) or {}
        short = container.name.removeprefix(f"{self.cluster}-")
        return Node(short, net.get("IPAddress") or "", PORT, container.labels[ROLE])

    def nodes(self) -> list[Node]:
        found = [self._node(c) for c in self._containers() if c.labels.get(ROLE) != "dns"]
        return sorted(found, key=lambda n: (not n.bootstrap, n.name))

    def _container(self, node: Node) -> Any:
        return self.client.containers.get(f"{self.cluster}-{node.name}")

    def status(self, node: Node) -> Status:
        import docker

        try:
            container = self._container(node)
        except docker.errors.NotFound:
            return Status(False, True, "container gone")
        state = container.attrs["State"]
        if state["Status"] in ("running", "paused"):  # paused: frozen by the slow scenario
            return Status(True, False, state["Status"])
        killed = state["ExitCode"] == SIGKILLED and not state.get("OOMKilled")
        detail = f"{state['Status']}, exit code {state['ExitCode']}"
        if state.get("OOMKilled"):
            detail += ", OOM-killed"
        return Status(False, not killed, detail)

    def kill(self, node: Node) -> None:
        container = self._container(node)
        container.kill(signal="SIGKILL")
        deadline = time.monotonic() + 20
        while container.status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            container.reload()

    def start(self, node: Node) -> None:
        container = self._container(node)
        container.start()
        self._wait_api(container)
        node.ip = self._node(self._container(node)).ip  # docker may hand out another address

    def add_node(self) -> Node:
        # A new node gets a new name: never reuse the name of one that left.
        used = [int(n.name.rsplit("-", 1)[1]) for n in self.nodes()] + [self._removed]
        container = self._run(f"node-{max(used) + 1:02d}", "node")
        self._wait_api(container)
        return self._node(self.client.containers.get(container.id))

    def remove(self, node: Node) -> None:
        self._container(node).remove(force=True, v=True)
        self._removed = max(self._removed, int(node.name.rsplit("-", 1)[1]))

    def down(self) -> list[str]:
        removed = []
        for container in self._containers():
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        for network in self.client.networks.list(filters={"label": f"{LABEL}={self.cluster}"}):
            network.remove()
            removed.append(f"network {network.name}")
        return removed

    # ---- clock and CPU ----

    def _root_sh(self, node: Node, script: str) -> None:
        code, out = self._container(node).exec_run(["sh", "-ec", script], user="root")
        if code != 0:
            reason = (out.decode(errors="replace").strip().splitlines() or [f"exit {code}"])[-1]
            raise FaultUnavailable(f"{node.name}: {reason}")

    def set_clock(self, node: Node, offset_s: float) -> str:
        if not offset_s:
            self._root_sh(node, f"rm -f {CLOCK_FILE}")
            return CLOCK_MECHANISM
        # libfaketime's relative form, "+S" or "-S" seconds. No drift: libfaketime's
        # rate ("xR") runs from each process's own start, and a daemon reads the wall
        # clock once (kadnode/shell/clock.py), so a drifting wall clock never reaches
        # it; faking CLOCK_MONOTONIC with a rate hangs Python's timed waits.
        spec = f"{offset_s:+.0f}"
        self._root_sh(
            node,
            f"test -e {FAKETIME_LIB} || {{ echo 'the image has no libfaketime:"
            f" rebuild it with deploy/build-image.sh --offline'; exit 1; }}\n"
            f"echo '{spec}' > {CLOCK_FILE}.new && mv {CLOCK_FILE}.new {CLOCK_FILE}",
        )
        return CLOCK_MECHANISM

    def clock_offset(self, node: Node) -> float:
        before = time.time()
        code, out, err = self.exec(node, ["date", "+%s.%N"], timeout=30)
        after = time.time()
        if code != 0:
            raise ChaosError(f"{node.name}: date: {(err or out).strip()}")
        return float(out) - (before + after) / 2

    def set_cpu(self, node: Node, cores: float | None) -> str:
        quota = -1 if cores is None else max(1000, int(cores * CPU_PERIOD_US))
        self._container(node).update(cpu_period=CPU_PERIOD_US, cpu_quota=quota)
        return f"docker update --cpu-period {CPU_PERIOD_US} --cpu-quota Q (the cgroup's cpu.max)"

    def freeze(self, node: Node, frozen: bool) -> None:
        import docker

        container = self._container(node)
        for attempt in range(FREEZE_ATTEMPTS):
            try:
                if frozen:
                    container.pause()
                else:
                    container.unpause()
                return
            except docker.errors.APIError as exc:
                # Already so ("is already paused", "is not paused"): nothing to do.
                if "paused" in str(exc):
                    return
                # runc gives up on a freeze that a CPU-starved cgroup does not reach
                # at once ("unable to freeze"): try again, then let the caller know.
                if "unable to freeze" not in str(exc) or attempt == FREEZE_ATTEMPTS - 1:
                    raise
                time.sleep(0.02)

    def clear_faults(self, node: Node) -> None:
        self.freeze(node, False)  # a paused container runs no command
        self.set_cpu(node, None)
        self.set_clock(node, 0.0)
        super().clear_faults(node)

    # ---- commands on nodes ----

    @property
    def kadnode(self) -> str:
        return "kadnode"

    @property
    def python(self) -> str:
        return "/opt/kadnode/bin/python"

    def exec(self, node: Node, argv: list[str], timeout: float) -> tuple[int, str, str]:
        import docker

        deadline = time.monotonic() + timeout
        while True:
            try:
                container = self._container(node)
                # coreutils timeout bounds the command: exec_run itself has no deadline.
                argv_ = ["timeout", str(int(timeout)), *argv]
                code, (out, err) = container.exec_run(argv_, demux=True)
                break
            except docker.errors.APIError as exc:
                # A node the slow scenario froze runs no command: wait for its thaw.
                if "paused" not in str(exc) or time.monotonic() > deadline:
                    return 125, "", str(exc.explanation or exc)
                time.sleep(0.05)
        return code, (out or b"").decode(), (err or b"").decode()

    def logs(self, node: Node, lines: int = 20) -> str:
        try:
            return self._container(node).logs(tail=lines).decode(errors="replace")
        except Exception as exc:
            return f"(no logs: {exc})"

    def netns_prefix(self, node: Node) -> list[str]:
        container = self._container(node)
        pid = container.attrs["State"]["Pid"]
        if not pid:
            raise ChaosError(f"{node.name} is not running")
        return ["nsenter", "-t", str(pid), "-n"]
