"""kadnode's control API: the routes, their schemas and the service they call.

No I/O of its own: handlers parse the request, await a :class:`NodeService`
(the daemon implements it) and wrap its JSON-ready dict. Serve the result of
:func:`build_routes` with :func:`kadnode.httpserver.serve`.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import __version__
from .dns import parse_hostport
from .httpserver import (
    JsonSchema,
    Param,
    Payload,
    Request,
    Response,
    Route,
    json_response,
    text_response,
    with_docs,
)
from .ids import parse_hex

TITLE = "kadnode control API"
METRICS = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text exposition


class NodeService(Protocol):
    """What the routes need from a running node; every dict is JSON-ready."""

    async def info(self) -> dict[str, Any]: ...
    async def lookup(self, target: int) -> dict[str, Any]: ...
    async def put(self, key: str, value: str) -> dict[str, Any]: ...
    async def get(self, key: str) -> dict[str, Any]: ...
    async def peers(self) -> dict[str, Any]: ...
    async def ping(self, host: str, port: int) -> dict[str, Any]: ...
    async def metrics(self) -> str: ...


def _object(**properties: JsonSchema) -> JsonSchema:
    """An object schema in which every listed property is required."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _strict(**properties: JsonSchema) -> JsonSchema:
    return {**_object(**properties), "additionalProperties": False}


STRING: JsonSchema = {"type": "string"}
INTEGER: JsonSchema = {"type": "integer", "minimum": 0}
NUMBER: JsonSchema = {"type": "number", "minimum": 0}
BOOLEAN: JsonSchema = {"type": "boolean"}
HEX_ID: JsonSchema = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
PORT: JsonSchema = {"type": "integer", "minimum": 1, "maximum": 65535}
CONTACT = _object(id=HEX_ID, host=STRING, port=PORT)
INFO_SCHEMA = _object(
    id=HEX_ID,
    host=STRING,
    port=PORT,
    peers=INTEGER,
    values=INTEGER,
    uptime_s=NUMBER,
    stats={"type": "object", "additionalProperties": INTEGER},
)
LOOKUP_SCHEMA = _object(
    target=HEX_ID,
    found=BOOLEAN,
    peer={**CONTACT, "type": ["object", "null"]},
    closest={"type": "array", "items": CONTACT},
    queried=INTEGER,
    elapsed_ms=NUMBER,
)
PUT_SCHEMA = _object(
    key=STRING, stored=INTEGER, replicas={"type": "array", "items": CONTACT}, elapsed_ms=NUMBER
)
VALUE_SCHEMA = _object(
    key=STRING,
    found=BOOLEAN,
    value={"type": ["string", "number", "boolean", "null"]},
    elapsed_ms=NUMBER,
)
PEER = _object(**CONTACT["properties"], failures=INTEGER, last_seen_s=NUMBER)
PEERS_SCHEMA = _object(count=INTEGER, peers={"type": "array", "items": PEER})
PING_SCHEMA = _object(
    host=STRING,
    port=PORT,
    alive=BOOLEAN,
    id={**HEX_ID, "type": ["string", "null"]},
    rtt_ms={**NUMBER, "type": ["number", "null"]},
)

_ID = "8f14e45fceea167a5a36dedd4bea2543b0e1a1d3"
_CONTACT = {"id": _ID, "host": "192.0.2.7", "port": 8468}
_KEY = Param("key", "the key, any UTF-8 text (percent-encode it in the path)", "greeting")


def build_routes(service: NodeService) -> list[Route]:
    """The API's routes. To add one, append a Route to ``routes`` below."""

    async def info(_: Request) -> Response:
        return json_response(await service.info())

    async def lookup(request: Request) -> Response:
        return json_response(await service.lookup(parse_hex(request.params["id"])))

    async def put(request: Request) -> Response:
        return json_response(await service.put(request.params["key"], request.body["value"]))

    async def get(request: Request) -> Response:
        result = await service.get(request.params["key"])
        return json_response(result, 200 if result["found"] else 404)

    async def peers(_: Request) -> Response:
        return json_response(await service.peers())

    async def ping(request: Request) -> Response:
        host, port = parse_hostport(request.body["address"])
        return json_response(await service.ping(host, port))

    async def metrics(_: Request) -> Response:
        return text_response(await service.metrics(), METRICS)

    async def health(_: Request) -> Response:
        return json_response({"ok": True})

    routes = [
        Route(
            "GET",
            "/info",
            info,
            "This node: id, address, counters",
            {
                200: Payload(
                    INFO_SCHEMA,
                    {
                        "id": _ID,
                        "host": "0.0.0.0",
                        "port": 8468,
                        "peers": 42,
                        "values": 7,
                        "uptime_s": 3600.5,
                        "stats": {"rpc_sent": 1200, "rpc_timeouts": 3},
                    },
                    "the node",
                )
            },
        ),
        Route(
            "GET",
            "/lookup/{id}",
            lookup,
            "Find a node by id",
            {
                200: Payload(
                    LOOKUP_SCHEMA,
                    {
                        "target": _ID,
                        "found": True,
                        "peer": _CONTACT,
                        "closest": [_CONTACT],
                        "queried": 9,
                        "elapsed_ms": 41.5,
                    },
                    "the lookup's outcome; found is false when no node has that id",
                )
            },
            "An iterative FIND_NODE lookup (Kademlia section 2.3): the node with this id "
            "if one answered, and the closest nodes seen either way.",
            path_params=(
                Param(
                    "id",
                    "160-bit node id",
                    _ID,
                    {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{40}$"},
                ),
            ),
        ),
        Route(
            "PUT",
            "/values/{key}",
            put,
            "Store a value under a key",
            {
                200: Payload(
                    PUT_SCHEMA,
                    {"key": "greeting", "stored": 3, "replicas": [_CONTACT], "elapsed_ms": 60.2},
                    "how many of the k closest nodes acknowledged the STORE",
                )
            },
            "Stores on the k nodes closest to SHA-1(key), as bmuller/kademlia's set().",
            path_params=(_KEY,),
            body=Payload(_strict(value=STRING), {"value": "hello"}, "the value to store"),
        ),
        Route(
            "GET",
            "/values/{key}",
            get,
            "Fetch the value stored under a key",
            {
                200: Payload(
                    VALUE_SCHEMA,
                    {"key": "greeting", "found": True, "value": "hello", "elapsed_ms": 35.0},
                    "the value",
                ),
                404: Payload(
                    VALUE_SCHEMA,
                    {"key": "greeting", "found": False, "value": None, "elapsed_ms": 80.1},
                    "no node holds a value for this key",
                ),
            },
            path_params=(_KEY,),
        ),
        Route(
            "GET",
            "/peers",
            peers,
            "The routing table's contacts",
            {
                200: Payload(
                    PEERS_SCHEMA,
                    {"count": 1, "peers": [{**_CONTACT, "failures": 0, "last_seen_s": 12.5}]},
                    "every contact in the k-buckets",
                )
            },
        ),
        Route(
            "POST",
            "/ping",
            ping,
            "Ping a node at an address",
            {
                200: Payload(
                    PING_SCHEMA,
                    {"host": "192.0.2.7", "port": 8468, "alive": True, "id": _ID, "rtt_ms": 1.9},
                    "alive is false when the node did not answer",
                )
            },
            body=Payload(
                _strict(address=STRING),
                {"address": "192.0.2.7:8468"},
                "HOST:PORT, or [IPv6]:PORT",
            ),
        ),
        Route(
            "GET",
            "/metrics",
            metrics,
            "Counters in Prometheus text format",
            {
                200: Payload(
                    STRING,
                    "# TYPE kadnode_peers gauge\nkadnode_peers 42\n",
                    "Prometheus text exposition 0.0.4",
                    METRICS,
                )
            },
            tag="ops",
        ),
        Route(
            "GET",
            "/health",
            health,
            "Liveness check",
            {200: Payload(_object(ok=BOOLEAN), {"ok": True}, "the daemon is serving")},
            tag="ops",
        ),
    ]
    return with_docs(routes, TITLE, __version__)
