"""How an operation of the control API is declared, once. No I/O.

An :class:`Operation` names the :class:`NodeService` method it calls, its HTTP
method and path, its path and query parameters and request body (pydantic
models from :mod:`kadnode.shell.messages`), its reply model, examples and
documentation, and the CLI command that calls it. From this one declaration
:mod:`kadnode.shell.webapp` builds the route and the OpenAPI document,
:class:`kadnode.cli.client.ApiClient` the client call and the CLI its command.
The declarations themselves are :data:`kadnode.shell.api.OPERATIONS`; to add an
operation, add one there and the method to NodeService. tests/cli/test_client.py
(``test_every_operation_is_...``) fails when they disagree.

An operation whose media type is server-sent events
(:data:`~kadnode.shell.streams.EVENT_STREAM`) is a stream (``kadnode watch``): its
service method is an async generator, each event's data is one reply of its reply
model, and the client yields them as they come.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic import BaseModel, TypeAdapter, ValidationError

from kadnode.config import (
    MAX_KEY_BYTES,
    MAX_SALT_BYTES,
    WATCH_POLL_MAX,
    WATCH_POLL_MIN,
    WATCH_STREAMS,
    WATCH_STREAMS_PER_CLIENT,
)
from kadnode.core.ids import parse_hex, user_key
from kadnode.errors import LocalProtocolError
from kadnode.shell.messages import Context, salt_fits
from kadnode.shell.streams import EVENT_STREAM

JSON = "application/json"
HTML = "text/html; charset=utf-8"
METRICS = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text exposition


class NodeService(Protocol):
    """What the operations need from a running node; every dict is JSON-ready."""

    async def info(self) -> dict[str, Any]: ...
    async def doctor(self) -> dict[str, Any]: ...
    async def lookup(self, target: int) -> dict[str, Any]: ...
    async def put(self, key: str, value: str, ttl: float | None = None) -> dict[str, Any]: ...
    async def get(self, key: str) -> dict[str, Any]: ...
    async def peers(self) -> dict[str, Any]: ...
    async def ping(self, host: str, port: int) -> dict[str, Any]: ...
    async def register(self) -> dict[str, Any]: ...
    async def deregister(self) -> dict[str, Any]: ...
    async def find_peer(self, target: int) -> dict[str, Any]: ...
    async def put_shared(
        self, key: str, value: str, context: list[list[Any]] | None
    ) -> dict[str, Any]: ...
    async def get_shared(self, key: str) -> dict[str, Any]: ...
    async def delete_shared(self, key: str, context: list[list[Any]] | None) -> dict[str, Any]: ...
    async def put_signed(self, value: str, salt: str, cas: int | None) -> dict[str, Any]: ...
    async def get_signed(self, public_key: str, salt: str) -> dict[str, Any]: ...
    async def delete_signed(self, salt: str, cas: int | None) -> dict[str, Any]: ...
    async def delete(self, key: str) -> dict[str, Any]: ...
    async def exists(self, key: str) -> dict[str, Any]: ...
    async def owner(self, key: str) -> dict[str, Any]: ...
    async def ring(self) -> dict[str, Any]: ...
    async def leave(self) -> dict[str, Any]: ...
    async def fault(self, delay_ms: float, jitter_ms: float) -> dict[str, Any]: ...
    async def metrics(self) -> str: ...
    def watch(self, key: str) -> AsyncIterator[dict[str, Any] | None]: ...
    def watch_shared(self, key: str) -> AsyncIterator[dict[str, Any] | None]: ...
    def watch_signed(self, public_key: str, salt: str) -> AsyncIterator[dict[str, Any] | None]: ...


def _key(text: str) -> str:
    if not text:
        raise LocalProtocolError("the key cannot be empty")
    user_key(text)  # over the key limit: one line, before any work
    return text


@dataclass(frozen=True, slots=True)
class Param:
    """A path parameter: ``parse`` turns the text into what the service takes
    (raising a KadnodeError with one line), on the daemon and in the client."""

    name: str
    description: str
    example: str
    parse: Callable[[str], Any]
    pattern: str | None = None
    default: str | None = None  # a query parameter's, when it is not given


KEY = Param("key", f"the key, any text (at most {MAX_KEY_BYTES} bytes UTF-8)", "greeting", _key)
NODE_ID = Param("id", "160-bit node id, 40 hex digits", "8f14e45fceea167a5a36dedd4bea2543b0e1a1d3",
                parse_hex, "^(0x)?[0-9a-fA-F]{40}$")  # fmt: skip


def _public_key(text: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise LocalProtocolError(f"a public key is 64 lower-case hex digits, not {text[:80]!r}")
    return text


PUBLIC_KEY = Param(
    "public_key",
    "the owner's ed25519 public key, 64 hex digits",
    "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
    _public_key,
    "^[0-9a-f]{64}$",
)
SALT = Param(
    "salt",
    f"names one of the owner's values (at most {MAX_SALT_BYTES} bytes UTF-8; default none)",
    "profile",
    salt_fits,
    default="",
)


def _sequence(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise LocalProtocolError(f"a sequence number is a whole number >= 0, not {text[:80]!r}")
    return int(text)


CAS = Param(
    "cas",
    "compare-and-swap: delete only if the newest version is at this seq (409 otherwise)",
    "4",
    _sequence,
)


_CONTEXT = TypeAdapter(Context)


def _context(text: str) -> list:
    """A context given as JSON text: ``[[writer id hex, counter], ...]``."""
    try:
        return [list(entry) for entry in _CONTEXT.validate_json(text)]
    except ValidationError:
        raise LocalProtocolError(
            "a context is JSON, [[40-hex writer id, counter], ...], as get --shared --json"
            f" gives it, not {text[:80]!r}"
        ) from None


CONTEXT = Param(
    "context",
    "the context a read returned (JSON, as get --shared --json gives it): the delete"
    " supersedes what that read saw; absent, what a read just before finds",
    '[["8f14e45fceea167a5a36dedd4bea2543b0e1a1d3",2]]',
    _context,
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented reply: its status, what it means, an example."""

    description: str
    example: Any
    status: int = 200


def not_found(reply: Mapping[str, Any]) -> bool:
    return not reply["found"]


# A read that can find nothing: the CLI exits 1, the daemon answers 404.
NOT_FOUND_IS_404: dict[str, Any] = {"missed": not_found, "missed_status": 404}


@dataclass(frozen=True, slots=True)
class Operation:
    name: str  # the NodeService method, the client method, the operationId
    method: str
    path: str  # "/values/{key}": each {name} is a Param of params, in order
    summary: str
    replies: tuple[Reply, ...]
    reply: type[BaseModel] | None  # None: a text reply of media_type
    description: str = ""
    params: tuple[Param, ...] = ()
    query: tuple[Param, ...] = ()  # optional query parameters, each with its default
    body: type[BaseModel] | None = None
    media_type: str = JSON
    tag: str = "node"
    # The CLI command that calls it ("find-peer"), and the flag that picks it
    # among the command's variants ("shared": put --shared); None: no command.
    command: str | None = None
    variant: str | None = None
    # A reply that is no answer (key not found, no reply to a ping): the CLI
    # exits 1, and the daemon answers with missed_status.
    missed: Callable[[Mapping[str, Any]], bool] | None = None
    missed_status: int = 200
    # The service call's arguments from the parsed params, query parameters
    # and the body's fields, by name; default: all of them, in order.
    arguments: Callable[[dict[str, Any]], tuple[Any, ...]] | None = None
    # What answers instead of the service method of this name.
    answer: Callable[[NodeService], Awaitable[Any]] | None = None

    def call_arguments(self, given: dict[str, Any]) -> tuple[Any, ...]:
        return self.arguments(given) if self.arguments else tuple(given.values())

    @property
    def stream(self) -> bool:
        """Its reply is server-sent events, each one's data a reply of ``reply``."""
        return self.media_type == EVENT_STREAM

    @property
    def help(self) -> str:
        return self.summary[0].lower() + self.summary[1:]


WATCH_DOC = (
    "Server-sent events: a `version` event at once, its data the reply {read} gives, then"
    " one each time the version changes ({what}), found or not; a comment line after each"
    " read that brought nothing new. The node reads again {low:g} s after a change, the wait"
    " doubling while nothing changes up to {high:g} s, so a version is seen at most {high:g} s"
    " and one read after it landed. The stream ends with an `error` event when the daemon"
    " stops. At most {per_client} streams per client (its address) and {total} in all (429)."
)


def watching(read: Operation, summary: str, what: str) -> Operation:
    """The stream of ``read``'s new versions (``what`` names a version): GET
    /watch + its path, its parameters, each event one of its replies."""
    doc = WATCH_DOC.format(
        read=f"{read.method} {read.path}",
        what=what,
        low=WATCH_POLL_MIN,
        high=WATCH_POLL_MAX,
        per_client=WATCH_STREAMS_PER_CLIENT,
        total=WATCH_STREAMS,
    )
    return replace(
        read,
        name=read.name.replace("get", "watch", 1),
        path="/watch" + read.path,
        summary=summary,
        replies=(Reply(f"each new version, as {read.name} answers it", read.replies[0].example),),
        description=doc,
        media_type=EVENT_STREAM,
        command="watch",
        missed=None,
        missed_status=200,
    )
