"""kadnode's control API: the routes, their schemas and the service they call.

No I/O of its own: handlers parse the request, await a :class:`NodeService`
(the daemon implements it) and wrap its JSON-ready dict. Serve the result of
:func:`build_routes` with :func:`kadnode.httpserver.serve`.
"""

from __future__ import annotations

from typing import Any, Protocol

from kadnode import __version__
from kadnode.core.ids import parse_hex
from kadnode.inputs import parse_hostport
from kadnode.shell import dashboard
from kadnode.shell.apidocs import Bearer, with_docs
from kadnode.shell.apiguard import READS
from kadnode.shell.httpserver import (
    HTML,
    Param,
    Payload,
    Request,
    Response,
    Route,
    json_response,
    text_response,
)
from kadnode.shell.schemas import (
    BOOLEAN,
    CONTEXT,
    FAULT_SCHEMA,
    INFO_SCHEMA,
    LEAVE_SCHEMA,
    LOOKUP_SCHEMA,
    NUMBER,
    OWNER_SCHEMA,
    PEER_RECORD_SCHEMA,
    PEERS_SCHEMA,
    PING_SCHEMA,
    PUT_SCHEMA,
    QUESTIONS,
    REGISTER_SCHEMA,
    RING_SCHEMA,
    SHARED_SCHEMA,
    STRING,
    VALUE_SCHEMA,
    nullable,
    obj,
    strict,
    with_optional,
)

TITLE = "kadnode control API"
TOKEN_DOC = (
    "send 'Authorization: Bearer TOKEN' with the node's API token, which the daemon writes"
    " to api.token in its data directory (or the one its operator chose, $KADNODE_API_TOKEN)."
    " On loopback, reads need none; an API listening beyond loopback needs it on every route"
)
METRICS = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text exposition


class NodeService(Protocol):
    """What the routes need from a running node; every dict is JSON-ready."""

    async def info(self) -> dict[str, Any]: ...
    async def lookup(self, target: int) -> dict[str, Any]: ...
    async def put(self, key: str, value: str) -> dict[str, Any]: ...
    async def get(self, key: str) -> dict[str, Any]: ...
    async def peers(self) -> dict[str, Any]: ...
    async def ping(self, host: str, port: int) -> dict[str, Any]: ...
    async def register(self) -> dict[str, Any]: ...
    async def find_peer(self, target: int) -> dict[str, Any]: ...
    async def put_shared(
        self, key: str, value: str, context: list[list[Any]] | None
    ) -> dict[str, Any]: ...
    async def get_shared(self, key: str) -> dict[str, Any]: ...
    async def owner(self, key: str) -> dict[str, Any]: ...
    async def ring(self) -> dict[str, Any]: ...
    async def leave(self) -> dict[str, Any]: ...
    async def fault(self, delay_ms: float, jitter_ms: float) -> dict[str, Any]: ...
    async def metrics(self) -> str: ...


_ID = "8f14e45fceea167a5a36dedd4bea2543b0e1a1d3"
_CONTACT = {"id": _ID, "host": "192.0.2.7", "port": 8468}
_PREDECESSOR = {"id": "893a227aaca1e12a5fa1c0201c0e38b8f3b1536b", "host": "192.0.2.9", "port": 8467}
_SUCCESSORS = [
    {"id": "c2c74789868e8bb8486dc3b6d0138e7fb22162b5", "host": "192.0.2.21", "port": 8467},
    {"id": "c74cad16cc5fcd3b4884624cb9afc82438f0dd8b", "host": "198.51.100.4", "port": 8467},
]
_KEY = Param("key", "the key, any UTF-8 text (percent-encode it in the path)", "greeting")
_NODE_ID = Param(
    "id", "160-bit node id", _ID, {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{40}$"}
)
_RECORD = {
    "id": _ID,
    "addresses": [{"host": "192.0.2.7", "port": 8468}],
    "seq": 1732435200123,
    "expires": 1732456800.123,
    "public_key": "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
}
# The examples' network is small: a replica set of three (_CONTACT and _SUCCESSORS),
# so the quorum (a majority of it) is 2.
_READ = {
    "replicas": 3,
    "answered": 3,
    "agreeing": 2,
    "repaired": 1,
    "rejected": 0,
    "needed": 2,
    "quorum": True,
}
# A write's acknowledgements, in the same network.
_STORED = {
    "stored": 3,
    "pending": 0,
    "asked": 3,
    "needed": 2,
    "local": False,
    "only_copy": False,
    "replicas": [_CONTACT, *_SUCCESSORS],
}
_WRITER = "c2c74789868e8bb8486dc3b6d0138e7fb22162b5"
_SIBLINGS = [
    {"value": "hello", "clock": {_ID: 1}},
    {"value": "bonjour", "clock": {_WRITER: 1}},
]
_CONTEXT = [[_ID, 1], [_WRITER, 1]]


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

    async def register(_: Request) -> Response:
        return json_response(await service.register())

    async def find_peer(request: Request) -> Response:
        result = await service.find_peer(parse_hex(request.params["id"]))
        return json_response(result, 200 if result["found"] else 404)

    async def put_shared(request: Request) -> Response:
        body = request.body
        return json_response(
            await service.put_shared(request.params["key"], body["value"], body.get("context"))
        )

    async def get_shared(request: Request) -> Response:
        result = await service.get_shared(request.params["key"])
        return json_response(result, 200 if result["found"] else 404)

    async def owner(request: Request) -> Response:
        return json_response(await service.owner(request.params["key"]))

    async def ring(_: Request) -> Response:
        return json_response(await service.ring())

    async def leave(_: Request) -> Response:
        return json_response(await service.leave())

    async def fault(request: Request) -> Response:
        body = request.body
        return json_response(await service.fault(body["delay_ms"], body.get("jitter_ms", 0)))

    async def metrics(_: Request) -> Response:
        return text_response(await service.metrics(), METRICS)

    async def health(_: Request) -> Response:
        return json_response({"ok": True})

    async def dashboard_page(_: Request) -> Response:
        return text_response(dashboard.page(), HTML)

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
                        "stats": {"requests_in": 1200, "requests_out": 950, "timeouts": 3},
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
                        "closest": [{**_CONTACT, "answered": True}],
                        "record": _RECORD,
                        "queried": 9,
                        "elapsed_ms": 41.5,
                    },
                    "the lookup's outcome; found is false when no node has that id",
                )
            },
            "An iterative FIND_NODE lookup (Kademlia section 2.3): the node with this id "
            "if one answered, and the k closest nodes known either way; it ends once that "
            "node or the beta (3) nearest have answered, so the others may only have been "
            "named by them (answered: false). A verified peer record "
            "for the id, when one is found (as GET /peers/{id}/record), is returned in record "
            "and its first address is the peer's.",
            path_params=(_NODE_ID,),
        ),
        Route(
            "PUT",
            "/values/{key}",
            put,
            "Store a value under a key",
            {
                200: Payload(
                    PUT_SCHEMA,
                    {
                        "key": "greeting",
                        **_STORED,
                        "elapsed_ms": 60.2,
                    },
                    "how many of the k closest nodes acknowledged the STORE",
                )
            },
            "Stores on the k nodes closest to SHA-1(key), as bmuller/kademlia's set(). It "
            "returns once the write quorum (needed) has acknowledged; the writes still "
            "unanswered then (pending) go on. Fewer acknowledgements than the write quorum "
            "is an error (503).",
            path_params=(_KEY,),
            body=Payload(strict(value=STRING), {"value": "hello"}, "the value to store"),
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
            "POST",
            "/register",
            register,
            "Sign and store this node's peer record",
            {
                200: Payload(
                    REGISTER_SCHEMA,
                    {
                        "key": _ID,
                        **_STORED,
                        "elapsed_ms": 52.4,
                        "record": _RECORD,
                    },
                    "the record and how many of the k closest acknowledged it",
                )
            },
            "Signs a record binding this node's id to its addresses with the node's ed25519 "
            "key (the id is the SHA-1 of the public key), at a higher sequence than any "
            "before, and stores it on the k nodes closest to the id. Replicas verify it and "
            "keep only the highest valid sequence. The daemon also registers after joining "
            "and re-signs every half lifetime. Fewer acknowledgements than the write quorum "
            "(needed) is an error (503).",
        ),
        Route(
            "GET",
            "/peers/{id}/record",
            find_peer,
            "Find a node's verified peer record",
            {
                200: Payload(
                    PEER_RECORD_SCHEMA,
                    {"id": _ID, "found": True, "record": _RECORD, **_READ, "elapsed_ms": 38.2},
                    "the record with the highest valid sequence the replicas hold",
                ),
                404: Payload(
                    PEER_RECORD_SCHEMA,
                    {
                        "id": _ID,
                        "found": False,
                        "record": None,
                        **_READ,
                        "agreeing": 0,
                        "repaired": 0,
                        "elapsed_ms": 80.3,
                    },
                    "no replica holds a valid record for this id",
                ),
            },
            "A quorum read of the record stored under the id: every replica among the k "
            "closest is asked, records that fail verification (forged, bad signature, "
            "expired) are counted in rejected and never returned, and replicas holding an "
            "older sequence or none are repaired. quorum is false when fewer than needed "
            "answered.",
            path_params=(_NODE_ID,),
        ),
        Route(
            "PUT",
            "/shared/{key}",
            put_shared,
            "Write a shared (multi-writer) value",
            {
                200: Payload(
                    PUT_SCHEMA,
                    {
                        "key": "greeting",
                        **_STORED,
                        "elapsed_ms": 48.9,
                    },
                    "how many of the k closest acknowledged the write",
                )
            },
            "A vector-clocked write (Dynamo, DeCandia et al. 2007, section 4.4). Without a "
            "context it is a blind write and becomes a sibling of any concurrent value; with "
            "the context a GET /shared/{key} returned it supersedes every sibling that read "
            "saw. Fewer acknowledgements than the write quorum (needed) is an error (503).",
            path_params=(_KEY,),
            body=Payload(
                with_optional(strict(value=STRING), context=nullable(CONTEXT)),
                {"value": "hello", "context": _CONTEXT},
                "the value, and optionally the context of the read it replaces",
            ),
        ),
        Route(
            "GET",
            "/shared/{key}",
            get_shared,
            "Read a shared value: every concurrent sibling",
            {
                200: Payload(
                    SHARED_SCHEMA,
                    {
                        "key": "greeting",
                        "found": True,
                        "siblings": _SIBLINGS,
                        "context": _CONTEXT,
                        **_READ,
                        "elapsed_ms": 41.0,
                    },
                    "the siblings; pass context back with the next write to resolve them",
                ),
                404: Payload(
                    SHARED_SCHEMA,
                    {
                        "key": "greeting",
                        "found": False,
                        "siblings": [],
                        "context": None,
                        **_READ,
                        "agreeing": 0,
                        "repaired": 0,
                        "elapsed_ms": 80.1,
                    },
                    "no replica holds a value for this key",
                ),
            },
            "A quorum read: the siblings every answering replica holds, reconciled; "
            "replicas missing some are repaired (repaired counts them).",
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
                strict(address=STRING),
                {"address": "192.0.2.7:8468"},
                "HOST:PORT, or [IPv6]:PORT",
            ),
        ),
        Route(
            "GET",
            "/owner/{key}",
            owner,
            "Which nodes are responsible for a key, asked both ways",
            {
                200: Payload(
                    OWNER_SCHEMA,
                    {
                        "key": "greeting",
                        "key_id": "a0f7e779f9247566c84036f07f7bdf4a40a869bd",
                        "successor": _CONTACT,
                        "successor_hops": 2,
                        "closest": [_CONTACT, *_SUCCESSORS],
                        "questions": QUESTIONS,
                        "elapsed_ms": 41.5,
                    },
                    "both answers; successor is null when Chord routing failed",
                )
            },
            "Two answers, each labelled in questions by the question it answers. successor: "
            "the key's owner on the Chord ring, the first node clockwise from SHA-1(key), "
            "found by Chord routing in successor_hops requests (Stoica et al. 2001, section "
            "4.2). closest: the k nodes closest to SHA-1(key) by XOR, this node included, "
            "found by an iterative FIND_NODE lookup (Kademlia section 2.3): where PUT "
            "/values/{key} stores the value.",
            path_params=(_KEY,),
        ),
        Route(
            "GET",
            "/ring",
            ring,
            "This node's place on the Chord ring",
            {
                200: Payload(
                    RING_SCHEMA,
                    {
                        "self": _CONTACT,
                        "predecessor": _PREDECESSOR,
                        "successors": [*_SUCCESSORS, _PREDECESSOR],
                        "fingers": [
                            {"index": 0, **_SUCCESSORS[0]},
                            {"index": 158, **_PREDECESSOR},
                        ],
                    },
                    "the ring view; predecessor is null while none is known",
                )
            },
            "The ring view kept beside the k-buckets (Chord, Stoica et al. 2001): the "
            "predecessor, the successor list (nearest clockwise first, kept by stabilize and "
            "notify) and the finger table derived from the known contacts: finger i is the "
            "first known node at or after id + 2^i, listed once, at its lowest index.",
        ),
        Route(
            "POST",
            "/leave",
            leave,
            "Hand this node's values on, then stop the daemon",
            {
                200: Payload(
                    LEAVE_SCHEMA,
                    {"keys": 7, "stores": 140, "acks": 138, "goodbyes": 31, "elapsed_ms": 85.3},
                    "the hand-off's outcome; the daemon stops after replying",
                )
            },
            "A graceful leave, as on SIGTERM: every value this node holds is stored on the k "
            "closest remaining nodes it knows, then it says goodbye to every kadnode contact "
            "(each drops it from its table and ring at once), then the daemon stops. keys, "
            "stores and acks count the keys handed on, the STOREs sent and those acknowledged, "
            "goodbyes the contacts that took the goodbye; they are null, and timed_out true, "
            "when the hand-off did not finish in time.",
            tag="ops",
        ),
        Route(
            "POST",
            "/fault",
            fault,
            "Chaos testing: delay every datagram this node sends",
            {
                200: Payload(
                    FAULT_SCHEMA,
                    {
                        "delay_ms": 200,
                        "jitter_ms": 50,
                        "mechanism": "kadnode transport send delay (--allow-fault-injection)",
                    },
                    "the delay now in force (0 clears it)",
                )
            },
            "Only a daemon started with --allow-fault-injection accepts this (400 otherwise). "
            "Every datagram the node sends waits delay_ms +- jitter_ms first: the delay fault "
            "of chaos/run.py where the kernel has no netem qdisc.",
            body=Payload(
                {
                    "type": "object",
                    "required": ["delay_ms"],
                    "additionalProperties": False,
                    "properties": {"delay_ms": NUMBER, "jitter_ms": NUMBER},
                },
                {"delay_ms": 200, "jitter_ms": 50},
                "milliseconds; delay_ms 0 clears the fault",
            ),
            tag="ops",
        ),
        Route(
            "GET",
            "/metrics",
            metrics,
            "Counters, gauges, operation latency histograms and process metrics, in"
            " Prometheus text format",
            {
                200: Payload(
                    STRING,
                    "# HELP kadnode_peers Contacts in the routing table.\n"
                    "# TYPE kadnode_peers gauge\nkadnode_peers 42.0\n",
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
            {200: Payload(obj(ok=BOOLEAN), {"ok": True}, "the daemon is serving")},
            tag="ops",
        ),
        Route(
            "GET",
            "/dashboard",
            dashboard_page,
            "A live page of this node: buckets, ring, traffic, latencies",
            {200: Payload(STRING, "<!doctype html>...", "an HTML page, self-contained", HTML)},
            description="Draws the routing table's buckets and how full each is, the ring"
            " (predecessor, successors, fingers on a circle), and datagrams a second and mean"
            " operation latency over time, from /info, /peers, /ring and /metrics every 2 s."
            " No external assets.",
            tag="ops",
        ),
    ]
    return with_docs(routes, TITLE, __version__, Bearer(TOKEN_DOC, lambda r: r.method not in READS))
