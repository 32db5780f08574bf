"""Watching a value: read it again and again, and tell each new version. I/O (asyncio
timers; the reads are the caller's).

The daemon a watcher talks to does the polling (docs/decisions.md, "Watch: polling,
not replica notification"): nothing is added to the wire, no replica keeps state for a
watcher or sends anything to an address on its behalf, and stock nodes answer the reads
of a plain value. :class:`Backoff` is the schedule (pure); :func:`versions` runs it over
a read and yields each reply whose version differs from the last one it yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from kadnode.config import WATCH_POLL_MAX, WATCH_POLL_MIN

Reply = dict[str, Any]


@dataclass(slots=True)
class Backoff:
    """How long to wait before the next read: ``low`` after a change, twice the last
    wait while nothing changes, never more than ``high`` (kadnode.config.WATCH_POLL_*)."""

    low: float = WATCH_POLL_MIN
    high: float = WATCH_POLL_MAX
    wait: float = field(init=False, default=0.0)

    def after(self, changed: bool) -> float:
        self.wait = self.low if changed or not self.wait else min(self.wait * 2, self.high)
        return self.wait


# What names a version, by the read that returns it (kadnode.shell.service):


def plain_version(reply: Reply) -> Hashable:
    """The value itself (a plain value carries no version of its own)."""
    return (reply["found"], json.dumps(reply["value"]))


def shared_version(reply: Reply) -> Hashable:
    """The set of siblings, each with its vector clock."""
    return frozenset(json.dumps(s, sort_keys=True) for s in reply["siblings"])


def signed_version(reply: Reply) -> Hashable:
    """The sequence number its owner signed (a delete is a version too)."""
    return reply["seq"]


def tells(reply: Reply) -> bool:
    """Whether the reply says anything: a quorum read that fell short of its quorum
    and found nothing does not say the value is gone (its replicas did not answer)."""
    found = reply["found"] or reply.get("deleted", False)
    return found or reply.get("quorum", True)


async def versions(
    read: Callable[[], Awaitable[Reply]],
    version: Callable[[Reply], Hashable],
    stop: asyncio.Event,
    backoff: Backoff | None = None,
) -> AsyncIterator[Reply | None]:
    """The first reply of ``read``, then each reply whose ``version`` differs from the
    last one yielded, and None after each read that brought nothing new (a sign of
    life for the stream). Between reads it waits as ``backoff`` says; it ends once
    ``stop`` is set (the daemon is stopping). Its reads stop when it is closed."""
    backoff = backoff or Backoff()
    last: Hashable | None = None
    first = True
    while not stop.is_set():
        reply = await read()
        seen = version(reply)
        changed = first or (tells(reply) and seen != last)
        if changed:
            first, last = False, seen
        yield reply if changed else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.after(changed))
