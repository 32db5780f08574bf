"""The asyncio shell around the node core: one UDP socket, one timer. I/O.

aioquic's shape: ``datagram_received`` hands the datagram to the core with
the time, then :meth:`UdpNode._transmit` sends what the core decided,
resolves finished operations and re-arms a single ``call_later`` for the
core's next timer. Nothing raised while handling one datagram reaches the
event loop: it is counted (``internal_errors``) and logged at most once a
minute (a KadnodeError, such as a failing disk's, as one line).

The core's clock here is unix seconds (:func:`kadnode.shell.clock.now`: the
wall clock read at start, carried on by the monotonic clock), so expiry
times stored on disk stay meaningful across restarts and a step of the
machine's clock does not fire or hold the core's timers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable

from kadnode.core.messages import Addr
from kadnode.core.node import NodeCore
from kadnode.errors import KadnodeError
from kadnode.shell.clock import now as node_clock

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL = 60.0
# Fault injection (chaos testing, where the kernel has no netem): at most
# this many datagrams wait in the delay line; past it they are dropped.
MAX_DELAYED = 10_000


class UdpNode(asyncio.DatagramProtocol):
    def __init__(self, core: NodeCore, clock: Callable[[], float] = node_clock):
        self.core = core
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None
        self._ops: dict[int, asyncio.Future] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._last_error_log = -ERROR_LOG_INTERVAL
        self.host = ""
        self.port = 0
        # (delay, jitter) in seconds: every datagram sent waits delay +-
        # jitter first. Off (None) unless the daemon allows fault injection.
        self.fault_delay: tuple[float, float] | None = None
        self._delayed = 0

    # ---- asyncio callbacks ----

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.host, self.port = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        try:
            self.core.receive_datagram(data, (addr[0], addr[1]), self.clock())
        except Exception as exc:
            self._internal_error("handling a datagram", exc)
        self._flush("after a datagram")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the request will time out.
        self.core.stats["socket_errors"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for fut in self._ops.values():
            if not fut.done():
                fut.cancel()
        self._ops.clear()

    # ---- plumbing ----

    def _internal_error(self, what: str, exc: Exception) -> None:
        """Count it; log it at most once a minute, a KadnodeError (a failing disk,
        say) as its one line, anything else with its traceback (a bug)."""
        self.core.stats["internal_errors"] += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(
                "internal error while %s: %s (counted; further ones are not logged for %d s)",
                what,
                exc,
                ERROR_LOG_INTERVAL,
                exc_info=None if isinstance(exc, KadnodeError) else exc,
            )

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(self.clock())
        except Exception as exc:
            self._internal_error("handling a timer", exc)
        self._flush("after a timer")

    def _flush(self, when: str) -> None:
        """:meth:`_transmit` from an event loop callback: a failure is counted, not raised."""
        try:
            self._transmit()
        except Exception as exc:
            self._internal_error(f"sending {when}", exc)

    def _transmit(self) -> None:
        core = self.core
        transport = self.transport
        for data, addr in core.datagrams_to_send():
            if self.fault_delay is not None:
                self._send_later(data, addr)
            elif transport is not None:
                self._send(data, addr)
        while (event := core.next_event()) is not None:
            fut = self._ops.pop(event.op_id, None)
            if fut is not None and not fut.done():
                fut.set_result(event.result)
        if transport is None or transport.is_closing():
            return
        at = core.get_timer()
        # Re-armed only for an earlier time: a timer that fires early finds
        # nothing due and re-arms (most replies move the core's timer later,
        # by answering the request whose deadline was next).
        if self._timer_at is None or at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, at - self.clock()), self._on_timer
            )

    def _send(self, data: bytes, addr: Addr) -> None:
        try:
            self.transport.sendto(data, addr)  # type: ignore[union-attr]
        except OSError:
            self.core.stats["send_errors"] += 1

    def _send_later(self, data: bytes, addr: Addr) -> None:
        """Fault injection: hold a datagram for delay +- jitter, then send it."""
        if self._delayed >= MAX_DELAYED:
            self.core.stats["fault_dropped"] += 1
            return
        delay, jitter = self.fault_delay  # type: ignore[misc]
        self._delayed += 1
        self.core.stats["fault_delayed"] += 1
        wait = max(0.0, delay + random.uniform(-jitter, jitter))
        asyncio.get_running_loop().call_later(wait, self._release, data, addr)

    def _release(self, data: bytes, addr: Addr) -> None:
        self._delayed -= 1
        if self.transport is not None and not self.transport.is_closing():
            self._send(data, addr)

    async def run(self, start: Callable[[NodeCore, float], int]):
        """Start an operation on the core and wait for its result."""
        op = start(self.core, self.clock())
        fut = asyncio.get_running_loop().create_future()
        self._ops[op] = fut
        self._transmit()
        return await fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_udp_node(core: NodeCore, host: str, port: int) -> UdpNode:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpNode(core), local_addr=(host, port), family=family
    )
    return protocol
