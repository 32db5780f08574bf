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

Everything a peer can send is checked here: any datagram that is not exactly
one of these shapes raises :class:`~kadnode.errors.DecodeError`, and nothing
else.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import msgpack

from kadnode.config import AE_BUCKETS, AE_HASH_BYTES, MAX_HOST_CHARS
from kadnode.core.ids import ID_BYTES, to_bytes
from kadnode.errors import DecodeError

REQUEST = 0x00
RESPONSE = 0x01
HEADER = 1 + ID_BYTES
NATIVE_MAGIC = b"kdn\x01"
TOKEN_BYTES = 8
MAX_CONTACTS_PER_REPLY = 32

# Values bmuller/kademlia accepts (kademlia.utils.check_dht_value_type).
Value = int | float | bool | str | bytes
VALUE_TYPES = (int, float, bool, str, bytes)


@dataclass(frozen=True, slots=True)
class Contact:
    """A node as others see it. Equality is (id, host, port)."""

    node_id: int
    host: str
    port: int
    native: bool = field(default=False, compare=False)
    # Its native [id, host, port, flags] entry, packed once when first sent
    # (see find_nodes_body).
    wire: bytes = field(default=b"", init=False, compare=False, repr=False)

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)


# ---- messages (requests, decoded) -------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    sender_id: int


@dataclass(frozen=True, slots=True)
class Store:
    sender_id: int
    key: bytes
    value: Value
    ttl: float | None = None  # native only: remaining lifetime
    token: bytes | None = None  # native only: write token from a recent reply


@dataclass(frozen=True, slots=True)
class FindNode:
    sender_id: int
    target: int


@dataclass(frozen=True, slots=True)
class FindValue:
    sender_id: int
    key: bytes


@dataclass(frozen=True, slots=True)
class RingQuery:
    """Native: "who are your predecessor and successors?" (Chord stabilize).

    Being asked is also Chord's notify: the receiver offers the sender to its
    own ring view, as it does with every request.
    """

    sender_id: int


@dataclass(frozen=True, slots=True)
class FindSuccessor:
    """Native: one step of Chord routing towards the successor of ``key``."""

    sender_id: int
    key: int


@dataclass(frozen=True, slots=True)
class Digest:
    """Native: bucket hashes of the keys the sender thinks we share."""

    sender_id: int
    hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class KeyList:
    """Native: (key, fingerprint) pairs for whole buckets that differed."""

    sender_id: int
    buckets: list[int]
    entries: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Put:
    """Native: write a signed peer record or a shared value (kadnode.kinds)."""

    sender_id: int
    key: bytes
    kind: int
    payload: object  # checked by kadnode.kinds for its kind
    ttl: float
    token: bytes


Message = Ping | Store | FindNode | FindValue | RingQuery | FindSuccessor | Digest | KeyList | Put


@dataclass(frozen=True, slots=True)
class Request:
    msg_id: bytes
    message: Message

    @property
    def native(self) -> bool:
        return self.msg_id.startswith(NATIVE_MAGIC)


@dataclass(frozen=True, slots=True)
class Response:
    msg_id: bytes
    body: object


# ---- limits for the msgpack decoder -------------------------------------

_UNPACK_LIMITS = dict(
    raw=False,
    strict_map_key=True,
    use_list=True,
    max_bin_len=8192,
    max_str_len=8192,
    max_array_len=256,
    max_map_len=16,
    max_ext_len=0,
)


def _unpack(body: bytes) -> object:
    try:
        return msgpack.unpackb(body, **_UNPACK_LIMITS)
    except Exception as exc:  # msgpack raises many types; all mean "bad datagram"
        raise DecodeError(f"undecodable msgpack body: {type(exc).__name__}") from None


def pack(obj: object) -> bytes:
    # msgpack.packb builds a Packer (and its buffer) per call; one per
    # thread, reused, packs a request in a third of the time (0.14 us
    # against 0.43). A Packer resets itself after an error.
    try:
        packer = _PACKERS.packer
    except AttributeError:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(obj)


_PACKERS = threading.local()


# ---- decoding --------------------------------------------------------------


def decode_datagram(data: bytes, max_size: int) -> Request | Response:
    """Decode one datagram; raise DecodeError for anything malformed."""
    if len(data) > max_size:
        raise DecodeError(f"datagram of {len(data)} bytes over the {max_size} limit")
    if len(data) < HEADER + 1:
        raise DecodeError(f"datagram of {len(data)} bytes is too short")
    kind = data[0]
    msg_id = bytes(data[1:HEADER])
    body = _unpack(data[HEADER:])
    if kind == RESPONSE:
        return Response(msg_id, body)
    if kind != REQUEST:
        raise DecodeError(f"unknown datagram type 0x{kind:02x}")
    if not (isinstance(body, list) and len(body) == 2):
        raise DecodeError("request body is not [method, args]")
    method, args = body
    if not isinstance(method, str) or not isinstance(args, list):
        raise DecodeError("request body is not [method, args]")
    parse = _REQUEST_PARSERS.get(method)
    if parse is None:
        raise DecodeError(f"unknown method {method[:32]!r}")
    return Request(msg_id, parse(args))


def decode_id(raw: object, what: str = "id") -> int:
    """A 20-byte id from the wire, as an int; DecodeError naming ``what``."""
    if not isinstance(raw, bytes) or len(raw) != ID_BYTES:
        raise DecodeError(f"{what} is not 20 bytes")
    return int.from_bytes(raw, "big")


_id = decode_id


def _key(raw: object) -> bytes:
    _id(raw)
    return raw  # type: ignore[return-value]


def check_value(value: object) -> Value:
    if not isinstance(value, VALUE_TYPES):
        raise DecodeError(f"value of type {type(value).__name__} is not storable")
    return value


def _ttl(raw: object) -> float:
    """A lifetime in seconds: a finite non-negative number (not a bool, not NaN)."""
    if type(raw) not in (int, float) or not 0 <= raw < float("inf"):
        raise DecodeError("ttl is not a non-negative number")
    return float(raw)


def _arity(args: list, *counts: int) -> None:
    if len(args) not in counts:
        raise DecodeError(f"{len(args)} arguments where {counts} expected")


def _parse_ping(args: list) -> Ping:
    _arity(args, 1)
    return Ping(_id(args[0]))


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
    _arity(args, 2)
    return FindNode(_id(args[0]), _id(args[1]))


def _parse_find_value(args: list) -> FindValue:
    _arity(args, 2)
    return FindValue(_id(args[0]), _key(args[1]))


def _parse_ring_query(args: list) -> RingQuery:
    _arity(args, 1)
    return RingQuery(_id(args[0]))


def _parse_find_successor(args: list) -> FindSuccessor:
    _arity(args, 2)
    return FindSuccessor(_id(args[0]), _id(args[1]))


def _parse_digest(args: list) -> Digest:
    _arity(args, 2)
    hashes = args[1]
    if type(hashes) is not list or len(hashes) != AE_BUCKETS:
        raise DecodeError("digest is not a list of bucket hashes")
    for h in hashes:
        if type(h) is not bytes or len(h) != AE_HASH_BYTES:
            raise DecodeError("digest hash is not 8 bytes")
    return Digest(_id(args[0]), hashes)


def _parse_key_list(args: list) -> KeyList:
    _arity(args, 3)
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
    return KeyList(_id(args[0]), buckets, pairs)


def _parse_put(args: list) -> Put:
    _arity(args, 6)
    kind, token = args[2], args[5]
    if type(kind) is not int or kind not in (1, 2):
        raise DecodeError("put kind is not 1 (peer record) or 2 (shared)")
    if type(token) is not bytes or len(token) != TOKEN_BYTES:
        raise DecodeError("put token is not 8 bytes")
    return Put(_id(args[0]), _key(args[1]), kind, args[3], _ttl(args[4]), token)


_REQUEST_PARSERS = {
    "ping": _parse_ping,
    "store": _parse_store,
    "find_node": _parse_find_node,
    "find_value": _parse_find_value,
    "kn_ring": _parse_ring_query,
    "kn_find_successor": _parse_find_successor,
    "kn_digest": _parse_digest,
    "kn_keys": _parse_key_list,
    "kn_put": _parse_put,
}


# ---- replies ----------------------------------------------------------------


def parse_contacts(raw: object) -> list[Contact]:
    """A list of [id, host, port] (bmuller) or [id, host, port, flags] (native).

    The hot path of every lookup. The same entries recur in every reply, so
    an entry seen before is one dict lookup (``_ENTRIES``); a new one is
    checked with exact types first.
    """
    if type(raw) is not list or len(raw) > MAX_CONTACTS_PER_REPLY:
        raise DecodeError("contact list is not a short list")
    contacts = []
    entries = _ENTRIES
    for item in raw:
        if type(item) is not list:
            raise DecodeError("contact is not [id, host, port]")
        key = tuple(item)
        try:
            contact = entries.get(key)
        except TypeError:  # a list or map inside: unhashable, and no contact
            raise DecodeError("contact has a bad id, host, port or flags") from None
        if contact is None or type(item[2]) is not int or type(item[-1]) is not int:
            # New, or equal in value but not in type (port 1.0 or True).
            contact = _parse_contact(item)
            if len(entries) >= _CONTACTS_CACHED:
                entries.clear()
            entries[key] = contact
        contacts.append(contact)
    return contacts


def _parse_contact(item: list) -> Contact:
    if len(item) == 3:
        raw_id, host, port = item
        flags = 0
    elif len(item) == 4:
        raw_id, host, port, flags = item
    else:
        raise DecodeError("contact is not [id, host, port]")
    if not (
        type(raw_id) is bytes
        and len(raw_id) == ID_BYTES
        and type(host) is str
        and 0 < len(host) <= MAX_HOST_CHARS
        and type(port) is int
        and 0 < port < 65536
        and type(flags) is int
    ):
        raise DecodeError("contact has a bad id, host, port or flags")
    return contact_of(int.from_bytes(raw_id, "big"), host, port, flags & 1 == 1)


def contact_of(node_id: int, host: str, port: int, native: bool) -> Contact:
    """The one shared Contact for these values (see ``_CONTACTS``)."""
    key = (node_id, host, port, native)
    contact = _CONTACTS.get(key)
    if contact is None:
        if len(_CONTACTS) >= _CONTACTS_CACHED:
            _CONTACTS.clear()
        contact = _CONTACTS[key] = Contact(node_id, sys.intern(host), port, native)
    return contact


# Contacts are immutable values that recur in every reply: one object per
# (id, host, port, flag) saves building them again (the lookup hot path) and
# lets every node in one process share them (the simulator's memory).
_CONTACTS: dict[tuple[int, str, int, bool], Contact] = {}
# The same, keyed by the decoded wire entry: (id bytes, host, port[, flags]).
_ENTRIES: dict[tuple, Contact] = {}
_CONTACTS_CACHED = 200_000


@dataclass(frozen=True, slots=True)
class FindReply:
    """What a find_node / find_value reply says, in either dialect."""

    contacts: list[Contact]
    native: bool
    found: bool = False
    value: Value | None = None
    ttl: float | None = None
    token: bytes | None = None
    kind: int = 0  # of the value (kadnode.kinds): 0 plain


def _token(body: dict) -> bytes | None:
    token = body.get("token")
    if token is not None and (type(token) is not bytes or len(token) != TOKEN_BYTES):
        raise DecodeError("reply token is not 8 bytes")
    return token


def parse_find_reply(body: object) -> FindReply:
    if type(body) is list:  # bmuller: a bare contact list
        return FindReply(parse_contacts(body), native=False)
    if type(body) is not dict:
        raise DecodeError("find reply is neither a list nor a map")
    native = "nodes" in body or "ttl" in body
    token = _token(body)
    if "value" in body:
        ttl = body.get("ttl")
        ttl = None if ttl is None else _ttl(ttl)
        kind = body.get("kind", 0)
        if type(kind) is not int or kind not in (0, 1, 2):
            raise DecodeError("reply kind is not 0, 1 or 2")
        # Plain values are bmuller's scalars; other kinds are checked by their
        # reader (kadnode.kinds), which verifies signatures and clocks.
        value = check_value(body["value"]) if kind == 0 else body["value"]
        return FindReply([], native, True, value, ttl, token, kind)
    if "nodes" in body:
        return FindReply(parse_contacts(body["nodes"]), True, token=token)
    raise DecodeError("find reply map has neither value nor nodes")


@dataclass(frozen=True, slots=True)
class RingReply:
    predecessor: Contact | None
    successors: list[Contact]


def parse_ring_reply(body: object) -> RingReply:
    if type(body) is not dict or set(body) != {"pred", "succ"}:
        raise DecodeError("ring reply is not {pred, succ}")
    pred = body["pred"]
    preds = parse_contacts([] if pred is None else [pred])
    return RingReply(preds[0] if preds else None, parse_contacts(body["succ"]))


def ring_reply_body(predecessor: Contact | None, successors: list[Contact]) -> object:
    pred = contact_entries([predecessor], True)[0] if predecessor is not None else None
    return {"pred": pred, "succ": contact_entries(successors, True)}


@dataclass(frozen=True, slots=True)
class SuccessorReply:
    done: bool  # True: ``node`` is the key's successor; False: ask ``node`` next
    node: Contact | None  # None: the responder itself


def parse_successor_reply(body: object) -> SuccessorReply:
    if type(body) is not dict or set(body) != {"done", "node"} or type(body["done"]) is not bool:
        raise DecodeError("find_successor reply is not {done, node}")
    node = body["node"]
    if node is None:
        if not body["done"]:
            raise DecodeError("find_successor reply names no next hop")
        return SuccessorReply(True, None)
    [contact] = parse_contacts([node])
    return SuccessorReply(body["done"], contact)


def successor_reply_body(done: bool, node: Contact | None) -> object:
    return {"done": done, "node": None if node is None else contact_entries([node], True)[0]}


def parse_bucket_list(body: object) -> list[int]:
    """Reply to kn_digest (buckets that differ) or kn_keys (entries wanted)."""
    if type(body) is not list or not all(type(i) is int and 0 <= i < 256 for i in body):
        raise DecodeError("reply is not a list of small indices")
    return body


@dataclass(frozen=True, slots=True)
class PingReply:
    node_id: int
    token: bytes | None  # native replies carry a write token


def parse_ping_reply(body: object) -> PingReply:
    if type(body) is dict:
        if set(body) != {"id", "token"}:
            raise DecodeError("native ping reply is not {id, token}")
        return PingReply(_id(body["id"]), _token(body))
    return PingReply(_id(body), None)


def ping_reply_body(node_id: bytes, native: bool, token: bytes) -> object:
    return {"id": node_id, "token": token} if native else node_id


def parse_put_reply(body: object) -> str | None:
    """kn_put's reply: None when taken, else the replica's one-line reason."""
    if type(body) is not dict or set(body) != {"ok", "reason"} or type(body["ok"]) is not bool:
        raise DecodeError("put reply is not {ok, reason}")
    reason = body["reason"]
    if body["ok"]:
        return None
    if type(reason) is not str or not reason or len(reason) > 200:
        raise DecodeError("put refusal has no short reason")
    return reason


def parse_store_reply(body: object) -> bool:
    if body is not True:
        raise DecodeError("store reply is not true")
    return True


# ---- encoding ---------------------------------------------------------------


def encode_request(msg_id: bytes, method: str, args: list) -> bytes:
    return bytes((REQUEST,)) + msg_id + pack([method, args])


def encode_response(msg_id: bytes, body: object) -> bytes:
    if type(body) is Packed:
        return bytes((RESPONSE,)) + msg_id + body
    return bytes((RESPONSE,)) + msg_id + pack(body)


class Packed(bytes):
    """A reply body already in msgpack."""


_NODES_KEY = pack("nodes")
_TOKEN_KEY = pack("token")


def find_nodes_body(contacts: list[Contact], token: bytes | None) -> Packed:
    """``pack(find_reply_body(contacts, True, token=token))``, byte for byte,
    from entries packed once per contact: the reply every lookup step waits
    for, built without packing twenty lists again."""
    entries = b"".join([c.wire or _pack_entry(c) for c in contacts])
    n = len(contacts)
    array = bytes((0x90 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    if token is None:
        return Packed(b"\x81" + _NODES_KEY + array + entries)
    return Packed(b"\x82" + _NODES_KEY + array + entries + _TOKEN_KEY + pack(token))


def _pack_entry(contact: Contact) -> bytes:
    wire = pack(contact_entries([contact], True)[0])
    object.__setattr__(contact, "wire", wire)
    return wire


def contact_entries(contacts: list[Contact], native: bool) -> list[list]:
    if native:
        return [[to_bytes(c.node_id), c.host, c.port, int(c.native)] for c in contacts]
    return [[to_bytes(c.node_id), c.host, c.port] for c in contacts]


def find_reply_body(
    contacts: list[Contact],
    native: bool,
    value: object | None = None,
    ttl: float | None = None,
    token: bytes | None = None,
    kind: int = 0,
) -> object:
    """A find reply in the asker's dialect; native ones carry a write token."""
    if not native:
        return {"value": value} if value is not None else contact_entries(contacts, False)
    if value is not None:
        body: dict = {"value": value, "ttl": ttl}
        if kind:
            body["kind"] = kind
    else:
        body = {"nodes": contact_entries(contacts, True)}
    if token is not None:
        body["token"] = token
    return body
