"""Serve an ASGI application (the control API, kadnode.shell.webapp) with
uvicorn inside the daemon's own event loop. Does network I/O.

uvicorn speaks HTTP/1.1 (keep-alive, chunked bodies, HEAD) through h11. What
it leaves to its caller for a daemon on an open port is added here, in its
protocol class:

- **A connection cap.** uvicorn's ``limit_concurrency`` answers 503 to every
  request past the limit, so a crowd of idle connections would keep a real
  call out. Here at most :data:`MAX_CONNECTIONS` are open; past it, a new
  connection closes the oldest one that has not sent a whole request head
  (or sits idle between requests): a slowloris client holds many, each with a
  few bytes, and neither takes the daemon's file descriptors (systemd gives a
  service 1,024) nor keeps an operator out. With none of those, the new one
  is closed unanswered. nginx's worker_connections is 512.
- **A head timeout.** uvicorn times out only idle keep-alive connections; a
  connection that has not sent its request head in :data:`READ_TIMEOUT_S` is
  closed here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from kadnode.shell.webapp import MAX_HEAD_BYTES

READ_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5.0  # uvicorn's default: an idle keep-alive connection is closed after it
MAX_CONNECTIONS = 256
GRACE_S = 2.0  # at shutdown, requests in flight get this long to finish


def _capped(limit: int, read_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the cap and the head timeout (see above)."""
    waiting: dict[H11Protocol, None] = {}  # no request in progress, oldest first

    class Capped(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limit:
                if not waiting:
                    transport.close()
                    return
                oldest = next(iter(waiting))
                waiting.pop(oldest)
                oldest.transport.close()
            waiting[self] = None
            self.deadline = self.loop.call_later(read_timeout, self._too_slow)

        def _too_slow(self) -> None:
            if self in waiting and self.cycle is None:
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                waiting.pop(self, None)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                waiting[self] = None  # idle until its next request: the youngest

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            if self.deadline is not None:
                self.deadline.cancel()
            super().connection_lost(exc)

    return Capped


@dataclass(frozen=True, slots=True)
class Listener:
    server: uvicorn.Server
    socket: socket.socket

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening (an OSError here says why not)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    read_timeout: float = READ_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> Listener:
    """Serve ``app`` on ``host:port`` (0 picks a free port: ``Listener.port``)
    in the running loop, until :func:`shutdown`."""
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        http=_capped(max_connections, read_timeout),
        timeout_keep_alive=int(KEEP_ALIVE_S),
        timeout_graceful_shutdown=int(GRACE_S),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,  # a head still arriving
    )
    # uvicorn's own lines are not an operator's business: "Shutting down" at
    # INFO, and a WARNING for every malformed request a stranger sends (a
    # flood on demand); its errors still are.
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    sock = await asyncio.to_thread(_listening_socket, host, port)
    try:
        await server.startup(sockets=[sock])
    except BaseException:
        sock.close()
        raise
    return Listener(server, sock)


async def shutdown(listener: Listener) -> None:
    """Stop listening and let requests in flight finish (at most GRACE_S)."""
    await listener.server.shutdown(sockets=[listener.socket])
