"""A minimal, strict HTTP/1.1 server for the local control API. Does network I/O.

One request per connection (``Connection: close``), bodies framed by
``Content-Length`` only, bounded head and body sizes, JSON in and out. The
route table is data: :mod:`kadnode.shell.apidocs` renders it as an OpenAPI 3.1
document and an HTML page, so the served API and its documentation cannot
drift apart.

Errors: a :class:`~kadnode.errors.KadnodeError` from a handler becomes
``{"error": "<one line>"}`` with a status from :data:`ERROR_STATUS`; anything
else is logged once with its traceback and answered with a 500 whose body is
``{"error": "internal error"}`` (nothing of the failure leaks to the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

from kadnode.errors import KadnodeError, LocalProtocolError

logger = logging.getLogger(__name__)

JsonSchema = dict[str, Any]
JSON = "application/json"
HTML = "text/html; charset=utf-8"

# Apache's LimitRequestFieldSize is 8190 bytes; a request head of ours is a
# request line and a few short headers.
MAX_HEAD_BYTES = 8 * 1024
# Values are at most config.MAX_VALUE_BYTES (1000); JSON escaping can grow a
# value sixfold, so 64 KiB leaves room without letting a client pin memory.
MAX_BODY_BYTES = 64 * 1024
READ_TIMEOUT_S = 10.0  # a client that connects and stalls is dropped (408)
# Connections open at once. Past it, a new connection closes the oldest one
# still sending its request (a slowloris client holds many, each with a few
# bytes), so an idle crowd neither takes the daemon's file descriptors
# (systemd gives a service 1,024) nor keeps a real call out; with none of
# those, the new one is closed unanswered. nginx's worker_connections is 512.
MAX_CONNECTIONS = 256
LINGER_S = 1.0  # after replying, drain what the client still sends for at most this long

# First match wins, so list subclasses before their bases.
ERROR_STATUS: dict[type[KadnodeError], int] = {LocalProtocolError: 400, KadnodeError: 503}
ERROR_SCHEMA: JsonSchema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line"}},
}

_REQUEST_LINE = re.compile(r"([A-Z]+) (/[\x21-\x7e]*) HTTP/1\.[01]")
_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e]*?)[ \t]*")
_SINGLE_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})
_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


class HttpError(KadnodeError):
    """A request the server refuses before any handler runs (404, 405, 413...)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str]  # path parameters, percent-decoded
    query: Mapping[str, str]  # declared query parameters only
    body: Any  # the decoded JSON body, None when the route takes none


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    media_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    head_only: bool = False  # a reply to HEAD: the GET's headers, no body (RFC 9110 9.3.2)


Handler = Callable[[Request], Awaitable[Response]]
# Who may call (kadnode.shell.apiguard): a request's method and headers in,
# a refusal or None out; asked before the route is looked up.
Guard = Callable[[str, Mapping[str, str]], HttpError | None]


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter. Values reach the handler as strings, which
    parses them (the schema documents the format for clients)."""

    name: str
    description: str
    example: str
    schema: JsonSchema = field(default_factory=lambda: {"type": "string"})
    required: bool = True  # path parameters are always required


@dataclass(frozen=True, slots=True)
class Payload:
    """A request or response body: its schema and an example for the docs."""

    schema: JsonSchema
    example: Any
    description: str = ""
    media_type: str = JSON


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # a template such as "/values/{key}"
    handler: Handler
    summary: str
    responses: Mapping[int, Payload]
    description: str = ""
    path_params: tuple[Param, ...] = ()
    query_params: tuple[Param, ...] = ()
    body: Payload | None = None  # a JSON request body, checked against its schema
    tag: str = "node"

    def __post_init__(self) -> None:
        names = re.findall(r"/{(\w+)}(?=/|$)", self.path)
        if names != [p.name for p in self.path_params] or self.path.count("{") != len(names):
            raise LocalProtocolError(f"{self.path}: declare each /{{name}} segment, in order")
        if not (self.method.isupper() and self.path.startswith("/") and self.responses):
            raise LocalProtocolError(f"{self.method} {self.path}: bad route")


def json_response(
    data: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    body = json.dumps(data, allow_nan=False, ensure_ascii=False) + "\n"
    return Response(status, body.encode(), JSON, headers)


def text_response(text: str, media_type: str, status: int = 200) -> Response:
    return Response(status, text.encode(), media_type)


def one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_schema(schema: JsonSchema, value: Any, where: str = "body") -> None:
    """Check ``value`` against the JSON Schema subset routes use: type,
    properties, required, additionalProperties, items, pattern, minimum and
    maximum. Raises :class:`LocalProtocolError` naming the first mismatch."""
    kinds = schema.get("type")
    names = [kinds] if isinstance(kinds, str) else kinds
    if names is not None and not any(_is(value, name) for name in names):
        raise LocalProtocolError(f"{where}: expected {' or '.join(names)}")
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                raise LocalProtocolError(f"{where}: missing {name!r}")
        for name, item in value.items():
            sub = schema.get("properties", {}).get(name, schema.get("additionalProperties", True))
            if sub is False:
                raise LocalProtocolError(f"{where}: unexpected {name!r}")
            if isinstance(sub, dict):
                check_schema(sub, item, f"{where}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            check_schema(schema["items"], item, f"{where}[{index}]")
    elif isinstance(value, str) and not re.search(schema.get("pattern", ""), value):
        raise LocalProtocolError(f"{where}: does not match {schema['pattern']}")
    elif _is(value, "number") and not (
        schema.get("minimum", value) <= value <= schema.get("maximum", value)
    ):
        raise LocalProtocolError(f"{where}: {value} is out of range")


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])


@dataclass(frozen=True, slots=True)
class Head:
    method: str
    target: str
    headers: Mapping[str, str]  # names lower-cased


def parse_head(raw: bytes) -> Head:
    """Parse a request head ending in CRLF CRLF. Pure; raises only HttpError."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "request head is not ASCII") from None
    request_line, *lines = text.removesuffix("\r\n\r\n").split("\r\n")
    line = _REQUEST_LINE.fullmatch(request_line)
    if line is None:
        raise HttpError(400, "malformed request line")
    headers: dict[str, str] = {}
    for header_line in lines:
        header = _HEADER.fullmatch(header_line)
        if header is None:
            raise HttpError(400, "malformed header line")
        name = header[1].lower()
        if name in headers and name in _SINGLE_HEADERS:
            raise HttpError(400, f"repeated {name} header")
        headers[name] = header[2]
    return Head(line[1], line[2], headers)


def _body_length(head: Head) -> int:
    if "transfer-encoding" in head.headers:
        raise HttpError(411, "chunked bodies are not supported; send Content-Length")
    raw = head.headers.get("content-length", "0")
    if not (raw.isascii() and raw.isdigit()):
        raise HttpError(400, "bad Content-Length")
    if int(raw) > MAX_BODY_BYTES:
        raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
    return int(raw)


async def _read_message(reader: asyncio.StreamReader) -> tuple[Head, bytes] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None  # connected and closed without a request
        raise HttpError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"request head over {MAX_HEAD_BYTES} bytes") from None
    head = parse_head(raw)
    try:
        return head, await reader.readexactly(_body_length(head))
    except asyncio.IncompleteReadError:
        raise HttpError(400, "request body shorter than Content-Length") from None


def _match(template: str, path: str) -> dict[str, str] | None:
    want, got = template.split("/"), path.split("/")
    if len(want) != len(got):
        return None
    params = {}
    for pattern, segment in zip(want, got, strict=True):
        if pattern.startswith("{") and segment:
            params[pattern[1:-1]] = segment
        elif pattern != segment:
            return None
    return params


def _resolve(routes: Sequence[Route], head: Head, body: bytes) -> tuple[Route, Request]:
    path, _, query = head.target.partition("?")
    matches = [(r, params) for r in routes if (params := _match(r.path, path)) is not None]
    if not matches:
        raise HttpError(404, f"no such endpoint: {path}")
    by_method = {route.method: (route, params) for route, params in matches}
    if "GET" in by_method:
        by_method["HEAD"] = by_method["GET"]  # every GET answers HEAD too
    if head.method not in by_method:
        allow = ", ".join(sorted(by_method))
        raise HttpError(
            405, f"{head.method} not allowed on {path}; use {allow}", (("Allow", allow),)
        )
    route, params = by_method[head.method]
    try:
        decoded = {name: unquote(value, errors="strict") for name, value in params.items()}
    except UnicodeDecodeError:
        raise HttpError(400, "path is not percent-encoded UTF-8") from None
    request = Request(
        route.method, path, decoded, _query(route, query), _json_body(route, head, body)
    )
    return route, request


def _query(route: Route, query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True, errors="strict")
    except ValueError:
        raise HttpError(400, "malformed query string") from None
    declared = {p.name for p in route.query_params}
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in declared or name in values:
            raise HttpError(400, f"unknown or repeated query parameter {name!r}")
        values[name] = value
    missing = [p.name for p in route.query_params if p.required and p.name not in values]
    if missing:
        raise HttpError(400, f"missing query parameter {missing[0]!r}")
    return values


def _json_body(route: Route, head: Head, raw: bytes) -> Any:
    if route.body is None:
        if raw:
            raise HttpError(400, f"{route.method} {route.path} takes no body")
        return None
    if "content-length" not in head.headers:
        raise HttpError(411, "send the JSON body with a Content-Length header")
    # Requiring the JSON media type forces a CORS preflight on cross-site
    # requests, which this server never answers: web pages cannot call us.
    if head.headers.get("content-type", "").partition(";")[0].strip().lower() != JSON:
        raise HttpError(415, f"send the body as {JSON}")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise HttpError(400, "request body is not valid JSON") from None
    check_schema(route.body.schema, data)
    return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _error_response(exc: KadnodeError) -> Response:
    if isinstance(exc, HttpError):
        return json_response({"error": one_line(exc)}, exc.status, exc.headers)
    status = next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))
    return json_response({"error": one_line(exc)}, status)


async def _respond(
    routes: Sequence[Route],
    read_timeout: float,
    guard: Guard | None,
    reader: asyncio.StreamReader,
    received: Callable[[], None],
) -> Response | None:
    try:
        message = await asyncio.wait_for(_read_message(reader), read_timeout)
        received()
    except TimeoutError:
        return _error_response(HttpError(408, "request not received in time"))
    except HttpError as exc:
        return _error_response(exc)
    if message is None:
        return None
    head, body = message
    started = time.perf_counter()
    response = await _answer(routes, guard, head, body)
    if head.method == "HEAD":
        response = replace(response, head_only=True)
    ms = (time.perf_counter() - started) * 1000
    logger.debug("%s %s: %d in %.1f ms", head.method, head.target, response.status, ms)
    return response


async def _answer(
    routes: Sequence[Route], guard: Guard | None, head: Head, body: bytes
) -> Response:
    if guard is not None and (refused := guard(head.method, head.headers)) is not None:
        return _error_response(refused)
    try:
        route, request = _resolve(routes, head, body)
        return await route.handler(request)
    except KadnodeError as exc:
        return _error_response(exc)
    except Exception:
        logger.exception("%s %s failed", head.method, head.target)
        return json_response({"error": "internal error"}, 500)


def _encode(response: Response) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
        f"Content-Type: {response.media_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    body = b"" if response.head_only else response.body
    return "\r\n".join([*lines, "", ""]).encode("latin-1") + body


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(MAX_BODY_BYTES):
        pass


async def _connection(
    routes: Sequence[Route],
    read_timeout: float,
    guard: Guard | None,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    received: Callable[[], None],
) -> None:
    try:
        response = await _respond(routes, read_timeout, guard, reader, received)
        if response is not None:
            writer.write(_encode(response))
            await writer.drain()
            # Closing with unread input would reset the connection and could
            # destroy the reply (e.g. a 413 sent before the body arrived).
            writer.write_eof()
            await asyncio.wait_for(_discard(reader), LINGER_S)
    except (OSError, TimeoutError):
        pass  # the client went away, or kept sending after our reply
    finally:
        writer.close()


async def serve(
    routes: Sequence[Route],
    host: str,
    port: int,
    *,
    read_timeout: float = READ_TIMEOUT_S,
    guard: Guard | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> asyncio.Server:
    """Listen on ``host:port`` (0 picks a free port: read ``server.sockets``);
    ``guard`` is asked about every request before its route; at most
    ``max_connections`` open at once (see MAX_CONNECTIONS)."""
    seen = [(r.method, r.path) for r in routes]
    duplicates = {f"{m} {p}" for m, p in seen if seen.count((m, p)) > 1}
    if duplicates:
        raise LocalProtocolError(f"duplicate routes: {', '.join(sorted(duplicates))}")
    connection = partial(_connection, tuple(routes), read_timeout, guard)
    handlers: set[asyncio.Task] = set()
    reading: dict[asyncio.Task, None] = {}  # still sending their request, oldest first
    evicted: set[asyncio.Task] = set()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(handlers) >= max_connections:
            if not reading:
                writer.close()
                return
            oldest = next(iter(reading))
            del reading[oldest]
            evicted.add(oldest)
            oldest.cancel()
        handlers.add(task)
        reading[task] = None
        try:
            await connection(reader, writer, lambda: reading.pop(task, None))
        except asyncio.CancelledError:
            if task not in evicted:
                raise  # the loop ends: not ours to swallow
        finally:
            handlers.discard(task)
            reading.pop(task, None)
            evicted.discard(task)

    server = await asyncio.start_server(handler, host, port, limit=MAX_HEAD_BYTES)
    _HANDLERS[id(server)] = handlers  # uvloop's Server takes no new attributes
    return server


# Each serving server's request handlers in flight, for shutdown().
_HANDLERS: dict[int, set[asyncio.Task]] = {}


async def shutdown(server: asyncio.Server, grace: float = LINGER_S + 1.0) -> None:
    """Stop listening and let requests in flight finish (at most ``grace`` s).

    Python 3.11's ``wait_closed()`` does not wait for open connections; a
    handler cancelled by the loop's end would log a traceback.
    """
    server.close()
    await server.wait_closed()
    handlers = _HANDLERS.pop(id(server), set())
    if handlers:
        await asyncio.wait(list(handlers), timeout=grace)
