"""kadnode.core.records: signed peer records, their wire form, and when a replica believes one."""

from __future__ import annotations

import contextlib
import dataclasses
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadnode.config import MAX_DATAGRAM, MAX_RECORD_ADDRESSES, MAX_RECORD_LIFETIME
from kadnode.core import records
from kadnode.core.identity import Identity
from kadnode.core.records import (
    BAD_SIGNATURE,
    DOMAIN,
    EXPIRED,
    ID_NOT_FROM_KEY,
    MAX_SEQ,
    OLDER_SEQ,
    OTHER_ID,
    TOO_FAR_AHEAD,
    UNSIGNED,
    PeerRecord,
    RecordRejected,
    accept,
    decode_record,
    deregistration,
    encode_record,
    from_wire,
    newer,
    sign_record,
    signed_bytes,
    to_wire,
    verify_record,
)
from kadnode.core.wire import pack
from kadnode.errors import DecodeError, LocalProtocolError, RemoteProtocolError

NOW = 1_700_000_000.0
HOUR = 3600.0
ADDRESSES = (("192.0.2.7", 4000), ("2001:db8::7", 4000))


def identity(seed: int) -> Identity:
    return Identity.generate(random.Random(seed).randbytes)


ME = identity(1)
OTHER = identity(2)


def record(seq: int = 5, expires: float = NOW + HOUR, who: Identity = ME, addresses=ADDRESSES):
    return sign_record(who, addresses, seq, expires)


def rejected(reason: str):
    return pytest.raises(RecordRejected, match=f"^peer record rejected: {reason}$")


# ---- signing and the wire form ------------------------------------------------


def test_a_signed_record_verifies():
    rec = record()
    assert rec.node_id == ME.node_id
    assert rec.public_key == ME.public_key
    assert rec.addresses == ADDRESSES
    verify_record(rec, NOW)
    verify_record(rec, NOW, key_id=ME.node_id)


def test_the_signature_covers_the_domain_tag():
    rec = record()
    assert ME.sign(signed_bytes(ME.public_key, ADDRESSES, 5, NOW + HOUR)) == rec.signature
    assert signed_bytes(ME.public_key, ADDRESSES, 5, NOW + HOUR) == pack(
        [DOMAIN, ME.public_key, [list(a) for a in ADDRESSES], 5, NOW + HOUR]
    )


def test_round_trip_through_wire_msgpack_and_back():
    rec = record()
    assert from_wire(to_wire(rec)) == rec
    on_the_wire = msgpack.unpackb(pack(to_wire(rec)), raw=False)
    assert from_wire(on_the_wire) == rec
    assert decode_record(encode_record(rec)) == rec
    verify_record(from_wire(on_the_wire), NOW)


def test_an_integer_expiry_is_signed_as_a_float():
    rec = sign_record(ME, ADDRESSES, 1, int(NOW + HOUR))
    assert type(rec.expires) is float
    assert decode_record(encode_record(rec)) == rec


def test_the_largest_record_fits_a_datagram_many_times_over():
    hosts = [f"2001:db8:ffff:ffff:ffff:ffff:ffff:fff{i}" for i in range(MAX_RECORD_ADDRESSES)]
    rec = sign_record(ME, [(h, 65535) for h in hosts], MAX_SEQ, NOW + HOUR)
    assert len(encode_record(rec)) < 600 < MAX_DATAGRAM


@pytest.mark.parametrize(
    "addresses",
    [
        [("192.0.2.1", 1)] * 2,  # twice the same
        [(f"192.0.2.{i}", 1) for i in range(MAX_RECORD_ADDRESSES + 1)],  # too many
        [("example.com", 80)],  # a name, not an IP literal
        [("2001:DB8::1", 80)],  # not the canonical spelling
        [("192.0.2.1", 0)],
        [("192.0.2.1", 65536)],
        [("192.0.2.1", True)],
        [("0.0.0.0", 80)],  # unspecified
        [("224.0.0.1", 80)],  # multicast
        [("fe80::1%eth0", 80)],  # zone index
        [("192.0.2.1",)],
    ],
)
def test_sign_record_refuses_bad_addresses(addresses):
    with pytest.raises(LocalProtocolError):
        sign_record(ME, addresses, 1, NOW + HOUR)


@pytest.mark.parametrize(
    ("seq", "expires"), [(-1, NOW), (MAX_SEQ + 1, NOW), (True, NOW), (1, float("nan")), (1, "x")]
)
def test_sign_record_refuses_bad_seq_or_expiry(seq, expires):
    with pytest.raises(LocalProtocolError):
        sign_record(ME, ADDRESSES, seq, expires)


def wire(**changes) -> list:
    """A valid record's wire form with some fields replaced."""
    fields = dict(
        zip(
            ["node_id", "public_key", "addresses", "seq", "expires", "signature"],
            to_wire(record()),
            strict=True,
        )
    )
    fields.update(changes)
    return list(fields.values())


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {},
        wire()[:5],
        [*wire(), b""],
        wire(node_id=b"\x00" * 19),
        wire(node_id=1),
        wire(public_key=b"\x00" * 33),
        wire(public_key="k" * 32),
        wire(signature=b"\x00" * 63),
        wire(signature=b""),
        wire(addresses=[["192.0.2.1", 80, 1]]),
        wire(addresses=[["192.0.2.1", 80]] * 2),
        wire(addresses=[["x" * 65, 80]]),
        wire(addresses=[[b"192.0.2.1", 80]]),
        wire(addresses=[["192.0.2.1", 80.0]]),
        wire(addresses=[["192.0.2.1", 0]]),
        wire(seq=-1),
        wire(seq=2**63),
        wire(seq=1.0),
        wire(seq=False),
        wire(expires=int(NOW + HOUR)),
        wire(expires=float("inf")),
        wire(expires=float("nan")),
    ],
)
def test_from_wire_refuses_bad_shapes(obj):
    with pytest.raises(DecodeError):
        from_wire(obj)


def test_decode_record_refuses_a_non_canonical_encoding():
    data = encode_record(record(seq=200))  # 200 packs as uint8: 0xcc 0xc8
    at = data.index(b"\xcc\xc8")
    longer = data[:at] + b"\xcd\x00\xc8" + data[at + 2 :]  # the same 200 as uint16
    assert from_wire(msgpack.unpackb(longer, raw=False)) == record(seq=200)
    with pytest.raises(DecodeError, match="canonical"):
        decode_record(longer)
    with pytest.raises(DecodeError):
        decode_record(encode_record(record()) + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_nothing_but_decode_error(data):
    with contextlib.suppress(DecodeError):
        decode_record(data)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=7),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_arbitrary_objects_raise_nothing_but_decode_error(obj):
    with contextlib.suppress(DecodeError):
        from_wire(obj)


# ---- verify_record: every reason, exactly ------------------------------------


def test_unsigned():
    with rejected(UNSIGNED) as caught:
        verify_record(dataclasses.replace(record(), signature=b""), NOW)
    assert caught.value.reason == "unsigned"
    assert isinstance(caught.value, RemoteProtocolError)


def test_bad_signature():
    rec = record()
    with rejected(BAD_SIGNATURE) as caught:
        verify_record(dataclasses.replace(rec, seq=rec.seq + 1), NOW)
    assert caught.value.reason == "bad signature"
    with rejected(BAD_SIGNATURE):  # another key's signature
        verify_record(dataclasses.replace(rec, signature=record(who=OTHER).signature), NOW)
    with rejected(BAD_SIGNATURE):  # addresses moved by someone else
        verify_record(dataclasses.replace(rec, addresses=(("198.51.100.1", 4000),)), NOW)


def test_id_does_not_derive_from_the_key():
    rec = record()
    with rejected(ID_NOT_FROM_KEY) as caught:
        verify_record(dataclasses.replace(rec, node_id=rec.node_id ^ 1), NOW)
    assert caught.value.reason == "id does not derive from the key"
    # Someone else's validly signed record claiming my id:
    with rejected(ID_NOT_FROM_KEY):
        verify_record(dataclasses.replace(record(who=OTHER), node_id=ME.node_id), NOW)


def test_stored_under_another_id():
    with rejected(OTHER_ID) as caught:
        verify_record(record(), NOW, key_id=OTHER.node_id)
    assert caught.value.reason == "stored under another id"


def test_expired():
    rec = record(expires=NOW + HOUR)
    verify_record(rec, NOW + HOUR - 0.001)
    with rejected(EXPIRED) as caught:
        verify_record(rec, NOW + HOUR)  # expires <= now
    assert caught.value.reason == "expired"


def test_expires_too_far_ahead():
    verify_record(record(expires=NOW + MAX_RECORD_LIFETIME), NOW)
    with rejected(TOO_FAR_AHEAD) as caught:
        verify_record(record(expires=NOW + MAX_RECORD_LIFETIME + 1), NOW)
    assert caught.value.reason == "expires too far ahead"


def test_a_forged_record_is_refused_with_an_exact_one_line_message():
    with pytest.raises(RecordRejected) as caught:
        verify_record(dataclasses.replace(record(), seq=99), NOW)
    assert str(caught.value) == "peer record rejected: bad signature"


# ---- newer / accept: the highest valid seq wins --------------------------------


def test_newer_compares_sequence_numbers():
    assert newer(None, record(seq=0))
    assert newer(record(seq=1), record(seq=2))
    assert not newer(record(seq=2), record(seq=2))
    assert not newer(record(seq=2), record(seq=1))


def test_accept_stores_a_first_record():
    rec = record()
    assert accept(None, rec, NOW) is rec


def test_a_higher_seq_replaces():
    held = record(seq=1)
    moved = record(seq=2, addresses=(("198.51.100.9", 4001),))
    assert accept(held, moved, NOW) is moved


def test_a_lower_seq_is_refused():
    with rejected(OLDER_SEQ) as caught:
        accept(record(seq=2), record(seq=1), NOW)
    assert caught.value.reason == "older sequence than the one held"


def test_an_equal_seq_keeps_the_held_record():
    held = record(seq=3)
    identical = record(seq=3)
    assert identical == held and identical is not held
    assert accept(held, identical, NOW) is held
    # Same seq, different content (the owner signed twice): the held one stays.
    other = record(seq=3, addresses=(("198.51.100.9", 4001),))
    assert accept(held, other, NOW) is held


def test_accept_verifies_before_replacing():
    held = record(seq=1)
    forged = dataclasses.replace(record(seq=2), addresses=(("198.51.100.66", 6666),))
    with rejected(BAD_SIGNATURE):
        accept(held, forged, NOW)
    with rejected(EXPIRED):
        accept(held, record(seq=2, expires=NOW), NOW)


def test_accept_refuses_a_record_for_another_id_than_the_held_one():
    with rejected(OTHER_ID):
        accept(record(seq=1), record(seq=2, who=OTHER), NOW)
    with rejected(OTHER_ID):
        accept(None, record(seq=2, who=OTHER), NOW, key_id=ME.node_id)


# ---- THE property: no single-byte change of a signed record survives ----------


def random_record(rng: random.Random) -> PeerRecord:
    who = Identity.generate(rng.randbytes)
    addresses = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            host = ".".join(str(rng.randint(1, 223)) for _ in range(4))
        else:
            host = f"2001:db8::{rng.randint(1, 0xFFFF):x}"
        addresses.append((host, rng.randint(1, 65535)))
    seq = rng.choice([0, rng.randint(1, 127), rng.randint(128, 2**40), MAX_SEQ])
    return sign_record(who, dict.fromkeys(addresses), seq, NOW + rng.uniform(1, 48 * HOUR))


def replacements(original: int, rng: random.Random) -> set[int]:
    # ^0x1C swaps msgpack's uint8..64 type bytes (0xcc..0xcf) for int8..64
    # (0xd0..0xd3): the same number spelled another way.
    values = {original ^ 0x01, original ^ 0x80, original ^ 0x1C, (original + 1) % 256, 0x00, 0xFF}
    values.add(rng.randrange(256))
    values.discard(original)
    return values


@pytest.mark.parametrize("seed", range(4))
def test_every_single_byte_mutation_is_rejected(seed):
    rng = random.Random(seed)
    rec = random_record(rng)
    data = encode_record(rec)
    verify_record(decode_record(data), NOW)
    tried = 0
    for position in range(len(data)):
        for value in replacements(data[position], rng):
            mutated = data[:position] + bytes([value]) + data[position + 1 :]
            tried += 1
            with pytest.raises((DecodeError, RecordRejected)):
                verify_record(decode_record(mutated), NOW)
    assert tried > 5 * 150


@pytest.mark.parametrize("seed", range(4))
def test_a_mutation_that_parses_through_from_wire_is_rejected_or_the_same_record(seed):
    """Embedded in a larger message, a record is parsed from an object, not bytes.

    msgpack spells some integers two ways (a port as uint16 or int16), so a
    one-byte change can decode to the very record that was signed; that is no
    forgery. Anything else must be refused.
    """
    rng = random.Random(seed)
    rec = random_record(rng)
    data = encode_record(rec)
    for position in range(len(data)):
        for value in replacements(data[position], rng):
            mutated = data[:position] + bytes([value]) + data[position + 1 :]
            try:
                obj = msgpack.unpackb(mutated, raw=False)
            except Exception:  # msgpack itself refused the bytes (several exception types)
                continue
            try:
                parsed = from_wire(obj)
                verify_record(parsed, NOW)
            except (DecodeError, RecordRejected):
                continue
            assert parsed == rec, f"byte {position} -> {value:#04x} produced {parsed}"


def test_a_deregistration_is_a_record_with_no_addresses_that_beats_older_ones():
    held = record(seq=5)
    gone = deregistration(ME, 6, NOW + HOUR)
    assert gone.deleted and not held.deleted
    assert from_wire(to_wire(gone)) == gone
    assert accept(held, gone, NOW) is gone
    # and the old record, replayed, cannot bring the node back
    with pytest.raises(RecordRejected, match="older sequence"):
        accept(gone, held, NOW)


def test_a_forged_deregistration_is_refused():
    forged = deregistration(OTHER, 6, NOW + HOUR)
    wrong = PeerRecord(ME.node_id, ME.public_key, (), 6, NOW + HOUR, forged.signature)
    with pytest.raises(RecordRejected, match="bad signature"):
        accept(record(seq=5), wrong, NOW)


def test_refusals_are_counted_and_an_expiry_refusal_points_at_the_clocks():
    assert records.refusals([]) == ""
    said = records.refusals([records.EXPIRED, records.OLDER_SEQ, records.EXPIRED])
    assert said.startswith(f"refused by 2 {records.EXPIRED}, 1 {records.OLDER_SEQ} (")
    assert "clock" in said
    assert "clock" not in records.refusals([records.OLDER_SEQ])
