"""kadnode.core.codec and wire: round trips, wire equivalence with u-msgpack-python (rpcudp's
encoder), and "anything a peer sends raises DecodeError or nothing"."""

from __future__ import annotations

import math

import msgpack
import pytest
import umsgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from kadnode.config import (
    AE_BUCKETS,
    MAX_DATAGRAM,
    MAX_PROOF_BYTES,
    MAX_RECORD_ADDRESSES,
    MAX_VALUE_BYTES,
    MAX_WIRE_INT,
    SUCCESSORS,
    WIRE_DATAGRAM,
    K,
)
from kadnode.core import records
from kadnode.core.codec import (
    HEADER,
    NATIVE_MAGIC,
    REQUEST,
    RESPONSE,
    Request,
    Response,
    decode_reply,
    encode,
    encode_request,
    encode_response,
)
from kadnode.core.codec import decode as decode_datagram
from kadnode.core.identity import Identity
from kadnode.core.ids import ID_MAX, to_bytes
from kadnode.core.messages import (
    Ack,
    BucketList,
    Contact,
    Digest,
    FindNode,
    FindSuccessor,
    FindValue,
    Has,
    KeyList,
    Kind,
    NodesReply,
    Ping,
    PingReply,
    Put,
    PutReply,
    RingQuery,
    RingReply,
    Store,
    SuccessorReply,
    ValueReply,
)
from kadnode.core.proof import wire_bytes
from kadnode.core.wire import MAX_CONTACTS_PER_REPLY, find_nodes_body, pack, parse_contacts
from kadnode.errors import DecodeError

PROPERTY = settings(max_examples=100, deadline=None)
FUZZ = settings(max_examples=300, deadline=None)

# ---- strategies ---------------------------------------------------------------

node_ids = st.integers(0, ID_MAX)
id_bytes = st.binary(min_size=20, max_size=20)
# rpcudp ids are random 20 bytes; kadnode's start with the native magic.
msg_ids = st.one_of(
    id_bytes,
    st.binary(min_size=16, max_size=16).map(lambda tail: NATIVE_MAGIC + tail),
)
# Every int msgpack can carry, with its encoding boundaries made likely.
INT_EDGES = (0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1)
NEGATIVE_INT_EDGES = (-1, -32, -33, -128, -129, -32768, -32769, -(2**31) - 1, -(2**63))
msgpack_ints = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from((*INT_EDGES, *NEGATIVE_INT_EDGES)),
)
# Storable values (kademlia.utils.check_dht_value_type), NaN left out so that
# equality means something.
values = st.one_of(
    msgpack_ints,
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=300),
    st.binary(max_size=300),
)
ttls = st.one_of(st.floats(min_value=0, max_value=1e9), st.integers(0, 2**32))
hosts = st.text(min_size=1, max_size=64)
contacts = st.builds(Contact, node_ids, hosts, st.integers(1, 65535), st.booleans())
contact_lists = st.lists(contacts, max_size=20)


def msgpack_objects(nan: bool = True) -> st.SearchStrategy[object]:
    """Any object msgpack can pack: nested lists and maps of scalars."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        msgpack_ints,
        st.floats(allow_nan=nan),
        st.text(max_size=20),
        st.binary(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(
                st.one_of(st.text(max_size=8), st.binary(max_size=8)), children, max_size=6
            ),
        ),
        max_leaves=12,
    )


any_objects = msgpack_objects()


def strictly_equal(a: object, b: object) -> bool:
    """Equality that also tells True from 1 and 1.0 from 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(strictly_equal, a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(strictly_equal(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)  # type: ignore[arg-type]
    return a == b


def decode(data: bytes) -> Request | Response:
    return decode_datagram(data, MAX_DATAGRAM)


# ---- requests: encode_request -> decode_datagram ------------------------------------


@PROPERTY
@given(msg_ids, node_ids)
def test_ping_round_trip(msg_id: bytes, sender: int) -> None:
    data = encode_request(msg_id, "ping", [to_bytes(sender)])
    assert decode(data) == Request(msg_id, Ping(sender))


@PROPERTY
@given(msg_ids, node_ids, id_bytes, values)
def test_store_round_trip(msg_id: bytes, sender: int, key: bytes, value: object) -> None:
    data = encode_request(msg_id, "store", [to_bytes(sender), key, value])
    request = decode(data)
    assert request == Request(msg_id, Store(sender, key, value, None))
    assert type(request.message.value) is type(value)  # True stays a bool, 1.0 a float


@PROPERTY
@given(
    node_ids,
    id_bytes,
    values,
    ttls,
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=8, max_size=8),
)
def test_native_store_round_trip_carries_the_ttl_as_a_float(
    sender: int, key: bytes, value: object, ttl: float, tail: bytes, token: bytes
) -> None:
    msg_id = NATIVE_MAGIC + tail
    args = [to_bytes(sender), key, value, ttl, token]
    request = decode(encode_request(msg_id, "store", args))
    assert request == Request(msg_id, Store(sender, key, value, float(ttl), token))
    assert request.native
    assert type(request.message.ttl) is float


@PROPERTY
@given(msg_ids, node_ids, node_ids)
def test_find_node_round_trip(msg_id: bytes, sender: int, target: int) -> None:
    data = encode_request(msg_id, "find_node", [to_bytes(sender), to_bytes(target)])
    assert decode(data) == Request(msg_id, FindNode(sender, target))


@PROPERTY
@given(msg_ids, node_ids, id_bytes)
def test_find_value_round_trip(msg_id: bytes, sender: int, key: bytes) -> None:
    data = encode_request(msg_id, "find_value", [to_bytes(sender), key])
    assert decode(data) == Request(msg_id, FindValue(sender, key))


def test_request_is_native_only_with_the_magic_prefix() -> None:
    assert Request(NATIVE_MAGIC + bytes(16), Ping(1)).native
    assert not Request(bytes(20), Ping(1)).native
    assert not Request(b"kdn\x02" + bytes(16), Ping(1)).native


def test_datagram_layout_is_rpcudp_framing() -> None:
    data = encode_request(b"m" * 20, "ping", [bytes(20)])
    assert data[0] == REQUEST
    assert data[1:HEADER] == b"m" * 20
    assert msgpack.unpackb(data[HEADER:]) == ["ping", [bytes(20)]]
    reply = encode_response(b"m" * 20, True)
    assert reply == bytes([RESPONSE]) + b"m" * 20 + b"\xc3"


# ---- replies ----------------------------------------------------------------------


def find_reply_body(contacts, native, value=None, ttl=None, token=None, kind=Kind.PLAIN):
    """What a find reply's body is on the wire, read back as msgpack objects."""
    if value is None:
        reply: NodesReply | ValueReply = NodesReply(contacts, native, token)
    else:
        reply = ValueReply(value, native, ttl, token, kind)
    return msgpack.unpackb(encode(b"m" * 20, reply)[HEADER:], raw=False)


def parse_find_reply(body: object):
    return decode_reply(FindNode(1, 2), body)


def parse_ping_reply(body: object):
    return decode_reply(Ping(1), body)


def parse_store_reply(body: object):
    return decode_reply(Store(1, bytes(20), 1), body)


def parse_ring_reply(body: object):
    return decode_reply(RingQuery(1), body)


def parse_successor_reply(body: object):
    return decode_reply(FindSuccessor(1, 2), body)


@PROPERTY
@given(st.lists(contacts, max_size=32), st.none() | st.binary(min_size=8, max_size=8))
def test_prepacked_nodes_reply_is_byte_for_byte_the_packed_map(
    found: list[Contact], token: bytes | None
) -> None:
    body: dict = {"nodes": [[to_bytes(c.node_id), c.host, c.port, int(c.native)] for c in found]}
    if token is not None:
        body["token"] = token
    expected = pack(body)
    assert find_nodes_body(found, token) == expected
    assert find_nodes_body(found, token) == expected  # again, from the kept entries
    assert umsgpack.unpackb(expected) == body


@PROPERTY
@given(msg_ids, contact_lists, st.booleans())
def test_find_reply_with_contacts_round_trip(
    msg_id: bytes, found: list[Contact], native: bool
) -> None:
    response = decode(encode_response(msg_id, find_reply_body(found, native)))
    assert isinstance(response, Response)
    assert response.msg_id == msg_id
    reply = parse_find_reply(response.body)
    assert reply == NodesReply(found, native=native)
    if native:  # the native dialect carries each contact's flag
        assert [c.native for c in reply.contacts] == [c.native for c in found]
    else:  # bmuller's [id, host, port] cannot say it
        assert not any(c.native for c in reply.contacts)


@PROPERTY
@given(msg_ids, values, st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)))
def test_native_find_reply_with_a_value_round_trip(
    msg_id: bytes, value: object, ttl: float | None
) -> None:
    body = decode(encode_response(msg_id, find_reply_body([], True, value, ttl))).body
    reply = parse_find_reply(body)
    assert reply == ValueReply(value, native=True, ttl=ttl)
    assert type(reply.value) is type(value)


def test_a_native_value_reply_names_the_replicas_beside_an_owned_value() -> None:
    near = (Contact(7, "10.0.0.7", 4007, True), Contact(8, "::1", 4008, True))
    reply = ValueReply([[None, []]], True, 60.0, b"t" * 8, Kind.SHARED, near)
    body = decode(encode(b"m" * 20, reply)).body
    assert parse_find_reply(body) == reply == decode_reply(Has(1, bytes(20)), body)
    assert len(body["nodes"]) == 2


@PROPERTY
@given(msg_ids, values, st.floats(min_value=0, max_value=1e9))
def test_bmuller_find_reply_with_a_value_has_no_ttl(
    msg_id: bytes, value: object, ttl: float
) -> None:
    body = decode(encode_response(msg_id, find_reply_body([], False, value, ttl))).body
    assert body == {"value": value}  # exactly what kademlia 2.2.3 returns
    assert parse_find_reply(body) == ValueReply(value, native=False)


@pytest.mark.parametrize("value", [0, False, "", b"", 0.0])
def test_falsy_values_are_found_values(value: object) -> None:
    reply = parse_find_reply(find_reply_body([Contact(1, "h", 1)], True, value, 5.0))
    assert type(reply) is ValueReply
    assert strictly_equal(reply.value, value)


def test_bmuller_find_reply_shapes() -> None:
    one = Contact(0xAB, "10.0.0.1", 8468, native=True)
    assert find_reply_body([one], False) == [[to_bytes(0xAB), "10.0.0.1", 8468]]
    assert find_reply_body([one], True) == {"nodes": [[to_bytes(0xAB), "10.0.0.1", 8468, 1]]}
    assert find_reply_body([], False) == []
    assert parse_find_reply([]) == NodesReply([], native=False)
    assert parse_find_reply({"nodes": []}) == NodesReply([], native=True)


def test_parse_contacts_takes_three_and_four_element_entries() -> None:
    raw = [
        [to_bytes(1), "a.example", 1],
        [to_bytes(2), "10.0.0.2", 65535, 1],
        [to_bytes(3), "::1", 4000, 0],
        [to_bytes(4), "h", 4001, 2],  # flag bit 0 clear: not native
        [to_bytes(5), "h", 4002, 3],
    ]
    got = parse_contacts(raw)
    assert got == [
        Contact(1, "a.example", 1),
        Contact(2, "10.0.0.2", 65535),
        Contact(3, "::1", 4000),
        Contact(4, "h", 4001),
        Contact(5, "h", 4002),
    ]
    assert [c.native for c in got] == [False, True, False, False, True]


def test_parse_contacts_accepts_the_maximum_count() -> None:
    raw = [[to_bytes(i), "h", 1] for i in range(MAX_CONTACTS_PER_REPLY)]
    assert len(parse_contacts(raw)) == MAX_CONTACTS_PER_REPLY


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        "nodes",
        [[to_bytes(i), "h", 1] for i in range(MAX_CONTACTS_PER_REPLY + 1)],
        [[to_bytes(1), "h"]],
        [[to_bytes(1), "h", 1, 0, 0]],
        [(to_bytes(1), "h", 1)],
        [[bytes(19), "h", 1]],
        [[bytes(21), "h", 1]],
        [["00" * 20, "h", 1]],
        [[1, "h", 1]],
        [[to_bytes(1), "", 1]],
        [[to_bytes(1), "h" * 65, 1]],
        [[to_bytes(1), b"h", 1]],
        [[to_bytes(1), "h", 0]],
        [[to_bytes(1), "h", 65536]],
        [[to_bytes(1), "h", -1]],
        [[to_bytes(1), "h", True]],
        [[to_bytes(1), "h", 1.0]],
        [[to_bytes(1), "h", "1"]],
        [[to_bytes(1), "h", 1, "native"]],
        [[to_bytes(1), "h", 1, 1.0]],
    ],
)
def test_parse_contacts_rejects_malformed_lists(raw: object) -> None:
    with pytest.raises(DecodeError):
        parse_contacts(raw)


@pytest.mark.parametrize(
    "body",
    [
        None,
        True,
        7,
        "nodes",
        b"",
        {},
        {"contacts": []},
        {"value": None},
        {"value": [1]},
        {"value": {"a": 1}},
        {"value": 1, "ttl": -1},
        {"value": 1, "ttl": -0.5},
        {"value": 1, "ttl": "60"},
        {"nodes": None},
        {"nodes": [[1, 2, 3]]},
    ],
)
def test_parse_find_reply_rejects_other_shapes(body: object) -> None:
    with pytest.raises(DecodeError):
        parse_find_reply(body)


@pytest.mark.parametrize(
    "body",
    [
        {"pred": None, "succ": []},  # no digest: a node from before ring digests
        {"pred": None, "succ": [], "ver": b"short"},
        {"same": None, "token": None},
        {"same": bytes(8)},  # no token field
        {"same": bytes(8), "token": b"short"},
        {"same": bytes(8), "token": None, "pred": None},
    ],
)
def test_parse_ring_reply_rejects_other_shapes(body: object) -> None:
    with pytest.raises(DecodeError):
        parse_ring_reply(body)


def test_a_ring_query_names_the_view_it_holds_by_a_digest_or_nil() -> None:
    assert decode(encode_request(bytes(20), "kn_ring", [bytes(20), None])).message == RingQuery(0)
    seen = decode(encode_request(bytes(20), "kn_ring", [bytes(20), bytes(8)])).message
    assert seen == RingQuery(0, bytes(8))
    with pytest.raises(DecodeError):
        decode(encode_request(bytes(20), "kn_ring", [bytes(20), bytes(7)]))


@pytest.mark.parametrize("ttl", [math.nan, True])
def test_parse_find_reply_rejects_the_ttls_a_store_request_rejects(ttl: object) -> None:
    with pytest.raises(DecodeError):
        decode(encode_request(bytes(20), "store", [bytes(20), bytes(20), 1, ttl, bytes(8)]))
    with pytest.raises(DecodeError):
        parse_find_reply({"value": 1, "ttl": ttl})


# ---- every message, both ways ------------------------------------------------------

tokens = st.binary(min_size=8, max_size=8)
keys = id_bytes
lifetimes = st.floats(min_value=0, max_value=1e9)
requests = st.one_of(
    st.builds(Ping, node_ids),
    st.builds(Store, node_ids, keys, values),
    st.builds(Store, node_ids, keys, values, lifetimes, tokens),
    st.builds(FindNode, node_ids, node_ids),
    st.builds(FindValue, node_ids, keys),
    st.builds(RingQuery, node_ids, st.none() | tokens),
    st.builds(FindSuccessor, node_ids, node_ids),
    st.builds(Digest, node_ids, st.lists(tokens, min_size=64, max_size=64)),
    st.builds(
        KeyList,
        node_ids,
        st.lists(st.integers(0, 63), max_size=8),
        st.lists(st.tuples(keys, tokens), max_size=8),
    ),
    st.builds(
        Put,
        node_ids,
        keys,
        st.sampled_from([Kind.PEER, Kind.SHARED]),
        values,
        lifetimes,
        tokens,
    ),
)


@PROPERTY
@given(msg_ids, requests)
def test_every_request_decodes_to_the_message_encoded(msg_id: bytes, message: object) -> None:
    decoded = decode(encode(msg_id, message))
    assert isinstance(decoded, Request) and decoded.msg_id == msg_id
    expected = message
    if isinstance(message, KeyList):  # msgpack arrays read back as lists
        expected = KeyList(message.sender_id, message.buckets, [tuple(e) for e in message.entries])
    assert decoded.message == expected


# Each reply with a request it can answer.
replies = st.one_of(
    st.tuples(st.just(Ping(1)), st.builds(PingReply, node_ids, st.none() | tokens)),
    st.tuples(
        st.sampled_from([FindNode(1, 2), FindValue(1, bytes(20))]),
        st.builds(NodesReply, contact_lists, st.just(True), st.none() | tokens),
    ),
    st.tuples(
        st.just(FindValue(1, bytes(20))),
        st.builds(ValueReply, values, st.just(True), lifetimes, st.none() | tokens),
    ),
    st.tuples(st.just(Store(1, bytes(20), 1)), st.just(Ack(True))),
    st.tuples(
        st.just(Put(1, bytes(20), Kind.PEER, 1, 1.0, bytes(8))),
        st.builds(PutReply, st.none() | st.text(min_size=1, max_size=200)),
    ),
    st.tuples(
        st.just(RingQuery(1)),
        st.one_of(
            st.builds(
                RingReply,
                st.none() | contacts,
                st.lists(contacts, max_size=16),
                st.none() | tokens,
                st.just(False),
                st.none() | tokens,
            ),
            st.builds(RingReply, st.none(), st.just([]), tokens, st.just(True), st.none() | tokens),
        ),
    ),
    st.tuples(
        st.just(FindSuccessor(1, 2)),
        st.one_of(
            st.builds(SuccessorReply, st.booleans(), contacts),
            st.just(SuccessorReply(True, None)),
        ),
    ),
    st.tuples(
        st.sampled_from([Digest(1, [bytes(8)] * 64), KeyList(1, [], [])]),
        st.builds(BucketList, st.lists(st.integers(0, 255), max_size=64)),
    ),
)


@PROPERTY
@given(msg_ids, replies)
def test_every_reply_reads_back_as_the_reply_encoded(msg_id: bytes, pair: tuple) -> None:
    request, reply = pair
    response = decode(encode(msg_id, reply))
    assert isinstance(response, Response) and response.msg_id == msg_id
    assert decode_reply(request, response.body) == reply


def test_ping_and_store_replies() -> None:
    assert parse_ping_reply(to_bytes(42)) == PingReply(42, None)
    assert parse_ping_reply({"id": to_bytes(42), "token": bytes(8)}) == PingReply(42, bytes(8))
    assert parse_store_reply(True) == Ack(True)
    assert parse_store_reply(False) == Ack(False)  # refused: an answer, not a broken reply
    for bad in (None, 42, bytes(19), bytes(21), "00" * 20, [to_bytes(42)]):
        with pytest.raises(DecodeError):
            parse_ping_reply(bad)
    for bad in (None, 0, 1, "true", b"\x01", [True]):
        with pytest.raises(DecodeError):
            parse_store_reply(bad)


# ---- wire equivalence with u-msgpack-python (what rpcudp uses) --------------------------


request_bodies = st.one_of(
    st.tuples(id_bytes).map(lambda a: ["ping", list(a)]),
    st.tuples(id_bytes, id_bytes, values).map(lambda a: ["store", list(a)]),
    st.tuples(
        id_bytes,
        id_bytes,
        values,
        st.floats(min_value=0, max_value=1e9),
        st.binary(min_size=8, max_size=8),
    ).map(lambda a: ["store", list(a)]),
    st.tuples(id_bytes, id_bytes).map(lambda a: ["find_node", list(a)]),
    st.tuples(id_bytes, id_bytes).map(lambda a: ["find_value", list(a)]),
)
reply_bodies = st.one_of(
    st.builds(find_reply_body, contact_lists, st.booleans()),
    st.builds(
        find_reply_body,
        st.just([]),
        st.booleans(),
        values,
        st.one_of(st.none(), st.floats(min_value=0, max_value=1e9)),
    ),
    st.just(True),
    id_bytes,
)


@PROPERTY
@given(st.one_of(request_bodies, reply_bodies))
def test_msgpack_and_umsgpack_write_the_same_bytes(body: object) -> None:
    assert pack(body) == umsgpack.packb(body)


@PROPERTY
@given(st.one_of(request_bodies, reply_bodies))
def test_msgpack_and_umsgpack_read_each_others_bytes(body: object) -> None:
    assert strictly_equal(umsgpack.unpackb(pack(body)), body)
    assert strictly_equal(msgpack.unpackb(umsgpack.packb(body), raw=False), body)


@PROPERTY
@given(msg_ids, request_bodies)
def test_requests_written_by_umsgpack_decode_like_our_own(msg_id: bytes, body: list) -> None:
    ours = decode(encode_request(msg_id, body[0], body[1]))
    theirs = decode(bytes([REQUEST]) + msg_id + umsgpack.packb(body))
    assert theirs == ours


@PROPERTY
@given(msg_ids, reply_bodies)
def test_replies_written_by_umsgpack_decode_like_our_own(msg_id: bytes, body: object) -> None:
    theirs = decode(bytes([RESPONSE]) + msg_id + umsgpack.packb(body))
    assert theirs == decode(encode_response(msg_id, body))
    assert strictly_equal(theirs.body, body)


# ---- hostile input: DecodeError and nothing else ------------------------------------------


def only_decode_error(call, *args: object) -> None:  # type: ignore[no-untyped-def]
    """Run ``call``; any exception other than DecodeError fails the test."""
    try:
        call(*args)
    except DecodeError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    only_decode_error(decode, data)


@FUZZ
@given(st.integers(0, 255), st.binary(min_size=20, max_size=20), any_objects)
def test_valid_header_with_any_msgpack_body_raises_only_decode_error(
    kind: int, msg_id: bytes, body: object
) -> None:
    only_decode_error(decode, bytes([kind]) + msg_id + pack(body))


methods = st.one_of(
    st.sampled_from(["ping", "store", "find_node", "find_value", "kn_ring", "kn_find_successor"]),
    st.text(),
)
# Arguments near the real shapes: right-sized ids mixed with anything else.
near_args = st.lists(st.one_of(id_bytes, values, any_objects), max_size=5)


@FUZZ
@given(
    st.sampled_from([REQUEST, RESPONSE]), st.binary(min_size=20, max_size=20), methods, near_args
)
def test_requests_of_any_method_and_arguments_raise_only_decode_error(
    kind: int, msg_id: bytes, method: str, args: list
) -> None:
    only_decode_error(decode, bytes([kind]) + msg_id + pack([method, args]))


valid_datagrams = st.one_of(
    st.builds(encode_request, msg_ids, methods, near_args),
    st.builds(encode_response, msg_ids, st.one_of(reply_bodies, any_objects)),
)


@st.composite
def mutated_datagrams(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_datagrams))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if how == "flip" and where < len(data):
            data[where] ^= draw(st.integers(1, 255))
        elif how == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        else:
            del data[where:]
    return bytes(data)


@FUZZ
@given(mutated_datagrams())
def test_mutated_datagrams_raise_only_decode_error(data: bytes) -> None:
    only_decode_error(decode, data)


@FUZZ
@given(any_objects)
def test_reply_parsers_on_any_object_raise_only_decode_error(body: object) -> None:
    for parse in (
        parse_find_reply,
        parse_contacts,
        parse_ping_reply,
        parse_store_reply,
        parse_ring_reply,
        parse_successor_reply,
    ):
        only_decode_error(parse, body)


contact_like = st.lists(
    st.one_of(
        st.tuples(
            st.one_of(id_bytes, any_objects),
            st.one_of(hosts, any_objects),
            st.one_of(st.integers(-5, 70000), any_objects),
        ).map(list),
        st.tuples(id_bytes, hosts, st.integers(1, 65535), st.one_of(msgpack_ints, any_objects)).map(
            list
        ),
        any_objects,
    ),
    max_size=5,
)


@settings(FUZZ, max_examples=150)
@given(contact_like, any_objects, any_objects)
def test_reply_parsers_on_near_miss_replies_raise_only_decode_error(
    entries: list, value: object, ttl: object
) -> None:
    only_decode_error(parse_contacts, entries)
    only_decode_error(parse_find_reply, entries)
    only_decode_error(parse_find_reply, {"nodes": entries})
    only_decode_error(parse_find_reply, {"nodes": entries, "ttl": ttl})
    only_decode_error(parse_find_reply, {"value": value})
    only_decode_error(parse_find_reply, {"value": value, "ttl": ttl})


# ---- limits ---------------------------------------------------------------------------


def store_of_size(size: int) -> bytes:
    """A valid store request datagram of exactly ``size`` bytes."""
    overhead = len(encode_request(bytes(20), "store", [bytes(20), bytes(20), bytes(300)])) - 300
    return encode_request(bytes(20), "store", [bytes(20), bytes(20), bytes(size - overhead)])


def test_datagram_of_exactly_the_limit_is_accepted() -> None:
    data = store_of_size(MAX_DATAGRAM)
    assert len(data) == MAX_DATAGRAM
    assert isinstance(decode(data).message, Store)


def test_oversized_datagram_is_rejected() -> None:
    data = store_of_size(MAX_DATAGRAM + 1)
    assert len(data) == MAX_DATAGRAM + 1
    with pytest.raises(DecodeError, match="over the 8213 limit"):
        decode(data)
    with pytest.raises(DecodeError, match="over the 100 limit"):
        decode_datagram(encode_request(bytes(20), "ping", [bytes(20)]) + bytes(70), 100)


@pytest.mark.parametrize("size", [0, 1, HEADER])
def test_datagram_without_a_body_is_rejected(size: int) -> None:
    with pytest.raises(DecodeError, match="too short"):
        decode(bytes(size))


@pytest.mark.parametrize("kind", [REQUEST, RESPONSE])
def test_too_deep_nesting_is_rejected(kind: int) -> None:
    deep = b"\x91" * 3000 + b"\xc0"  # [[[...[nil]...]]], 3001 bytes
    with pytest.raises(DecodeError, match="undecodable"):
        decode(bytes([kind]) + bytes(20) + deep)


@pytest.mark.parametrize(
    "body",
    [
        b"\x91\x01\x02",  # trailing bytes after the body
        b"\xdc\xff\xff",  # array header announcing 65535 items, none sent
        b"\xdc\x01\x01" + b"\xc0" * 257,  # 257 items: over max_array_len
        b"\xdf\x00\x00\x00\x11" + b"\xa1a\xc0" * 17,  # 17 pairs: over max_map_len
        b"\x81\x01\xc0",  # a map with an int key
        b"\xd4\x01\x00",  # an ext type
        b"\xc1",  # the never-used byte
    ],
)
def test_bodies_beyond_the_decoder_limits_are_rejected(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(bytes([RESPONSE]) + bytes(20) + body)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (["ping"], "not \\[method, args\\]"),
        (["ping", [bytes(20)], 1], "not \\[method, args\\]"),
        ([b"ping", [bytes(20)]], "not \\[method, args\\]"),
        (["ping", (bytes(20),)], None),  # a tuple packs as a list: fine
        (["ping", {"id": bytes(20)}], "not \\[method, args\\]"),
        (["bootstrap", []], "unknown method 'bootstrap'"),
        (["ping", []], "0 arguments"),
        (["ping", [bytes(19)]], "id is not 20 bytes"),
        (["store", [bytes(20), bytes(20)]], "2 arguments"),
        (["store", [bytes(20), bytes(20), None]], "not storable"),
        (["store", [bytes(20), bytes(20), [1]]], "not storable"),
        (["store", [bytes(20), bytes(8), 1]], "id is not 20 bytes"),
        (["store", [bytes(20), bytes(20), 1, -1, bytes(8)]], "ttl"),
        (["store", [bytes(20), bytes(20), 1, "60", bytes(8)]], "ttl"),
        (["store", [bytes(20), bytes(20), 1, False, bytes(8)]], "ttl"),
        (["store", [bytes(20), bytes(20), 1, math.nan, bytes(8)]], "ttl"),
        (["store", [bytes(20), bytes(20), 1, 60.0]], "4 arguments"),
        (["store", [bytes(20), bytes(20), 1, 60.0, bytes(7)]], "token"),
        (["find_node", [bytes(20)]], "1 arguments"),
        (["find_value", [bytes(20), "key"]], "id is not 20 bytes"),
    ],
)
def test_malformed_requests_are_rejected_with_a_reason(body: list, error: str | None) -> None:
    data = bytes([REQUEST]) + bytes(20) + pack(body)
    if error is None:
        assert decode(data) == Request(bytes(20), Ping(0))
    else:
        with pytest.raises(DecodeError, match=error):
            decode(data)


def test_unknown_datagram_type_is_rejected() -> None:
    with pytest.raises(DecodeError, match="unknown datagram type 0x02"):
        decode(b"\x02" + bytes(20) + pack(["ping", [bytes(20)]]))


# ---- what crosses the internet whole ----------------------------------------------


def test_every_message_at_its_largest_fits_1200_bytes_on_the_wire() -> None:
    """WIRE_DATAGRAM: with IPv4 contacts every request and reply fits 1,200
    bytes with its IP and UDP headers, but those carrying a shared value and
    anti-entropy key lists (both bounded by MAX_DATAGRAM)."""
    host, big = "255.255.255.255", (1 << 160) - 1
    near = [Contact(big - i, host, 65535, True) for i in range(MAX_CONTACTS_PER_REPLY)]
    value = "x" * (MAX_VALUE_BYTES - 3)  # str 16: packs to exactly MAX_VALUE_BYTES
    assert len(pack(value)) == MAX_VALUE_BYTES
    identity = Identity.generate(lambda n: bytes(range(n)))
    # the longest IPv6 text (39 characters), as many as a record may carry
    addresses = [(f"2001:db8:{'ffff:' * 5}fff{i}", 65535) for i in range(MAX_RECORD_ADDRESSES)]
    record = records.to_wire(records.sign_record(identity, addresses, MAX_WIRE_INT, 2.0**40))
    key, token, pad = bytes([255]) * 20, bytes(8), bytes(MAX_PROOF_BYTES)
    largest = [
        Ping(big, pad),
        Store(big, key, value, 1e9, token),
        FindNode(big, big, pad),
        FindValue(big, key, pad),
        RingQuery(big, token, pad),
        FindSuccessor(big, big, pad),
        Digest(big, [token] * AE_BUCKETS, token),
        KeyList(big, list(range(AE_BUCKETS)), [(key, token)] * 30, token),  # (35 would fit)
        Put(big, key, Kind.PEER, record, 1e9, token),
        PingReply(big, token),
        NodesReply(near[:K], True, token),
        ValueReply(value, True, 1e9, token, Kind.PLAIN),
        ValueReply(record, True, 1e9, token, Kind.PEER),
        RingReply(near[0], near[:SUCCESSORS], token),
        SuccessorReply(False, near[0]),
        BucketList(list(range(AE_BUCKETS))),
        PutReply("r" * 200),
    ]
    sizes = {type(m).__name__: wire_bytes(len(encode(bytes(20), m)), host) for m in largest}
    assert max(sizes.values()) <= WIRE_DATAGRAM, sizes
