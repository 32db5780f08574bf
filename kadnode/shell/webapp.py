"""The control API as a FastAPI application, built from the operations'
declarations (kadnode.shell.api): a route for each, validated by the
pydantic models the OpenAPI document at /openapi.json is generated from, and
/docs, Swagger UI served from the fastapi-offline wheel (no CDN). No I/O of
its own: :func:`kadnode.shell.httpserver.serve` serves it.

Errors: every refusal is ``{"error": "<one line>"}``. A KadnodeError from the
service gets its status from :data:`ERROR_STATUS`; a request the models refuse
is 400 naming the first field; anything else is logged once with its
traceback and answered with a 500 whose body is ``{"error": "internal error"}``
(nothing of the failure leaks to the client).

A stream (``GET /watch/...``, kadnode.shell.streams) takes a slot of its client's
first (429 past the limits), then makes its first read before the response starts,
so that a read that fails is refused as the read itself would be; its events
follow, until the client leaves or the daemon stops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote

from fastapi import Body, FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from kadnode import __version__
from kadnode.errors import ApiError, Conflict, HttpError, KadnodeError, LocalProtocolError
from kadnode.shell.api import OPERATIONS
from kadnode.shell.apiguard import READS
from kadnode.shell.messages import Error, first_error, one_line
from kadnode.shell.operations import NodeService, Operation
from kadnode.shell.streams import ALIVE, EVENT_STREAM, Slots, event

logger = logging.getLogger(__name__)

TITLE = "kadnode control API"
TOKEN_DOC = (
    "send 'Authorization: Bearer TOKEN' with the node's API token, which the daemon writes"
    " to api.token in its data directory (or the one its operator chose, $KADNODE_API_TOKEN)."
    " On loopback, reads need none; an API listening beyond loopback needs it on every route"
)
# Values are at most config.MAX_VALUE_BYTES (1000); JSON escaping can grow a
# value sixfold, so 64 KiB leaves room without letting a client pin memory.
MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 10.0  # a body trickled slower than this is refused (408)
# Apache's LimitRequestFieldSize is 8190 bytes; a request head of ours is a
# request line and a few short headers.
MAX_HEAD_BYTES = 8 * 1024
# First match wins, so list subclasses before their bases.
STOPPING = "the daemon is stopping"
ERROR_STATUS: dict[type[KadnodeError], int] = {
    LocalProtocolError: 400,
    Conflict: 409,
    KadnodeError: 503,
}

# Asked about every request before its route: its method and headers
# (lower-cased names) in, a refusal or None out (kadnode.shell.apiguard).
Guard = Callable[[str, Mapping[str, str]], HttpError | None]


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, dict(headers or {}))


def _checked(operation: Operation, result: Any) -> Any:
    """A reply as its model passes it (a ValidationError otherwise: never sent)."""
    assert operation.reply is not None
    return operation.reply.model_validate(result).model_dump(mode="json", exclude_unset=True)


def _endpoint(operation: Operation, service: NodeService, slots: Slots) -> Callable[..., Any]:
    """The route's handler, its signature the operation's params and body."""

    declared = {p.name for p in operation.query}

    async def endpoint(request: Request, **given: Any) -> Response:
        names = Counter(name for name, _ in request.query_params.multi_items())
        if unknown := [n for n, times in names.items() if n not in declared or times > 1]:
            return error(400, f"unknown or repeated query parameter {unknown[0]!r}")
        try:
            parsed = {p.name: p.parse(given[p.name]) for p in operation.params}
            parsed |= {
                p.name: None if given[p.name] is None else p.parse(given[p.name])
                for p in operation.query
            }
            if operation.body is not None:
                parsed |= given["body"].model_dump(mode="json")
            if operation.stream:
                return await _watch(operation, service, parsed, request, slots)
            if operation.answer is not None:
                result = await operation.answer(service)
            else:
                call = getattr(service, operation.name)
                result = await call(*operation.call_arguments(parsed))
            if operation.reply is None:
                return Response(result, media_type=operation.media_type)
            body = _checked(operation, result)
        except KadnodeError as exc:
            status = next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))
            return error(status, one_line(exc))
        except Exception:
            logger.exception("%s %s failed", operation.method, operation.path)
            return error(500, "internal error")
        missed = operation.missed is not None and operation.missed(result)
        return JSONResponse(body, operation.missed_status if missed else 200)

    parameters = [
        inspect.Parameter(
            p.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str, Path(description=p.description, examples=[p.example], pattern=p.pattern)
            ],
        )
        for p in operation.params
    ]
    parameters += [
        inspect.Parameter(
            p.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                str | None, Query(description=p.description, examples=[p.example])
            ],
            default=p.default,
        )
        for p in operation.query
    ]
    if operation.body is not None:
        body = Annotated[operation.body, Body()]
        parameters.append(
            inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body)
        )
    request = inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    endpoint.__signature__ = inspect.Signature([request, *parameters])  # type: ignore[attr-defined]
    endpoint.__name__ = operation.name
    return endpoint


async def _watch(
    operation: Operation,
    service: NodeService,
    parsed: dict[str, Any],
    request: Request,
    slots: Slots,
) -> Response:
    """A stream: its client's slot, its first read, then its events (see above)."""
    client = request.client.host if request.client else ""
    # Built before the slot is taken (an async generator runs nothing until
    # iterated): nothing between taking it and the try below can raise.
    replies = getattr(service, operation.name)(*operation.call_arguments(parsed))
    refusal = slots.take(client)
    if refusal is not None:
        return error(refusal.status, one_line(refusal))
    try:
        first = await anext(replies, None)
        if first is None:
            raise ApiError(STOPPING)
        first = _checked(operation, first)
    except BaseException:
        slots.give_back(client)
        await replies.aclose()
        raise
    if request.scope.get("kadnode.method") == "HEAD":
        frames: AsyncIterator[bytes] = _nothing()
    else:
        frames = _frames(operation, first, replies)
    return EventStream(frames, replies, partial(slots.give_back, client))


class EventStream(StreamingResponse):
    """A stream's events. However it ends (the client leaving, the daemon stopping,
    a failure), ``replies`` is closed, so that its reads stop, and ``done`` is called."""

    media_type = EVENT_STREAM

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        replies: AsyncIterator[Any],
        done: Callable[[], None],
        status_code: int = 200,  # FastAPI's document reads the default status here
    ) -> None:
        super().__init__(frames, status_code, {"Cache-Control": "no-store"})
        self.replies, self.done = replies, done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.done()
            await self.replies.aclose()  # type: ignore[attr-defined]


async def _frames(
    operation: Operation, first: Any, replies: AsyncIterator[Any]
) -> AsyncIterator[bytes]:
    """The first reply, each new one and a comment after each read without news;
    an ``error`` event last, unless the client left first."""
    yield event("version", first)
    try:
        async for reply in replies:
            yield ALIVE if reply is None else event("version", _checked(operation, reply))
        why = STOPPING
    except KadnodeError as exc:
        why = one_line(exc)
    except Exception:
        logger.exception("%s %s failed", operation.method, operation.path)
        why = "internal error"
    yield event("error", {"error": why})


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing: HEAD's body


def _responses(operation: Operation, bearer: bool) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {}
    for reply in operation.replies:
        content = {"example": reply.example}
        if operation.reply is None:
            content["schema"] = {"type": "string"}
        responses[reply.status] = {
            "description": reply.description,
            "content": {operation.media_type: content},
        }
        if operation.reply is not None and not operation.stream:
            responses[reply.status]["model"] = operation.reply
    if operation.params or operation.query or operation.body is not None:
        responses[400] = {"model": Error, "description": "a malformed request: what is wrong"}
    if operation.stream:
        responses[429] = {"model": Error, "description": "too many streams open: which limit"}
    if bearer:
        responses[401] = {"model": Error, "description": f"no token, or a wrong one: {TOKEN_DOC}"}
    responses["default"] = {"model": Error, "description": "an error, in one line"}
    return responses


def build_app(
    service: NodeService,
    operations: Sequence[Operation] = OPERATIONS,
    guard: Guard | None = None,
    docs: bool = True,
    slots: Slots | None = None,
) -> Guarded:
    """The API serving ``operations`` on ``service``; ``guard`` is asked about
    every request first. With ``docs``, its document is at /openapi.json and
    its page at /docs. ``slots``: how many streams may be open (the default's
    limits are kadnode.config.WATCH_STREAMS*)."""
    slots = slots if slots is not None else Slots()
    options = {"title": TITLE, "version": __version__, "redoc_url": None}
    if docs:  # Swagger UI, its assets served from the fastapi-offline wheel
        app = FastAPIOffline(docs_url="/docs", static_url="/docs/assets", **options)
    else:
        app = FastAPI(openapi_url=None, docs_url=None, **options)
    app.router.redirect_slashes = False
    for operation in operations:
        needs_token = operation.method not in READS
        path = operation.path.replace("{key}", "{key:path}")  # a key may hold "/"
        app.add_api_route(
            path,
            _endpoint(operation, service, slots),
            methods=[operation.method],
            summary=operation.summary,
            description=operation.description,
            tags=[operation.tag],
            operation_id=operation.name,
            response_model=None,
            responses=_responses(operation, needs_token),
            response_class=_response_class(operation),
            openapi_extra={"security": [{"token": []}]} if needs_token else None,
        )
    if docs:
        app.openapi_schema = _document(app, operations)
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    return Guarded(app, guard)


def _document(app: FastAPI, operations: Sequence[Operation]) -> dict[str, Any]:
    """FastAPI's document, with the bearer scheme, 400 (not 422) for a request
    the models refuse (this API's one error shape), and the examples as
    declared (FastAPI drops their null fields)."""
    document = app.openapi()
    for methods in document["paths"].values():
        for operation in methods.values():
            operation["responses"].pop("422", None)
    for operation in operations:
        responses = document["paths"][operation.path][operation.method.lower()]["responses"]
        for reply in operation.replies:
            content = responses[str(reply.status)]["content"][operation.media_type]
            content["example"] = reply.example
            if operation.stream:
                assert operation.reply is not None
                content.clear()
                content["itemSchema"] = _event_schema(operation.reply.__name__)
                content["example"] = event("version", reply.example).decode() + ALIVE.decode()
        if operation.stream:  # its refusals are JSON, as every other route's
            for status, response in responses.items():
                if status not in {str(reply.status) for reply in operation.replies}:
                    response["content"] = {"application/json": response["content"][EVENT_STREAM]}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["components"]["securitySchemes"] = {
        "token": {"type": "http", "scheme": "bearer", "description": TOKEN_DOC}
    }
    return document


def _response_class(operation: Operation) -> type[Response]:
    if operation.stream:
        return EventStream
    return JSONResponse if operation.reply else Response


def _event_schema(model: str) -> dict[str, Any]:
    """One event of a stream, in the form OpenAPI 3.2 gives server-sent events (section
    4.14.4) and FastAPI's own streams use: its data is JSON, a reply of ``model``, or
    the error that ends the stream."""
    refs = [{"$ref": f"#/components/schemas/{name}"} for name in (model, "Error")]
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": ["version", "error"]},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": refs},
            },
        },
    }


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return error(400, first_error(exc))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    path = request.url.path
    if exc.status_code == 404:
        return error(404, f"no such endpoint: {path}")
    if exc.status_code == 405:
        allow = _allowed(request.app, path)
        method = request.scope.get("kadnode.method", request.method)
        return error(405, f"{method} not allowed on {path}; use {allow}", {"Allow": allow})
    return error(exc.status_code, str(exc.detail), exc.headers)


def _allowed(app: FastAPI, path: str) -> str:
    methods = {
        method
        for route in app.routes
        if getattr(route, "path_regex", None) and route.path_regex.match(path)
        for method in getattr(route, "methods", ())
    }
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


class Guarded:
    """ASGI middleware: the guard's refusals, bodies bounded in size and
    time, HEAD answered as GET (the server sends no body), a DEBUG line per call."""

    def __init__(self, app: FastAPI, guard: Guard | None) -> None:
        self.app = app
        self.guard = guard

    def __getattr__(self, name: str) -> Any:  # routes, openapi(): the app's
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [0]

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._serve(scope, receive, sent)
        finally:
            ms = (time.perf_counter() - started) * 1000
            logger.debug("%s %s: %d in %.1f ms", scope["method"], scope["path"], status[0], ms)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.guard(method, headers) if self.guard is not None else None
        refusal = refusal or _malformed(scope)
        if refusal is None:
            try:
                body = await asyncio.wait_for(_read_body(receive, headers), BODY_TIMEOUT_S)
            except TimeoutError:
                refusal = HttpError(408, "request body not received in time")
            except HttpError as exc:
                refusal = exc
        if refusal is not None:
            reply = error(refusal.status, one_line(refusal), dict(refusal.headers))
            return await reply(scope, receive, send)
        if body is None:
            return  # the client went away
        if method == "HEAD":
            scope = {**scope, "method": "GET", "kadnode.method": "HEAD"}
        given = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            return given.pop() if given else await receive()

        await self.app(scope, replay, send)


def _malformed(scope: Scope) -> HttpError | None:
    """What uvicorn lets through that this API refuses: a head over
    MAX_HEAD_BYTES (h11 bounds only a head still arriving), a path that is not
    percent-encoded UTF-8 (uvicorn would decode it to U+FFFD, so two keys
    would be one)."""
    size = len(scope["raw_path"]) + len(scope["query_string"])
    size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])
    if size > MAX_HEAD_BYTES:
        return HttpError(431, f"request head over {MAX_HEAD_BYTES} bytes")
    try:
        unquote(scope["raw_path"].decode("ascii"), errors="strict")
        parse_qsl(scope["query_string"].decode("ascii"), errors="strict")
    except UnicodeDecodeError:
        return HttpError(400, "path or query is not percent-encoded UTF-8")
    return None


async def _read_body(receive: Receive, headers: Mapping[str, str]) -> bytes | None:
    """The whole request body (chunked or not), refused past MAX_BODY_BYTES; None
    if the client disconnected."""
    length = headers.get("content-length", "0")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
        if not message.get("more_body", False):
            return body
