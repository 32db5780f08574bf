"""Watching a value (kadnode.shell.watch, .streams, the stream routes of .webapp).

The schedule and the version rules as plain tests; the streams over real HTTP on
127.0.0.1 against fakes (their limits, what ends them, that the server's connection cap
and timeouts leave them alone); and against a real daemon among real nodes
(tests/loopback.py) that a closed stream stops reading and a stopping daemon ends its
streams. That a watcher sees another daemon's write in bounded time is
tests/cli/test_watch_cli.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fakes import SIBLINGS, FakeService
from loopback import network, poll

from kadnode.config import WATCH_POLL_MAX, WATCH_POLL_MIN, WATCH_STREAMS
from kadnode.errors import LocalProtocolError
from kadnode.shell import webapp
from kadnode.shell.httpserver import MAX_CONNECTIONS, serve, shutdown
from kadnode.shell.streams import EVENT_STREAM, Slots, event, events
from kadnode.shell.watch import (
    Backoff,
    plain_version,
    shared_version,
    signed_version,
    tells,
    versions,
)
from kadnode.shell.webapp import build_app

WAIT_S = 5.0  # the bound on every wait of these tests but the live ones'


# -- the schedule and the versions -----------------------------------------------------------


def test_the_wait_doubles_while_nothing_changes_and_is_short_again_after_a_change():
    backoff = Backoff()
    changes = [True, False, False, False, False, False, True, False, False]
    assert [backoff.after(c) for c in changes] == [1, 2, 4, 8, 8, 8, 1, 2, 4]
    assert (WATCH_POLL_MIN, WATCH_POLL_MAX) == (1.0, 8.0)
    # Nothing read yet counts as a change: the first wait is the short one.
    assert Backoff(0.5, 3.0).after(False) == 0.5


def test_a_version_is_the_value_the_siblings_or_the_sequence():
    plain = {"key": "k", "found": True, "value": "a", "elapsed_ms": 1.0}
    assert plain_version(plain) == plain_version({**plain, "elapsed_ms": 9.0, "source": "local"})
    assert plain_version(plain) != plain_version({**plain, "value": "b"})
    assert plain_version(plain) != plain_version({**plain, "found": False, "value": None})
    assert plain_version({**plain, "value": 1}) != plain_version({**plain, "value": "1"})
    shared = {"found": True, "siblings": SIBLINGS, "quorum": True}
    assert shared_version(shared) == shared_version({**shared, "siblings": SIBLINGS[::-1]})
    one_clock_on = [SIBLINGS[0], {**SIBLINGS[1], "clock": {"ab" * 20: 2}}]
    assert shared_version(shared) != shared_version({**shared, "siblings": one_clock_on})
    signed = {"found": True, "deleted": False, "value": "v", "seq": 3}
    assert signed_version(signed) != signed_version({**signed, "seq": 4})
    assert signed_version(signed) == signed_version({**signed, "value": "other"})


def test_a_read_below_its_quorum_that_found_nothing_tells_nothing():
    assert tells({"found": False, "quorum": True})
    assert tells({"found": True, "quorum": False})
    assert tells({"found": False, "deleted": True, "quorum": False})  # a signed delete
    assert not tells({"found": False, "deleted": False, "quorum": False})
    assert tells({"found": False, "value": None})  # a plain read has no quorum


class Schedule:
    """A Backoff that waits nothing and records whether each read changed anything."""

    def __init__(self) -> None:
        self.changed: list[bool] = []

    def after(self, changed: bool) -> float:
        self.changed.append(changed)
        return 0.0


async def test_versions_yields_the_first_read_and_each_change_and_none_otherwise():
    def shared(*values: str, found: bool = True, quorum: bool = True) -> dict[str, Any]:
        siblings = [{"value": v, "clock": {"ab" * 20: 1}} for v in values]
        return {"found": found, "siblings": siblings, "quorum": quorum}

    script = [
        shared(found=False, quorum=False),  # the first read is told, whatever it says
        shared("a"),
        shared("a"),
        shared(found=False, quorum=False),  # the replicas did not answer: no news
        shared("a", "b"),
        shared(found=False),  # gone, and a quorum says so
    ]
    reads = iter(script)
    stop = asyncio.Event()

    async def read() -> dict[str, Any]:
        reply = next(reads, None)
        if reply is None:
            stop.set()
            return shared(found=False)
        return reply

    schedule = Schedule()
    async with asyncio.timeout(WAIT_S):
        got = [r async for r in versions(read, shared_version, stop, schedule)]  # type: ignore[arg-type]
    assert got == [script[0], script[1], None, None, script[4], script[5], None]
    assert schedule.changed == [True, True, False, False, True, True, False]


async def test_versions_ends_once_stop_is_set_even_mid_wait():
    stop = asyncio.Event()
    reads = 0

    async def read() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"found": True, "value": "v"}

    replies = versions(read, plain_version, stop, Backoff(60.0, 60.0))
    assert await anext(replies) == {"found": True, "value": "v"}
    later = asyncio.create_task(anext(replies, "ended"))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(later, WAIT_S) == "ended"
    assert reads == 1


# -- the framing and the limits ----------------------------------------------------------------


def test_events_parse_as_the_standard_reads_them():
    text = (
        event("version", {"value": "a\nb"}).decode()
        + ':\n\nid: 7\nretry: 10\nevent: error\ndata: {"error":\ndata: "x"}\n\n'
        + "data: 1\n\n"
        + "event: lost\n"  # never dispatched: no blank line after it
    )
    assert [(n, json.loads(d)) for n, d in events(text.splitlines())] == [
        ("version", {"value": "a\nb"}),
        ("error", {"error": "x"}),
        ("message", 1),
    ]


def test_slots_are_per_client_and_in_all():
    slots = Slots(total=3, per_client=2)
    assert slots.take("127.0.0.1") is None and slots.take("127.0.0.1") is None
    refused = slots.take("127.0.0.1")
    assert refused is not None and refused.status == 429
    assert str(refused) == (
        "127.0.0.1 has 2 watch streams open, the most one client may have; close one first"
    )
    assert slots.take("127.0.0.2") is None
    refused = slots.take("127.0.0.3")
    assert refused is not None and str(refused) == (
        "3 watch streams are open, the most this node serves"
    )
    slots.give_back("127.0.0.1")
    assert slots.take("127.0.0.3") is None and len(slots) == 3
    assert Slots().total == WATCH_STREAMS < MAX_CONNECTIONS


# -- streams over HTTP, on fakes -------------------------------------------------------------


TICK = 0.05  # the endless fake's time between reads


class Endless(FakeService):
    """Its plain watch never ends on its own: the read's answer, then a read with
    nothing new every TICK s. Counts its reads (by key) and its streams open."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()
        self.open = 0
        self.then: Exception | None = None  # raised by the next read, once set

    def watch(self, key: str) -> AsyncIterator[dict[str, Any] | None]:
        return self._endless(key)

    async def _endless(self, key: str) -> AsyncIterator[dict[str, Any] | None]:
        self.open += 1
        try:
            yield await self.get(key)
            while True:
                await asyncio.sleep(TICK)
                self.reads[key] += 1
                if self.then is not None:
                    raise self.then
                yield None
        finally:
            self.open -= 1


@contextlib.asynccontextmanager
async def served(fake: FakeService, slots: Slots, **options: Any) -> AsyncIterator[int]:
    listener = await serve(build_app(fake, slots=slots), "127.0.0.1", 0, **options)
    try:
        yield listener.port
    finally:
        await shutdown(listener)


@dataclass
class Stream:
    status: int
    content_type: str
    lines: AsyncIterator[str]
    body: str  # a refusal's


@contextlib.asynccontextmanager
async def stream(
    port: int, path: str = "/watch/values/k", source: str = "127.0.0.1", method: str = "GET"
) -> AsyncIterator[Stream]:
    """One request on a connection of its own from ``source``, its response as it comes;
    the connection is closed on leaving."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with (
        httpx.AsyncClient(transport=transport, trust_env=False, timeout=WAIT_S) as http,
        http.stream(method, f"http://127.0.0.1:{port}{path}") as reply,
    ):
        body = "" if reply.status_code == 200 else (await reply.aread()).decode()
        yield Stream(reply.status_code, reply.headers["content-type"], reply.aiter_lines(), body)


async def next_event(s: Stream) -> tuple[str, Any]:
    """The next event, skipping comments."""
    lines: list[str] = []
    async with asyncio.timeout(WAIT_S):
        async for line in s.lines:
            lines.append(line)
            for name, data in events(lines):
                return name, json.loads(data)
    raise AssertionError(f"the stream ended after {lines}")


async def test_a_stream_is_server_sent_events_and_says_why_it_ended():
    async with served(FakeService(), Slots()) as port, stream(port) as s:
        assert (s.status, s.content_type) == (200, f"{EVENT_STREAM}; charset=utf-8")
        assert await next_event(s) == ("version", await FakeService().get("k"))
        assert await next_event(s) == ("error", {"error": "the daemon is stopping"})


async def test_a_client_past_its_limit_gets_429_and_a_closed_stream_frees_its_slot():
    fake = Endless()
    async with served(fake, Slots(total=3, per_client=2)) as port:
        async with contextlib.AsyncExitStack() as held:
            first = await held.enter_async_context(stream(port))
            await held.enter_async_context(stream(port))
            async with stream(port) as third:
                assert third.status == 429
                assert json.loads(third.body) == {
                    "error": "127.0.0.1 has 2 watch streams open, the most one client may"
                    " have; close one first"
                }
            # Another client (another loopback address) still may, up to the total.
            await held.enter_async_context(stream(port, source="127.0.0.2"))
            async with stream(port, source="127.0.0.3") as over:
                assert over.status == 429
                assert json.loads(over.body)["error"] == (
                    "3 watch streams are open, the most this node serves"
                )
            assert (await next_event(first))[0] == "version"
            assert fake.open == 3
        # Closed: their reads stop, and their slots are free again.
        await poll(lambda: _true(fake.open == 0), WAIT_S, "every stream to stop reading")
        reads = fake.reads.total()
        await asyncio.sleep(5 * TICK)
        assert fake.reads.total() == reads
        async with stream(port) as again, stream(port, source="127.0.0.3") as other:
            assert (again.status, other.status) == (200, 200)


async def _true(value: bool) -> bool:
    return value


async def test_a_stream_outlives_the_head_and_body_timeouts_and_is_never_evicted(monkeypatch):
    """The server closes a connection that has not sent its head within the head timeout,
    and at its connection cap the oldest waiting one (kadnode.shell.httpserver); a body
    gets BODY_TIMEOUT_S. A stream is a request in progress: none of them touch it."""
    monkeypatch.setattr(webapp, "BODY_TIMEOUT_S", 0.2)
    fake = Endless()
    options = {"read_timeout": 0.2, "max_connections": 4}
    async with (
        served(fake, Slots(), **options) as port,
        stream(port, "/watch/values/a") as a,
        stream(port, "/watch/values/b") as b,
    ):
        assert (await next_event(a))[0] == (await next_event(b))[0] == "version"
        crowd = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
        try:
            await asyncio.sleep(0.6)  # past the head and body timeouts, the cap long reached
            for key, s in (("a", a), ("b", b)):
                # Each read sends a sign of life; the ones after now arrive too.
                wanted, alive = fake.reads[key] + 3, 0
                async with asyncio.timeout(WAIT_S):
                    while alive < wanted:
                        alive += await anext(s.lines) == ":"
            assert fake.open == 2
        finally:
            for _, writer in crowd:
                writer.close()


async def test_head_of_a_stream_is_its_headers_and_frees_its_slot():
    fake = Endless()
    slots = Slots(total=1, per_client=1)
    async with served(fake, slots) as port:
        async with stream(port, method="HEAD") as head:
            assert (head.status, head.content_type) == (200, f"{EVENT_STREAM}; charset=utf-8")
        await poll(lambda: _true(len(slots) == 0 and fake.open == 0), WAIT_S, "the slot back")


async def test_a_first_read_that_fails_is_the_replys_error_and_a_later_one_ends_the_stream():
    fake = Endless()
    slots = Slots()
    async with served(fake, slots) as port:
        fake.error = LocalProtocolError("key 'k' holds a shared value; read it with ...")
        async with stream(port) as refused:
            assert (refused.status, json.loads(refused.body)) == (
                400,
                {"error": "key 'k' holds a shared value; read it with ..."},
            )
        assert len(slots) == 0 and fake.open == 0
        fake.error = None
        async with stream(port) as s:
            assert (await next_event(s))[0] == "version"
            fake.then = LocalProtocolError("the key changed kind\nsecond line")
            assert await next_event(s) == ("error", {"error": "the key changed kind"})
        fake.then = RuntimeError("a bug")
        async with stream(port) as s:
            assert (await next_event(s))[0] == "version"
            assert await next_event(s) == ("error", {"error": "internal error"})
        await poll(lambda: _true(len(slots) == 0 and fake.open == 0), WAIT_S, "slots back")


# -- streams of a real daemon ------------------------------------------------------------------


LIVE_S = 3 * WATCH_POLL_MAX  # a live wait, bounded


async def test_a_closed_stream_stops_reading_and_a_stopping_daemon_ends_the_others(tmp_path):
    async with network(tmp_path) as net:
        service = net.daemon
        await asyncio.to_thread(net.client().put_shared, "k", "v1")
        path = "/watch/shared/k"
        async with stream(net.api_port, path) as closed:
            name, data = await next_event(closed)
            assert (name, [x["value"] for x in data["siblings"]]) == ("version", ["v1"])
            assert service.watching == 1
        await poll(lambda: _true(service.watching == 0), WAIT_S, "the closed stream to end")
        # Open, it would read again 1 s after its first read, and 2 s after that.
        reads = service.stats["watch_reads"]
        await asyncio.sleep(WATCH_POLL_MIN + 1.5)
        assert service.stats["watch_reads"] == reads

        async with stream(net.api_port, path) as kept:
            assert (await next_event(kept))[0] == "version"
            started = time.monotonic()
            await net.nodes[0].put_shared("k", "v2", None)
            name, data = await asyncio.wait_for(next_event(kept), LIVE_S)
            assert name == "version" and {x["value"] for x in data["siblings"]} == {"v1", "v2"}
            assert time.monotonic() - started <= WATCH_POLL_MAX + 1
            # The daemon stops: the stream's last event says so, at once.
            service.stop.set()
            stopped = time.monotonic()
            assert await asyncio.wait_for(next_event(kept), LIVE_S) == (
                "error",
                {"error": "the daemon is stopping"},
            )
            assert time.monotonic() - stopped < 1.0
            assert service.watching == 0
