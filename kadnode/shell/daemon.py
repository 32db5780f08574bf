"""``kadnode run``: the daemon. I/O.

Owns, under one TaskGroup: the UDP node, the HTTP control API, joining
(seeds from ``--bootstrap``, ``--dns-seed`` and the contacts persisted in the
data directory), periodic saving of contacts, and a periodic status line.
SIGINT / SIGTERM stop it cleanly: contacts saved, sockets and the database
closed. The data directory (lock, permissions, identity) is
:mod:`kadnode.shell.datadir`'s; a storage failure while running stops the
daemon with its one line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from kadnode import __version__
from kadnode.config import MAX_RECORD_ADDRESSES, REJOIN_CONTACTS, Config
from kadnode.core import records
from kadnode.core.ids import to_hex
from kadnode.core.messages import Addr
from kadnode.errors import KadnodeError, LocalProtocolError
from kadnode.inputs import format_hostport
from kadnode.shell.apiguard import TOKEN_ENV, Guard, check_token, is_loopback
from kadnode.shell.datadir import DataDir
from kadnode.shell.dns import resolve_host, resolve_seeds
from kadnode.shell.library import Server
from kadnode.shell.service import NO_ADDRESS, NodeService

log = logging.getLogger("kadnode")

DEFAULT_PORT = 8467
DEFAULT_API_PORT = 8468
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
    # The control API's token, chosen by the operator ($KADNODE_API_TOKEN);
    # None: the data directory's (loopback only). kadnode.shell.apiguard
    api_token: str | None = None
    # A listener of its own for GET /metrics and /health only, for a scraper
    # on another host; no token (it reads, and changes nothing). None: none.
    metrics: Addr | None = None


EVERY_INTERFACE = ("0.0.0.0", "::", "")
# Where the default routes lead (documentation addresses): a UDP socket
# connected to one sends nothing, but its local address is the one this host
# would reach the Internet from.
ROUTE_PROBES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


def reachable(host: str) -> bool:
    """Whether other hosts could reach ``host``: an IP literal that is not
    loopback, link-local, unspecified or multicast."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # not a literal; "%zone" suffixes of link-local ones too
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


async def local_addresses(families: tuple[socket.AddressFamily, ...]) -> list[str]:
    """This host's addresses in ``families``: its host name's, then the ones
    its default routes leave from. Nothing is sent."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM)
    except OSError:
        infos = []
    found = [info[4][0] for info in infos if info[0] in families]
    for family in families:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((ROUTE_PROBES[family], 9))
                found.append(probe.getsockname()[0])
        except OSError:
            continue  # no route in this family (or no such family here)
    return found


async def advertised(host: str, port: int, configured: list[Addr]) -> tuple[Addr, ...]:
    """The addresses this node registers: as configured, else the one it is
    bound to, else (bound to every interface) this host's reachable addresses,
    which may be none. Never loopback unless the node listens only there."""
    if configured:
        return tuple(configured)
    if host not in EVERY_INTERFACE:
        return ((host, port),)
    families = (socket.AF_INET,) if host == "0.0.0.0" else (socket.AF_INET, socket.AF_INET6)
    found = [h for h in dict.fromkeys(await local_addresses(families)) if reachable(h)]
    return tuple((h, port) for h in found[:MAX_RECORD_ADDRESSES])


def own_hosts(host: str) -> list[str]:
    """Every address this host has, on every interface (``host`` alone when
    the node is bound to one): a peer that sees the node at none of them
    tells it it is behind NAT (kadnode.core.reach)."""
    if host not in EVERY_INTERFACE:
        return [host]
    families = (socket.AF_INET,) if host == "0.0.0.0" else (socket.AF_INET, socket.AF_INET6)
    return [
        a.address.split("%")[0]
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family in families
    ]


def say_advertised(addresses: tuple[Addr, ...], options: DaemonOptions) -> None:
    """The start-up line saying where the network is told to reach this node."""
    if not addresses:
        log.warning("%s", NO_ADDRESS)
        return
    where = ", ".join(f"{h}:{p}" for h, p in addresses)
    if options.advertise:
        why = "--advertise"
    elif options.host in EVERY_INTERFACE:
        why = "this host's addresses; --advertise sets others"
    else:
        why = "where it listens"
    log.info("advertising %s (%s)", where, why)


class Daemon(NodeService):
    """One running node plus what it takes to serve and persist it."""

    def __init__(
        self,
        server: Server,
        data: DataDir,
        options: DaemonOptions,
        stop: asyncio.Event,
        tasks: asyncio.TaskGroup,
        guard: Guard,
    ) -> None:
        super().__init__(server, data.store, options, stop, tasks)
        self.data = data
        self.guard = guard
        self.metrics_port: int | None = None  # the metrics listener's, once it listens
        # The storage failure that stopped the daemon: run_daemon raises it.
        self.failure: KadnodeError | None = None
        data.store.on_error = self.fail

    def fail(self, error: KadnodeError) -> None:
        """Stop, and have run_daemon end with ``error`` (its first one)."""
        if self.failure is None:
            self.failure = error
            self.stop.set()

    # ---- background work ----

    async def run(self, on_ready: Callable[[Daemon, int], None] | None, signals: bool) -> None:
        """Serve the API and do the background work until stopped, then leave: all
        of it inside the daemon's TaskGroup. ``signals``: SIGINT and SIGTERM stop it."""
        options, server, stop = self.options, self.server, self.stop
        # FastAPI and uvicorn load only when a daemon serves: the CLI's calls,
        # which import this module for its defaults, start in half the time.
        from kadnode.shell.api import BY_NAME, SCRAPED
        from kadnode.shell.httpserver import serve, shutdown
        from kadnode.shell.webapp import build_app

        listeners = []
        try:
            app = build_app(self, guard=self.guard.refusal)
            listeners.append(await serve(app, options.api_host, options.api_port))
            if options.metrics is not None:
                reads = build_app(self, [BY_NAME[name] for name in SCRAPED], docs=False)
                listeners.append(await serve(reads, *options.metrics))
        except OSError as exc:  # raised here, it would reach run_daemon inside an ExceptionGroup
            for listener in listeners:
                await shutdown(listener)
            raise _cannot_listen(exc) from None
        api, *scrape = listeners
        api_port = api.port
        self.metrics_port = scrape[0].port if scrape else None
        loop = asyncio.get_running_loop()
        try:
            self.data.started()
            log.info(
                "kadnode %s node %s on udp %s:%d, control api http://%s:%d (docs at /docs)",
                __version__,
                to_hex(server.id),
                *server.address,
                options.api_host,
                api_port,
            )
            if options.config.network_id:
                log.info(
                    "in the private network %r: nodes of other networks are ignored",
                    options.config.network_id,
                )
            if scrape:
                log.info("metrics at http://%s:%d/metrics", options.metrics[0], self.metrics_port)
            say_advertised(server.core.addresses, options)
            if signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
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
            for listener in listeners:
                await shutdown(listener)
            if self.data.is_started:
                self.save_contacts()

    def save_contacts(self) -> None:
        entries = list(self.server.core.table.entries())
        self.store.save_contacts([(e.contact, e.last_seen) for e in entries])

    async def seed_list(self) -> tuple[list[Addr], list[str]]:
        """--bootstrap and --dns-seed resolved, and a line for each that did not."""
        opts = self.options
        seeds, errors = [], []
        for host, port in opts.bootstrap:
            try:
                seeds.append((await resolve_host(host), port))
            except KadnodeError as exc:
                errors.append(f"bootstrap {format_hostport(host, port)}: {exc}")
        if opts.dns_seeds:
            found, bad = await resolve_seeds(
                opts.dns_seeds, DEFAULT_PORT, nameservers=opts.dns_nameservers
            )
            seeds += found
            errors += bad
        return seeds, errors

    async def seeds(self) -> list[Addr]:
        seeds, errors = await self.seed_list()
        for line in errors:
            log.warning("%s", line)
        seeds += [c.addr for c in self.store.load_contacts()[:REJOIN_CONTACTS]]
        own = self.server.address
        return [s for s in dict.fromkeys(seeds) if s != own]

    async def join(self) -> None:
        """Join at start, and again whenever the table runs empty. A join that
        fails is a warning once, then debug until one succeeds; a node alone
        says so once: an isolated node does not fill its log every round."""
        failed = 0
        alone_said = False
        while True:
            if len(self.server.core.table) == 0:
                seeds = await self.seeds()
                if seeds:
                    result = await self.server.bootstrap(seeds)
                    if result.table_size:
                        self.save_contacts()  # before the log line, which means "saved"
                        if self.server.core.listed:  # not after a deregister
                            await self.register_quietly()
                        log.info(
                            "joined: %d of %d seeds answered, %d contacts known and saved%s",
                            result.answered,
                            result.seeds,
                            result.table_size,
                            f" (after {failed} failed attempts)" if failed else "",
                        )
                        failed = 0
                    else:
                        failed += 1
                        say = log.warning if failed == 1 else log.debug
                        say(
                            "could not join: none of %d seeds answered (%s); trying again"
                            " every %g s",
                            len(seeds),
                            ", ".join(f"{h}:{p}" for h, p in seeds[:3])
                            + (", ..." if len(seeds) > 3 else ""),
                            REJOIN_INTERVAL,
                        )
                elif not self.options.bootstrap and not self.options.dns_seeds:
                    if not alone_said:
                        log.info("no seeds: this node starts a new network")
                    alone_said = True
            else:
                alone_said = False  # it was found: alone again later is news again
            await asyncio.sleep(REJOIN_INTERVAL)

    async def register_quietly(self) -> None:
        """Register this node's address after joining; log, never raise."""
        where = ", ".join(f"{h}:{p}" for h, p in self.server.core.addresses)
        try:
            result = await self.register_self()
        except KadnodeError as exc:
            log.warning("registration failed: %s", exc)
            return
        refused = records.refusals(result.refused)
        say = log.info if result.quorum and not refused else log.warning
        say(
            "registered %s at %s: %d of %d replicas acknowledged (quorum %d, %d more pending)%s",
            to_hex(self.server.id),
            where,
            result.acks,
            result.replica_set,
            result.needed,
            result.pending,
            f"; {refused}" if refused else "",
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


def api_guard(options: DaemonOptions, data: DataDir) -> Guard:
    """The API's guard: the operator's token, else the data directory's; an
    API beyond loopback only with a token the operator chose."""
    if options.api_token is not None:
        token = check_token(options.api_token, f"${TOKEN_ENV}")
    elif is_loopback(options.api_host):
        token = data.api_token()
    else:
        raise LocalProtocolError(
            f"the control API would listen on {options.api_host}:{options.api_port}, beyond this"
            f" machine, with no token: set ${TOKEN_ENV} to a secret of at least 16 characters"
            " (its clients send the same), or keep --api on 127.0.0.1"
        )
    return Guard.listening_on(options.api_host, token)


async def run_daemon(
    options: DaemonOptions,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Daemon, int], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, or until ``stop`` is set (embedding, tests).

    ``on_ready(daemon, api_port)`` is called once the node and the API listen.
    A start that fails leaves the data directory as it found it.
    """
    with DataDir(options.data_dir) as data:
        guard = api_guard(options, data)
        server = None
        daemon: Daemon | None = None
        try:
            server = await Server.start(
                options.host,
                options.port,
                identity=data.identity(),
                store=data.store,
                config=options.config,
            )
            signals = stop is None
            stop = stop or asyncio.Event()
            core = server.core
            core.addresses = await advertised(*server.address, options.advertise)
            core.addresses_fixed = bool(options.advertise)
            core.set_local_hosts(own_hosts(options.host))
            try:
                async with asyncio.TaskGroup() as tasks:
                    daemon = Daemon(server, data, options, stop, tasks, guard)
                    await daemon.run(on_ready, signals)
            except* KadnodeError as failed:
                # One line for the user (cli.main catches KadnodeError), not a
                # traceback of the TaskGroup's ExceptionGroup.
                raise (daemon and daemon.failure) or _first(failed) from None
        except OSError as exc:
            raise _cannot_listen(exc) from None
        finally:
            if server is not None:
                server.close()
        if daemon is not None and daemon.failure is not None:
            raise daemon.failure
    log.info("stopped")
