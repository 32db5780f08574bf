"""The control API's messages as JSON Schema: what the daemon's replies hold,
which the routes (kadnode.shell.api) document and the client
(kadnode.cli.client) checks every reply against. No I/O.
"""

from __future__ import annotations

from kadnode.core.ids import ID_BITS
from kadnode.shell.httpserver import JsonSchema


def obj(**properties: JsonSchema) -> JsonSchema:
    """An object schema in which every listed property is required."""
    return {"type": "object", "required": list(properties), "properties": properties}


def strict(**properties: JsonSchema) -> JsonSchema:
    return {**obj(**properties), "additionalProperties": False}


def with_optional(schema: JsonSchema, **properties: JsonSchema) -> JsonSchema:
    """``schema`` with more properties, which may be absent."""
    return {**schema, "properties": {**schema["properties"], **properties}}


def nullable(schema: JsonSchema) -> JsonSchema:
    return {**schema, "type": [schema["type"], "null"]}


STRING: JsonSchema = {"type": "string"}
INTEGER: JsonSchema = {"type": "integer", "minimum": 0}
NUMBER: JsonSchema = {"type": "number", "minimum": 0}
BOOLEAN: JsonSchema = {"type": "boolean"}
HEX_ID: JsonSchema = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
PORT: JsonSchema = {"type": "integer", "minimum": 1, "maximum": 65535}
CONTACT = obj(id=HEX_ID, host=STRING, port=PORT)
# A signed peer record (kadnode.core.records), verified by the node that returns it.
RECORD = obj(
    id=HEX_ID,
    addresses={"type": "array", "items": obj(host=STRING, port=PORT)},
    seq=INTEGER,  # the signer's version: the highest valid one wins
    expires=NUMBER,  # unix seconds
    public_key={"type": "string", "pattern": "^[0-9a-f]{64}$"},  # ed25519; id = SHA-1 of it
)
# A vector clock as a client passes it back: [[writer id, counter], ...]. Our
# checker applies "items" to every element (a loose check of each pair; the
# daemon checks the rest); to OpenAPI, prefixItems says it exactly.
CONTEXT: JsonSchema = {
    "type": "array",
    "items": {
        "type": "array",
        "prefixItems": [HEX_ID, {"type": "integer", "minimum": 1}],
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": ["string", "integer"], "pattern": HEX_ID["pattern"], "minimum": 1},
    },
}
# How a quorum read went (GET /peers/{id}/record, GET /shared/{key}).
READ = {
    "replicas": INTEGER,  # the k closest found, answering or not
    "answered": INTEGER,
    "agreeing": INTEGER,  # of those, how many held the newest version already
    "repaired": INTEGER,  # read repairs sent to stale or empty replicas
    "rejected": INTEGER,  # invalid versions seen (forged, expired, malformed)
    "needed": INTEGER,  # the read quorum R
    "quorum": BOOLEAN,  # answered >= needed
    "elapsed_ms": NUMBER,
}
INFO_SCHEMA = with_optional(
    obj(
        id=HEX_ID,
        host=STRING,
        port=PORT,
        peers=INTEGER,
        values=INTEGER,
        uptime_s=NUMBER,
        stats={"type": "object", "additionalProperties": INTEGER},
    ),
    version=STRING,
    data_dir=STRING,
)
LOOKUP_SCHEMA = with_optional(
    obj(
        target=HEX_ID,
        found=BOOLEAN,
        peer=nullable(CONTACT),
        # answered (absent from older daemons): false for a node the lookup
        # knows only from others' replies
        closest={"type": "array", "items": with_optional(CONTACT, answered=BOOLEAN)},
        queried=INTEGER,
        elapsed_ms=NUMBER,
    ),
    record=nullable(RECORD),  # the target's verified peer record, when one was found
)
PUT_SCHEMA = with_optional(
    obj(
        key=STRING, stored=INTEGER, replicas={"type": "array", "items": CONTACT}, elapsed_ms=NUMBER
    ),
    asked=INTEGER,  # how many of the k closest were asked to store
    pending=INTEGER,  # of those, still unanswered when W had acknowledged (the write goes on)
    needed=INTEGER,  # the write quorum W those acknowledgements were counted against
    local=BOOLEAN,  # this node is one of the k closest: its own copy is counted in stored
    only_copy=BOOLEAN,  # this node knows no other node: it holds the only copy
)
REGISTER_SCHEMA = obj(**PUT_SCHEMA["properties"], record=nullable(RECORD))
PEER_RECORD_SCHEMA = obj(id=HEX_ID, found=BOOLEAN, record=nullable(RECORD), **READ)
SIBLING = obj(
    value={"type": ["string", "number", "boolean"]},
    clock={"type": "object", "propertyNames": HEX_ID, "additionalProperties": INTEGER},
)
SHARED_SCHEMA = obj(
    key=STRING,
    found=BOOLEAN,
    siblings={"type": "array", "items": SIBLING},
    context=nullable(CONTEXT),  # the siblings' merged clock: pass it back to resolve them
    **READ,
)
VALUE_SCHEMA = with_optional(
    obj(
        key=STRING,
        found=BOOLEAN,
        value={"type": ["string", "number", "boolean", "null"]},
        elapsed_ms=NUMBER,
    ),
    # where the value came from: a node, "local" (this node's store), or null
    source={"type": ["object", "string", "null"]},
)
PEER = obj(**CONTACT["properties"], failures=INTEGER, last_seen_s=NUMBER)
PEERS_SCHEMA = obj(count=INTEGER, peers={"type": "array", "items": PEER})
FAULT_SCHEMA = obj(delay_ms=NUMBER, jitter_ms=NUMBER, mechanism=STRING)
PING_SCHEMA = obj(
    host=STRING,
    port=PORT,
    alive=BOOLEAN,
    id=nullable(HEX_ID),
    rtt_ms=nullable(NUMBER),
)
# The two questions GET /owner answers; every reply carries them, so a reader
# of the JSON knows which answer is which.
QUESTIONS = {
    "successor": "who owns the key on the Chord ring: the first node clockwise from SHA-1(key)",
    "closest": "the k nodes closest to SHA-1(key) by XOR: where put stores the value (Kademlia)",
}
OWNER_SCHEMA = obj(
    key=STRING,
    key_id=HEX_ID,
    successor=nullable(CONTACT),
    successor_hops=INTEGER,
    closest={"type": "array", "items": CONTACT},
    questions=obj(**dict.fromkeys(QUESTIONS, STRING)),
    elapsed_ms=NUMBER,
)
FINGER = obj(index={**INTEGER, "maximum": ID_BITS - 1}, **CONTACT["properties"])
RING_SCHEMA = obj(
    self=CONTACT,
    predecessor=nullable(CONTACT),
    successors={"type": "array", "items": CONTACT},
    fingers={"type": "array", "items": FINGER},
)
LEAVE_SCHEMA = with_optional(
    obj(
        keys=nullable(INTEGER),
        stores=nullable(INTEGER),
        acks=nullable(INTEGER),
        elapsed_ms=NUMBER,
    ),
    goodbyes=nullable(INTEGER),  # contacts that dropped this node at its goodbye
    timed_out=BOOLEAN,
)
