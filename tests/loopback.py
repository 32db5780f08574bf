"""A real daemon in-process among real nodes on 127.0.0.1: the service the API and CLI
stories run against. I/O: UDP and HTTP on loopback only, ports from port 0, every wait
bounded.

    async with network(tmp_path) as net:  # a daemon, and NODES nodes that joined through it
        await asyncio.to_thread(net.client().put, "colour", "blue")

The daemon is ``run_daemon`` itself, as ``kadnode run`` starts it, minus the process.
:func:`in_thread` hosts any of these on an event loop of its own, for blocking callers
(the CLI commands); ``net.run(coroutine)`` then runs a node's operation on that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kadnode.cli.client import ApiClient
from kadnode.config import LOCAL_TEST, Config
from kadnode.core.ids import ID_BITS, ID_SPACE, ring_distance, to_hex
from kadnode.core.messages import Addr
from kadnode.core.ring import brute_successor
from kadnode.shell.daemon import Daemon, DaemonOptions, run_daemon
from kadnode.shell.datadir import TOKEN_FILE
from kadnode.shell.library import Server, storage_key

T = TypeVar("T")

HOST = "127.0.0.1"
# Nodes beside the daemon: fewer than k = 20, so every one of them is a replica of every key.
NODES = 4
START_S = 10.0  # for a daemon to listen, or a network to settle
STOP_S = 10.0
OPERATION_S = 20.0  # one node operation run from another thread
K = Config().k


def contact(server: Server) -> dict[str, Any]:
    """A node as the API shows one."""
    host, port = server.address
    return {"id": to_hex(server.id), "host": host, "port": port}


def fields(reply: dict[str, Any], *names: str) -> dict[str, Any]:
    """The named fields of an API reply (leaving out timings and counters that vary)."""
    return {name: reply[name] for name in names}


def ids_of(contacts: list[dict[str, Any]]) -> list[int]:
    return [int(c["id"], 16) for c in contacts]


# -- brute force over a set of node ids: what the ring and the k closest must be ----------------


def clockwise(origin: int, ids: set[int]) -> list[int]:
    """``ids`` other than ``origin``, nearest clockwise from it first."""
    return sorted(ids - {origin}, key=lambda i: ring_distance(origin, i))


def xor_closest(target: int, ids: set[int], k: int = K) -> list[int]:
    return sorted(ids, key=lambda i: i ^ target)[:k]


def by_distance(target: int, contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API contacts, nearest to ``target`` by XOR first."""
    return sorted(contacts, key=lambda c: int(c["id"], 16) ^ target)


def fingers(origin: int, ids: set[int]) -> list[tuple[int, int]]:
    """Chord's finger table over ``ids``: finger i is the first node at or after
    ``origin + 2**i``; each node listed once, at its lowest index."""
    table: list[tuple[int, int]] = []
    for i in range(ID_BITS):
        start = (origin + (1 << i)) % ID_SPACE
        finger = brute_successor(start, ids)
        if ring_distance(origin, finger) < 1 << i:
            break  # wrapped past origin: no node at or after origin + 2**i
        if not table or table[-1][1] != finger:
            table.append((i, finger))
    return table


# -- nodes and daemons --------------------------------------------------------------------------


async def poll(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Await ``check`` until true; return how long it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def landed(servers: list[Server], key: str | bytes, seconds: float = 5.0) -> None:
    """Wait until each of ``servers`` holds ``key``: a put returns once W
    replicas have acknowledged, and the rest of its writes land after."""
    digest = storage_key(key)

    async def held() -> bool:
        return all(s.core.store.get(digest) is not None for s in servers)

    await poll(held, seconds, f"{key!r} on every node")


def written(reply: dict[str, Any]) -> int:
    """The replicas a put's reply says hold it or are being written."""
    assert reply["stored"] >= reply["needed"]
    return reply["stored"] + reply["pending"]


@contextlib.asynccontextmanager
async def nodes(n: int, seed: Addr | None = None) -> AsyncIterator[list[Server]]:
    """``n`` nodes, each bootstrapped from ``seed``, else from the first of them."""
    started: list[Server] = []
    try:
        for _ in range(n):
            started.append(await Server.start(HOST, 0, config=LOCAL_TEST))
            first = seed or started[0].address
            if started[-1].address != first:
                await started[-1].bootstrap([first])
        yield started
    finally:
        for node in started:
            node.close()


# The data directory of each daemon a test started, by its API address: an API
# command run with --api one of them reads that daemon's token, as a user
# running it from the daemon's directory would.
API_DATA_DIRS: dict[str, Path] = {}


def token_of(api: str) -> str | None:
    """The API token of the daemon a test started at ``api`` (None: not one of them)."""
    data_dir = API_DATA_DIRS.get(api)
    return None if data_dir is None else (data_dir / TOKEN_FILE).read_text().strip()


def with_data_dir(args: tuple[str, ...]) -> tuple[str, ...]:
    """CLI arguments, with --data-dir of the daemon --api names (see API_DATA_DIRS)."""
    if "--api" in args and "--data-dir" not in args and args[0] != "run":
        data_dir = API_DATA_DIRS.get(args[args.index("--api") + 1])
        if data_dir is not None:
            return (*args, "--data-dir", str(data_dir))
    return args


@dataclass
class Running:
    """A daemon started by :func:`daemon`."""

    daemon: Daemon
    api_port: int
    stopped: asyncio.Task[None]  # run_daemon: done once the daemon has stopped

    @property
    def api(self) -> str:
        """The control API, HOST:PORT."""
        return f"{HOST}:{self.api_port}"

    @property
    def server(self) -> Server:
        return self.daemon.server

    @property
    def token(self) -> str:
        """The API token (in the data directory)."""
        return self.daemon.guard.token

    def client(self, timeout: float = 30.0) -> ApiClient:
        return ApiClient(self.api, timeout=timeout, token=self.token)

    async def stop(self) -> None:
        """Stop the daemon as SIGTERM does (it leaves first); return once it has stopped."""
        self.daemon.stop.set()
        await asyncio.wait_for(self.stopped, STOP_S)


@contextlib.asynccontextmanager
async def daemon(
    data_dir: Path,
    seeds: list[Addr] | None = None,
    api_host: str = HOST,
    api_token: str | None = None,
    metrics: Addr | None = None,
) -> AsyncIterator[Running]:
    """``run_daemon`` on this loop, its node on 127.0.0.1 and its API on ``api_host``
    (port 0); stopped on exit if it has not stopped itself (POST /leave stops it)."""
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[Daemon, int]] = asyncio.get_running_loop().create_future()
    options = DaemonOptions(
        host=HOST,
        port=0,
        data_dir=data_dir,
        api_host=api_host,
        api_port=0,
        bootstrap=seeds or [],
        config=LOCAL_TEST,
        api_token=api_token,
        metrics=metrics,
    )
    task = asyncio.create_task(
        run_daemon(options, stop=stop, on_ready=lambda d, port: ready.set_result((d, port)))
    )
    try:
        done, _ = await asyncio.wait({ready, task}, timeout=START_S, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # it stopped before it listened: raise why
        if ready not in done:
            raise AssertionError(f"waited {START_S:g} s for the daemon to listen")
        running = Running(*ready.result(), task)
        API_DATA_DIRS[running.api] = data_dir
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, STOP_S)


@dataclass
class Network(Running):
    """A daemon and the nodes that joined through it; each knows every other."""

    nodes: list[Server]
    loop: asyncio.AbstractEventLoop

    @property
    def contacts(self) -> list[dict[str, Any]]:
        """The nodes beside the daemon, as the API shows them."""
        return [contact(n) for n in self.nodes]

    @property
    def by_id(self) -> dict[int, dict[str, Any]]:
        """Every node, the daemon's included, by id, as the API shows it."""
        return {s.id: contact(s) for s in [self.server, *self.nodes]}

    def run(self, operation: Coroutine[Any, Any, T]) -> T:
        """Run a node's operation on the network's loop, from another thread."""
        return asyncio.run_coroutine_threadsafe(operation, self.loop).result(OPERATION_S)


@contextlib.asynccontextmanager
async def network(data_dir: Path, n: int = NODES) -> AsyncIterator[Network]:
    """A daemon that starts a new network (it has no seeds, so it does not register
    itself), then ``n`` nodes that join through it; yielded once everyone knows everyone."""
    async with daemon(data_dir) as running, nodes(n, running.server.address) as others:
        everyone = [running.server, *others]

        async def settled() -> bool:
            return all(len(node.core.table) == n for node in everyone)

        await poll(settled, START_S, "every node to know every other")
        loop = asyncio.get_running_loop()
        try:
            yield Network(running.daemon, running.api_port, running.stopped, others, loop)
        finally:
            await running.stop()  # while the nodes still answer its leave


@contextlib.contextmanager
def in_thread(context: AbstractAsyncContextManager[T]) -> Iterator[T]:
    """Enter ``context`` on an event loop in a thread of its own, for blocking callers,
    and leave it there at the end. What it raises, entering or leaving, is raised here."""
    ready: concurrent.futures.Future[tuple[T, asyncio.AbstractEventLoop, asyncio.Event]]
    ready = concurrent.futures.Future()
    finished: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def host() -> None:
        stop = asyncio.Event()
        async with context as value:
            ready.set_result((value, asyncio.get_running_loop(), stop))
            await stop.wait()

    def main() -> None:
        try:
            asyncio.run(host())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            finished.set_exception(exc)
        else:
            finished.set_result(None)

    # A daemon thread: should the loop hang, the test fails on a timeout, not at exit.
    threading.Thread(target=main, name="loopback", daemon=True).start()
    value, loop, stop = ready.result(START_S)
    try:
        yield value
    finally:
        loop.call_soon_threadsafe(stop.set)
        finished.result(STOP_S)
