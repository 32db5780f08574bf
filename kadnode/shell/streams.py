"""The control API's event streams (``GET /watch/...``): server-sent events, and how
many may be open. Pure: bytes and counts in, bytes, events and refusals out.

Framing (the WHATWG HTML standard, section 9.2, "Server-sent events"): an event is an
``event: NAME`` line, a ``data: JSON`` line and a blank line; a line that starts with
``:`` is a comment, which a client ignores. The daemon sends one after each read that
brought nothing new, so that a client sees the stream is alive (its read timeout does
not fire) and a client that went away is noticed at the next write. Events are
``version`` (the read's reply, as its read operation answers it) and ``error``
(``{"error": "<one line>"}``, the last event of a stream that ends for any reason but
the client leaving).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kadnode.config import WATCH_STREAMS, WATCH_STREAMS_PER_CLIENT
from kadnode.errors import HttpError

EVENT_STREAM = "text/event-stream"
ALIVE = b":\n\n"


def event(name: str, data: Any) -> bytes:
    """One event; JSON escapes line breaks, so its data is one line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Each event in a stream's lines: its name and its data, as the standard's
    parser reads them (a data field's lines joined by line breaks; comments and
    the fields other than event and data ignored)."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)


@dataclass
class Slots:
    """Streams open from each client (its remote host) and in all; :meth:`take`
    refuses one past either limit (429), :meth:`give_back` frees it."""

    total: int = WATCH_STREAMS
    per_client: int = WATCH_STREAMS_PER_CLIENT
    held: Counter[str] = field(default_factory=Counter)

    def take(self, client: str) -> HttpError | None:
        if self.held[client] >= self.per_client:
            return HttpError(
                429,
                f"{client} has {self.per_client} watch streams open, the most one client"
                " may have; close one first",
            )
        if self.held.total() >= self.total:
            return HttpError(429, f"{self.total} watch streams are open, the most this node serves")
        self.held[client] += 1
        return None

    def give_back(self, client: str) -> None:
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]

    def __len__(self) -> int:
        return self.held.total()
