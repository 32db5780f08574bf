"""The wire: rpcudp framing, msgpack bodies, strict decoding. Pure, no I/O.

A datagram is ``type byte | 20-byte message id | msgpack body`` (rpcudp 5.0.1):
type 0x00 is a request whose body is ``[method, [args...]]``, type 0x01 a
response whose body is whatever the handler returned. The argument and reply
shapes of ``ping``, ``store``, ``find_node`` and ``find_value`` are
bmuller/kademlia 2.2.3's, so stock nodes interoperate.

Native mode. kadnode starts the message id of its requests with
:data:`NATIVE_MAGIC`. A kadnode responder that sees it knows the requester is
kadnode and may answer in the richer native shapes (dicts that carry a TTL,
and contacts flagged as native); a plain rpcudp requester (random ids) gets
exactly the shapes bmuller/kademlia expects. A native requester sends
``store`` two more arguments: the remaining lifetime in seconds and the write
token the receiver gave it.

The messages themselves are the frozen dataclasses of
:mod:`kadnode.core.messages`. :func:`encode` turns a request or a reply into
a datagram and :func:`decode` a datagram into a :class:`Request` (with its
message) or a :class:`Response`, whose body :func:`decode_reply` reads as the
answer to the request it matches: one table each way per direction.

Everything a peer can send is checked here: any datagram that is not exactly
one of these shapes raises :class:`~kadnode.errors.DecodeError`, and nothing
else.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from kadnode.config import (
    AE_BUCKETS,
    AE_HASH_BYTES,
    MAX_PROOF_BYTES,
    MAX_VALUE_BYTES,
    NETWORK_MARK,
    NETWORK_TAG_BYTES,
    RING_DIGEST_BYTES,
    TOKEN_BYTES,
)
from kadnode.core.ids import ID_BYTES, to_bytes
from kadnode.core.messages import (
    VALUE_TYPES,
    Ack,
    Addr,
    BucketList,
    Dial,
    Dialed,
    Digest,
    FindNode,
    FindReply,
    FindSuccessor,
    FindValue,
    Goodbye,
    Has,
    KeyList,
    Kind,
    NodesReply,
    Ping,
    PingReply,
    Put,
    PutReply,
    Reach,
    ReplyMessage,
    RequestMessage,
    RingQuery,
    RingReply,
    Store,
    SuccessorReply,
    Value,
    ValueReply,
)
from kadnode.core.wire import (
    Packed,
    contact_entries,
    decode_id,
    find_nodes_body,
    pack,
    parse_contacts,
    unpack,
)
from kadnode.errors import DecodeError, LocalProtocolError

REQUEST = 0x00
RESPONSE = 0x01
HEADER = 1 + ID_BYTES
NATIVE_MAGIC = b"kdn\x01"
# A kadnode node in client mode (kadnode.core.reach): native, and never to be
# put in a routing table, since it may not be reachable at its address.
CLIENT_MAGIC = b"kdc\x01"
NONCE_BYTES = 8


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request datagram: its message id and its message."""

    msg_id: bytes
    message: RequestMessage

    @property
    def native(self) -> bool:
        return self.msg_id.startswith(NATIVE_MAGIC) or self.msg_id.startswith(CLIENT_MAGIC)

    @property
    def client(self) -> bool:
        return self.msg_id.startswith(CLIENT_MAGIC)


@dataclass(frozen=True, slots=True)
class Response:
    """A response datagram; its body is read by :func:`decode_reply`, which
    needs the request it answers (the body does not name its shape)."""

    msg_id: bytes
    body: object


# ---- decoding --------------------------------------------------------------


def network_tag(network_id: str) -> bytes:
    """What every datagram of this network starts with: nothing for the
    default network (""), else NETWORK_MARK and 7 bytes of a hash of its name."""
    if not network_id:
        return b""
    digest = hashlib.sha256(f"kadnode network {network_id}".encode()).digest()
    return bytes((NETWORK_MARK,)) + digest[: NETWORK_TAG_BYTES - 1]


def decode(data: bytes, max_size: int) -> Request | Response:
    """Decode one datagram; raise DecodeError for anything malformed."""
    if len(data) > max_size:
        raise DecodeError(f"datagram of {len(data)} bytes over the {max_size} limit")
    if len(data) < HEADER + 1:
        raise DecodeError(f"datagram of {len(data)} bytes is too short")
    kind = data[0]
    msg_id = bytes(data[1:HEADER])
    body = unpack(data[HEADER:])
    if kind == RESPONSE:
        return Response(msg_id, body)
    if kind != REQUEST:
        raise DecodeError(f"unknown datagram type 0x{kind:02x}")
    if not (isinstance(body, list) and len(body) == 2):
        raise DecodeError("request body is not [method, args]")
    method, args = body
    if not isinstance(method, str) or not isinstance(args, list):
        raise DecodeError("request body is not [method, args]")
    parse = _REQUEST_DECODERS.get(method)
    if parse is None:
        raise DecodeError(f"unknown method {method[:32]!r}")
    return Request(msg_id, parse(args))


_id = decode_id


def _key(raw: object) -> bytes:
    _id(raw)
    return raw  # type: ignore[return-value]


def check_value(value: object) -> Value:
    """A plain value as bmuller stores it, or DecodeError."""
    if not isinstance(value, VALUE_TYPES):
        raise DecodeError(f"value of type {type(value).__name__} is not storable")
    return value


def check_value_size(value: Value, limit: int = MAX_VALUE_BYTES) -> None:
    """Refuse, with one line, a value that packs (msgpack) to over ``limit`` bytes."""
    size = len(pack(value))
    if size > limit:
        raise LocalProtocolError(
            f"value of {size} bytes (msgpack-encoded) is over the {limit}-byte limit"
        )


def _ttl(raw: object) -> float:
    """A lifetime in seconds: a finite non-negative number (not a bool, not NaN)."""
    if type(raw) not in (int, float) or not 0 <= raw < float("inf"):
        raise DecodeError("ttl is not a non-negative number")
    return float(raw)


def _arity(args: list, *counts: int) -> None:
    if len(args) not in counts:
        raise DecodeError(f"{len(args)} arguments where {counts} expected")


def _proof(args: list, count: int) -> bytes | None:
    """The optional trailing proof of a native request with ``count`` arguments
    before it: a token (8 bytes) or padding (up to MAX_PROOF_BYTES); None if absent."""
    _arity(args, count, count + 1)
    if len(args) == count:
        return None
    proof = args[count]
    if type(proof) is not bytes or not TOKEN_BYTES <= len(proof) <= MAX_PROOF_BYTES:
        raise DecodeError("request proof is not a token or padding")
    return proof


def _parse_ping(args: list) -> Ping:
    proof = _proof(args, 1)
    return Ping(_id(args[0]), proof)


def _parse_store(args: list) -> Store:
    """bmuller's ``[sender, key, value]`` or native ``[sender, key, value, ttl, token]``."""
    _arity(args, 3, 5)
    ttl = token = None
    if len(args) == 5:
        ttl, token = _ttl(args[3]), args[4]
        if type(token) is not bytes or len(token) != TOKEN_BYTES:
            raise DecodeError("store token is not 8 bytes")
    return Store(_id(args[0]), _key(args[1]), check_value(args[2]), ttl, token)


def _parse_find_node(args: list) -> FindNode:
    proof = _proof(args, 2)
    return FindNode(_id(args[0]), _id(args[1]), proof)


def _parse_find_value(args: list) -> FindValue:
    proof = _proof(args, 2)
    return FindValue(_id(args[0]), _key(args[1]), proof)


def _parse_has(args: list) -> Has:
    proof = _proof(args, 2)
    return Has(_id(args[0]), _key(args[1]), proof)


def _parse_ring_query(args: list) -> RingQuery:
    """``[sender, seen]``: seen is nil or the digest of the view the asker holds."""
    proof = _proof(args, 2)
    return RingQuery(_id(args[0]), _ring_digest(args[1], True), proof)


def _parse_goodbye(args: list) -> Goodbye:
    _arity(args, 2)
    token = args[1]
    if type(token) is not bytes or len(token) != TOKEN_BYTES:
        raise DecodeError("goodbye token is not 8 bytes")
    return Goodbye(_id(args[0]), token)


def _nonce(raw: object) -> bytes:
    if type(raw) is not bytes or len(raw) != NONCE_BYTES:
        raise DecodeError("nonce is not 8 bytes")
    return raw


def pack_addr(addr: Addr) -> bytes | None:
    """BEP 42's compact address: 4 (IPv4) or 16 (IPv6) bytes and a 2-byte
    port; None for a host that is not an IP literal."""
    try:
        return ipaddress.ip_address(addr[0]).packed + addr[1].to_bytes(2, "big")
    except ValueError:
        return None


def unpack_addr(raw: object) -> Addr:
    """:func:`pack_addr`'s inverse; DecodeError for anything else."""
    if type(raw) is not bytes or len(raw) not in (6, 18):
        raise DecodeError("address is not 6 or 18 bytes")
    port = int.from_bytes(raw[-2:], "big")
    if port == 0:
        raise DecodeError("address has port 0")
    return str(ipaddress.ip_address(raw[:-2])), port


def _parse_reach(args: list) -> Reach:
    proof = _proof(args, 2)
    return Reach(_id(args[0]), _nonce(args[1]), proof)


def _parse_dial(args: list) -> Dial:
    proof = _proof(args, 3)
    return Dial(_id(args[0]), unpack_addr(args[1]), _nonce(args[2]), proof)


def _parse_dialed(args: list) -> Dialed:
    _arity(args, 2)
    return Dialed(_id(args[0]), _nonce(args[1]))


def _parse_find_successor(args: list) -> FindSuccessor:
    proof = _proof(args, 2)
    return FindSuccessor(_id(args[0]), _id(args[1]), proof)


def _parse_digest(args: list) -> Digest:
    proof = _proof(args, 2)
    hashes = args[1]
    if type(hashes) is not list or len(hashes) != AE_BUCKETS:
        raise DecodeError("digest is not a list of bucket hashes")
    for h in hashes:
        if type(h) is not bytes or len(h) != AE_HASH_BYTES:
            raise DecodeError("digest hash is not 8 bytes")
    return Digest(_id(args[0]), hashes, proof)


def _parse_key_list(args: list) -> KeyList:
    proof = _proof(args, 3)
    buckets, entries = args[1], args[2]
    if type(buckets) is not list or not all(
        type(b) is int and 0 <= b < AE_BUCKETS for b in buckets
    ):
        raise DecodeError("key list buckets are not bucket numbers")
    if type(entries) is not list:
        raise DecodeError("key list entries are not a list")
    pairs = []
    for entry in entries:
        if type(entry) is not list or len(entry) != 2:
            raise DecodeError("key list entry is not [key, fingerprint]")
        key, fp = entry
        if type(fp) is not bytes or len(fp) != AE_HASH_BYTES:
            raise DecodeError("key list fingerprint is not 8 bytes")
        pairs.append((_key(key), fp))
    return KeyList(_id(args[0]), buckets, pairs, proof)


def _parse_put(args: list) -> Put:
    _arity(args, 6)
    kind, token = args[2], args[5]
    if type(kind) is not int or kind not in _PUT_KINDS:
        raise DecodeError("put kind is not 1 (peer record), 2 (shared) or 3 (signed)")
    if type(token) is not bytes or len(token) != TOKEN_BYTES:
        raise DecodeError("put token is not 8 bytes")
    return Put(_id(args[0]), _key(args[1]), Kind(kind), args[3], _ttl(args[4]), token)


_PUT_KINDS = (Kind.PEER, Kind.SHARED, Kind.SIGNED)


_REQUEST_DECODERS: dict[str, Callable[[list], RequestMessage]] = {
    "ping": _parse_ping,
    "store": _parse_store,
    "find_node": _parse_find_node,
    "find_value": _parse_find_value,
    "kn_has": _parse_has,
    "kn_ring": _parse_ring_query,
    "kn_find_successor": _parse_find_successor,
    "kn_digest": _parse_digest,
    "kn_keys": _parse_key_list,
    "kn_put": _parse_put,
    "kn_bye": _parse_goodbye,
    "kn_reach": _parse_reach,
    "kn_dial": _parse_dial,
    "kn_dialed": _parse_dialed,
}


# ---- replies ----------------------------------------------------------------


def _ring_digest(raw: object, optional: bool) -> bytes | None:
    """A ring view's digest (RING_DIGEST_BYTES), in a query or a reply."""
    if raw is None and optional:
        return None
    if type(raw) is not bytes or len(raw) != RING_DIGEST_BYTES:
        raise DecodeError("ring digest is not 8 bytes")
    return raw


def _token(body: dict) -> bytes | None:
    token = body.get("token")
    if token is not None and (type(token) is not bytes or len(token) != TOKEN_BYTES):
        raise DecodeError("reply token is not 8 bytes")
    return token


def _decode_find_reply(body: object) -> FindReply:
    if type(body) is list:  # bmuller: a bare contact list
        return NodesReply(parse_contacts(body), native=False)
    if type(body) is not dict:
        raise DecodeError("find reply is neither a list nor a map")
    native = "nodes" in body or "ttl" in body
    token = _token(body)
    if "value" in body:
        ttl = body.get("ttl")
        ttl = None if ttl is None else _ttl(ttl)
        kind = body.get("kind", 0)
        if type(kind) is not int or kind not in _KINDS:
            raise DecodeError("reply kind is not 0, 1 or 2")
        # Plain values are bmuller's scalars; other kinds are checked by their
        # reader (kadnode.core.kinds), which verifies signatures and clocks.
        value = check_value(body["value"]) if kind == Kind.PLAIN else body["value"]
        contacts = tuple(parse_contacts(body["nodes"])) if native and "nodes" in body else ()
        return ValueReply(value, native, ttl, token, Kind(kind), contacts)
    if "nodes" in body:
        return NodesReply(parse_contacts(body["nodes"]), True, token)
    raise DecodeError("find reply map has neither value nor nodes")


_KINDS = frozenset(Kind)


def _decode_ring_reply(body: object) -> RingReply:
    """``{pred, succ, ver, token}`` (ver: the view's digest, or nil when cut),
    or ``{same, token}``: the view is still the one the query named."""
    if type(body) is dict and set(body) == {"same", "token"}:
        same = _ring_digest(body["same"], False)
        return RingReply(None, [], same, True, _token(body))
    if type(body) is not dict or set(body) != {"pred", "succ", "ver", "token"}:
        raise DecodeError("ring reply is not {pred, succ, ver, token} or {same, token}")
    pred = body["pred"]
    preds = parse_contacts([] if pred is None else [pred])
    succ = parse_contacts(body["succ"])
    ver = _ring_digest(body["ver"], True)
    return RingReply(preds[0] if preds else None, succ, ver, False, _token(body))


def _decode_successor_reply(body: object) -> SuccessorReply:
    if type(body) is not dict or set(body) != {"done", "node"} or type(body["done"]) is not bool:
        raise DecodeError("find_successor reply is not {done, node}")
    node = body["node"]
    if node is None:
        if not body["done"]:
            raise DecodeError("find_successor reply names no next hop")
        return SuccessorReply(True, None)
    [contact] = parse_contacts([node])
    return SuccessorReply(body["done"], contact)


def _decode_bucket_list(body: object) -> BucketList:
    if type(body) is not list or not all(type(i) is int and 0 <= i < 256 for i in body):
        raise DecodeError("reply is not a list of small indices")
    return BucketList(body)


_PING_REPLY_KEYS = {"id", "token", "ip", "t", "cl"}


def _decode_ping_reply(body: object) -> PingReply:
    """bmuller's bare id, or native ``{id, token}`` with, optionally, ``ip``
    (the asker's address as seen, :func:`pack_addr`), ``t`` (the responder's
    clock, whole seconds) and ``cl`` (true: the responder is a client)."""
    if type(body) is dict:
        if not {"id", "token"} <= set(body) <= _PING_REPLY_KEYS:
            raise DecodeError("native ping reply is not {id, token[, ip, t, cl]}")
        seen = unpack_addr(body["ip"]) if "ip" in body else None
        clock = body.get("t")
        if clock is not None and (type(clock) is not int or not 0 <= clock < 2**40):
            raise DecodeError("ping reply clock is not whole seconds")
        client = body.get("cl", False)
        if type(client) is not bool:
            raise DecodeError("ping reply client flag is not true or false")
        return PingReply(_id(body["id"]), _token(body), seen, clock, client)
    return PingReply(_id(body), None)


def _decode_put_reply(body: object) -> PutReply:
    if type(body) is not dict or set(body) != {"ok", "reason"} or type(body["ok"]) is not bool:
        raise DecodeError("put reply is not {ok, reason}")
    reason = body["reason"]
    if body["ok"]:
        return PutReply(None)
    if type(reason) is not str or not reason or len(reason) > 200:
        raise DecodeError("put refusal has no short reason")
    return PutReply(reason)


def _decode_ack(body: object) -> Ack:
    if type(body) is not bool:
        raise DecodeError("reply is not true or false")
    return Ack(body)


# A reply's shape is set by the request it answers.
_REPLY_DECODERS: dict[type, Callable[[object], ReplyMessage]] = {
    Ping: _decode_ping_reply,
    Store: _decode_ack,
    FindNode: _decode_find_reply,
    FindValue: _decode_find_reply,
    Has: _decode_find_reply,
    RingQuery: _decode_ring_reply,
    FindSuccessor: _decode_successor_reply,
    Digest: _decode_bucket_list,
    KeyList: _decode_bucket_list,
    Put: _decode_put_reply,
    Goodbye: _decode_ack,
    Reach: _decode_ack,
    Dial: _decode_ack,
    Dialed: _decode_ack,
}


def decode_reply(request: RequestMessage, body: object) -> ReplyMessage:
    """The reply ``body`` read as the answer to ``request``; DecodeError if it is not one."""
    return _REPLY_DECODERS[type(request)](body)


# ---- encoding ---------------------------------------------------------------


def encode(msg_id: bytes, message: RequestMessage | ReplyMessage) -> bytes:
    """A request or reply datagram: ``type | msg_id | msgpack body``."""
    kind = type(message)
    request = _REQUEST_ENCODERS.get(kind)
    if request is not None:
        method, args = request(message)
        return encode_request(msg_id, method, args)
    return encode_response(msg_id, _REPLY_ENCODERS[kind](message))


def encode_request(msg_id: bytes, method: str, args: list) -> bytes:
    """A request datagram from a method name and raw arguments (any, for tests)."""
    return bytes((REQUEST,)) + msg_id + pack([method, args])


def encode_response(msg_id: bytes, body: object) -> bytes:
    """A response datagram from a raw body (any, for tests)."""
    if type(body) is Packed:
        return bytes((RESPONSE,)) + msg_id + body
    return bytes((RESPONSE,)) + msg_id + pack(body)


def _store_args(m: Store) -> tuple[str, list]:
    args: list = [to_bytes(m.sender_id), m.key, m.value]
    if m.token is not None:
        args += [m.ttl, m.token]
    return "store", args


def _proven(args: list, proof: bytes | None) -> list:
    return args if proof is None else [*args, proof]


_REQUEST_ENCODERS: dict[type, Callable[..., tuple[str, list]]] = {
    Ping: lambda m: ("ping", _proven([to_bytes(m.sender_id)], m.proof)),
    Store: _store_args,
    FindNode: lambda m: (
        "find_node",
        _proven([to_bytes(m.sender_id), to_bytes(m.target)], m.proof),
    ),
    FindValue: lambda m: ("find_value", _proven([to_bytes(m.sender_id), m.key], m.proof)),
    Has: lambda m: ("kn_has", _proven([to_bytes(m.sender_id), m.key], m.proof)),
    RingQuery: lambda m: ("kn_ring", _proven([to_bytes(m.sender_id), m.seen], m.proof)),
    FindSuccessor: lambda m: (
        "kn_find_successor",
        _proven([to_bytes(m.sender_id), to_bytes(m.key)], m.proof),
    ),
    Digest: lambda m: ("kn_digest", _proven([to_bytes(m.sender_id), m.hashes], m.proof)),
    KeyList: lambda m: (
        "kn_keys",
        _proven([to_bytes(m.sender_id), m.buckets, m.entries], m.proof),
    ),
    Goodbye: lambda m: ("kn_bye", [to_bytes(m.sender_id), m.token]),
    Put: lambda m: (
        "kn_put",
        [to_bytes(m.sender_id), m.key, m.kind, m.payload, m.ttl, m.token],
    ),
    Reach: lambda m: ("kn_reach", _proven([to_bytes(m.sender_id), m.nonce], m.proof)),
    Dial: lambda m: (
        "kn_dial",
        _proven([to_bytes(m.sender_id), pack_addr(m.addr), m.nonce], m.proof),
    ),
    Dialed: lambda m: ("kn_dialed", [to_bytes(m.sender_id), m.nonce]),
}


def _nodes_body(reply: NodesReply) -> object:
    if reply.native:
        return find_nodes_body(reply.contacts, reply.token)
    return contact_entries(reply.contacts, False)


def _value_body(reply: ValueReply) -> object:
    """bmuller's ``{"value": v}``, or native with its lifetime, kind and token."""
    if not reply.native:
        return {"value": reply.value}
    body: dict = {"value": reply.value, "ttl": reply.ttl}
    if reply.kind:
        body["kind"] = reply.kind
    if reply.contacts:
        body["nodes"] = contact_entries(reply.contacts, True)
    if reply.token is not None:
        body["token"] = reply.token
    return body


def _ping_body(reply: PingReply) -> object:
    node_id = to_bytes(reply.node_id)
    if reply.token is None:
        return node_id
    body: dict = {"id": node_id, "token": reply.token}
    seen = None if reply.seen is None else pack_addr(reply.seen)
    if seen is not None:
        body["ip"] = seen
    if reply.clock is not None:
        body["t"] = reply.clock
    if reply.client:
        body["cl"] = True
    return body


def _ring_body(reply: RingReply) -> object:
    if reply.unchanged:
        return {"same": reply.digest, "token": reply.token}
    pred = reply.predecessor
    return {
        "pred": contact_entries([pred], True)[0] if pred is not None else None,
        "succ": contact_entries(reply.successors, True),
        "ver": reply.digest,
        "token": reply.token,
    }


def _successor_body(reply: SuccessorReply) -> object:
    node = reply.node
    return {"done": reply.done, "node": None if node is None else contact_entries([node], True)[0]}


_REPLY_ENCODERS: dict[type, Callable[..., object]] = {
    PingReply: _ping_body,
    NodesReply: _nodes_body,
    ValueReply: _value_body,
    Ack: lambda r: r.ok,
    PutReply: lambda r: {"ok": r.reason is None, "reason": r.reason},
    RingReply: _ring_body,
    SuccessorReply: _successor_body,
    BucketList: lambda r: r.indices,
}
