"""``kadnode run``: the daemon. I/O.

Owns, under one TaskGroup: the UDP node, the HTTP control API, joining
(seeds from ``--bootstrap``, ``--dns-seed`` and the contacts persisted in the
data directory), periodic saving of contacts, and a periodic status line.
SIGINT / SIGTERM stop it cleanly: contacts saved, sockets and the database
closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kadnode import __version__
from kadnode.config import REJOIN_CONTACTS, Config
from kadnode.core.identity import SEED_BYTES, Identity
from kadnode.core.ids import to_hex
from kadnode.core.messages import Addr
from kadnode.errors import KadnodeError
from kadnode.shell.api import build_routes
from kadnode.shell.dns import resolve_host, resolve_seeds
from kadnode.shell.httpserver import serve, shutdown
from kadnode.shell.library import Server
from kadnode.shell.service import NodeService
from kadnode.shell.sqlite_store import SqliteStore

log = logging.getLogger("kadnode")

DEFAULT_PORT = 8467
DEFAULT_API_PORT = 8468
DATA_FILE = "kadnode.sqlite3"
# Contacts are saved this often (and after joining), so a SIGKILLed node
# restarts with a recent view of the network.
CONTACT_SAVE_INTERVAL = 15.0
# A node that knows nobody retries its seeds this often.
REJOIN_INTERVAL = 30.0
STATUS_INTERVAL = 600.0


@dataclass
class DaemonOptions:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    data_dir: Path = Path("kadnode-data")
    bootstrap: list[Addr] = field(default_factory=list)
    dns_seeds: list[str] = field(default_factory=list)
    dns_nameservers: list[str] | None = None
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    advertise: list[Addr] = field(default_factory=list)
    allow_fault_injection: bool = False
    config: Config = field(default_factory=Config)


def load_identity(store: SqliteStore) -> Identity:
    """The node's ed25519 key, kept in the data directory: the directory IS
    the node's identity (its id derives from the key)."""
    seed = store.get_meta("identity_seed")
    if seed is None or len(seed) != SEED_BYTES:
        identity = Identity.generate()
        store.set_meta("identity_seed", identity.seed)
        return identity
    return Identity.from_seed(seed)


async def advertised(host: str, port: int, configured: list[Addr]) -> tuple[Addr, ...]:
    """The addresses this node registers: as configured, else the one it is
    bound to, else (bound to every interface) its host name's addresses."""
    if configured:
        return tuple(configured)
    if host not in ("0.0.0.0", "::", ""):
        return ((host, port),)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM)
    except OSError:
        infos = []
    found = [i[4][0] for i in infos if not i[4][0].startswith(("127.", "::1"))]
    return tuple((h, port) for h in dict.fromkeys(found)) or (("127.0.0.1", port),)


class Daemon(NodeService):
    """One running node plus what it takes to serve and persist it."""

    # ---- background work ----

    async def run(self, on_ready: Callable[[Daemon, int], None] | None, signals: bool) -> None:
        """Serve the API and do the background work until stopped, then leave: all
        of it inside the daemon's TaskGroup. ``signals``: SIGINT and SIGTERM stop it."""
        options, server, stop = self.options, self.server, self.stop
        try:
            api = await serve(build_routes(self), options.api_host, options.api_port)
        except OSError as exc:  # raised here, it would reach run_daemon inside an ExceptionGroup
            raise _cannot_listen(exc) from None
        api_port = api.sockets[0].getsockname()[1]
        log.info(
            "kadnode %s node %s on udp %s:%d, control api http://%s:%d (docs at /docs)",
            __version__,
            to_hex(server.id),
            *server.address,
            options.api_host,
            api_port,
        )
        loop = asyncio.get_running_loop()
        if signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        try:
            if on_ready is not None:
                on_ready(self, api_port)
            background = [
                self.tasks.create_task(c) for c in (self.join(), self.persist(), self.status())
            ]
            await stop.wait()
            log.info("stopping")
            for task in background:
                task.cancel()
            await self.leave()
        finally:
            if signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            await shutdown(api)
            self.save_contacts()

    def save_contacts(self) -> None:
        entries = list(self.server.core.table.entries())
        self.store.save_contacts([(e.contact, e.last_seen) for e in entries])

    async def seeds(self) -> list[Addr]:
        opts = self.options
        seeds = []
        for host, port in opts.bootstrap:
            try:
                seeds.append((await resolve_host(host), port))
            except KadnodeError as exc:
                log.warning("bootstrap %s:%d: %s", host, port, exc)
        if opts.dns_seeds:
            found, errors = await resolve_seeds(
                opts.dns_seeds, DEFAULT_PORT, nameservers=opts.dns_nameservers
            )
            for line in errors:
                log.warning("%s", line)
            seeds += found
        seeds += [c.addr for c in self.store.load_contacts()[:REJOIN_CONTACTS]]
        own = self.server.address
        return [s for s in dict.fromkeys(seeds) if s != own]

    async def join(self) -> None:
        """Join at start, and again whenever the table runs empty."""
        while True:
            if len(self.server.core.table) == 0:
                seeds = await self.seeds()
                if seeds:
                    result = await self.server.bootstrap(seeds)
                    if result.table_size:
                        self.save_contacts()  # before the log line, which means "saved"
                        await self.register_quietly()
                    log.info(
                        "joined: %d of %d seeds answered, %d contacts known and saved",
                        result.answered,
                        result.seeds,
                        result.table_size,
                    )
                elif not self.options.bootstrap and not self.options.dns_seeds:
                    log.info("no seeds: this node starts a new network")
            await asyncio.sleep(REJOIN_INTERVAL)

    async def register_quietly(self) -> None:
        """Register this node's address after joining; log, never raise."""
        where = ", ".join(f"{h}:{p}" for h, p in self.server.core.addresses)
        try:
            result = await self.server.register()
        except KadnodeError as exc:
            log.warning("registration failed: %s", exc)
            return
        say = log.info if result.quorum else log.warning
        say(
            "registered %s at %s: %d of %d replicas acknowledged (quorum %d)",
            to_hex(self.server.id),
            where,
            result.acks,
            result.replica_set,
            result.needed,
        )

    async def persist(self) -> None:
        while True:
            await asyncio.sleep(CONTACT_SAVE_INTERVAL)
            self.save_contacts()

    async def status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            s = self.server.core.stats
            log.info(
                "status: %d contacts, %d values, %d requests served, %d bad datagrams",
                len(self.server.core.table),
                len(self.store),
                s["requests_in"],
                s["bad_datagrams"],
            )


def _cannot_listen(exc: OSError) -> KadnodeError:
    return KadnodeError(f"cannot listen: {exc.strerror or exc}")


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first exception in ``group``, looking inside nested groups."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def run_daemon(
    options: DaemonOptions,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Daemon, int], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, or until ``stop`` is set (embedding, tests).

    ``on_ready(daemon, api_port)`` is called once the node and the API listen.
    """
    store = SqliteStore(options.data_dir / DATA_FILE)
    server = None
    try:
        server = await Server.start(
            options.host,
            options.port,
            identity=load_identity(store),
            store=store,
            config=options.config,
        )
        signals = stop is None
        stop = stop or asyncio.Event()
        server.core.addresses = await advertised(*server.address, options.advertise)
        try:
            async with asyncio.TaskGroup() as tasks:
                daemon = Daemon(server, store, options, stop, tasks)
                await daemon.run(on_ready, signals)
        except* KadnodeError as failed:
            # One line for the user (cli.main catches KadnodeError), not a
            # traceback of the TaskGroup's ExceptionGroup.
            raise _first(failed) from None
    except OSError as exc:
        raise _cannot_listen(exc) from None
    finally:
        if server is not None:
            server.close()
        store.close()
    log.info("stopped")
