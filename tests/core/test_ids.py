"""kadnode.core.ids: the XOR metric laws, ring intervals and id encodings, by hypothesis."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kademlia.utils import digest as bmuller_digest

from kadnode.core.ids import (
    ID_BITS,
    ID_BYTES,
    ID_MAX,
    ID_SPACE,
    distance,
    from_bytes,
    in_half_open,
    key_digest,
    key_id,
    log_distance,
    parse_hex,
    random_id_in_bucket,
    ring_distance,
    to_bytes,
    to_hex,
)
from kadnode.errors import LocalProtocolError

PROPERTY = settings(max_examples=200, deadline=None)

# Uniform 160-bit ids rarely share long prefixes or hit the ends of the
# space, so mix in the edges and ids that differ from each other only low down.
ids = st.one_of(
    st.integers(0, ID_MAX),
    st.sampled_from([0, 1, ID_MAX, ID_MAX - 1, 1 << (ID_BITS - 1)]),
    st.integers(0, 255),
)


# ---- the XOR metric (Kademlia paper, section 2.1) ----------------------------


@PROPERTY
@given(ids)
def test_distance_to_itself_is_zero(x: int) -> None:
    assert distance(x, x) == 0


@PROPERTY
@given(ids, ids)
def test_distance_is_zero_only_between_equal_ids(x: int, y: int) -> None:
    assert (distance(x, y) == 0) == (x == y)


@PROPERTY
@given(ids, ids)
def test_distance_is_symmetric(x: int, y: int) -> None:
    assert distance(x, y) == distance(y, x)


@PROPERTY
@given(ids, ids, ids)
def test_distance_obeys_the_triangle_inequality(a: int, b: int, c: int) -> None:
    assert distance(a, c) <= distance(a, b) + distance(b, c)


@PROPERTY
@given(ids, ids)
def test_distance_is_unidirectional(x: int, delta: int) -> None:
    # Exactly one y lies at a given distance from x: y = x ^ delta.
    y = x ^ delta
    assert distance(x, y) == delta
    assert 0 <= y <= ID_MAX


def test_distance_is_unidirectional_exhaustively_on_a_small_space() -> None:
    for x in range(64):
        for delta in range(64):
            assert [y for y in range(64) if distance(x, y) == delta] == [x ^ delta]


@PROPERTY
@given(ids, ids)
def test_log_distance_is_the_bucket_index(a: int, b: int) -> None:
    i = log_distance(a, b)
    if a == b:
        assert i == -1
    else:
        assert 0 <= i < ID_BITS
        assert 2**i <= distance(a, b) < 2 ** (i + 1)


def test_log_distance_exact_values() -> None:
    assert log_distance(0, 1) == 0
    assert log_distance(0b1000, 0b1111) == 2
    assert log_distance(0, ID_MAX) == ID_BITS - 1
    assert log_distance(7, 7) == -1


# ---- the ring (Chord view) ----------------------------------------------------


@PROPERTY
@given(ids, ids)
def test_ring_distance_there_and_back_is_one_turn(a: int, b: int) -> None:
    there, back = ring_distance(a, b), ring_distance(b, a)
    assert 0 <= there < ID_SPACE
    assert (there + back) == (0 if a == b else ID_SPACE)


@PROPERTY
@given(ids, ids)
def test_ring_distance_walks_clockwise_to_the_target(a: int, b: int) -> None:
    assert (a + ring_distance(a, b)) % ID_SPACE == b


@PROPERTY
@given(ids, ids)
def test_half_open_interval_contains_its_end_but_not_its_start(a: int, b: int) -> None:
    assert in_half_open(b, a, b)
    if a != b:
        assert not in_half_open(a, a, b)


@PROPERTY
@given(ids, ids)
def test_interval_with_equal_ends_is_the_whole_ring(x: int, a: int) -> None:
    assert in_half_open(x, a, a)


@PROPERTY
@given(ids, ids, ids)
def test_two_intervals_between_distinct_points_partition_the_ring(x: int, a: int, b: int) -> None:
    if a != b:
        assert in_half_open(x, a, b) != in_half_open(x, b, a)


def test_half_open_interval_wraps_around_zero() -> None:
    assert in_half_open(0, ID_MAX, 1)
    assert in_half_open(1, ID_MAX, 1)
    assert not in_half_open(ID_MAX, ID_MAX, 1)
    assert not in_half_open(2, ID_MAX, 1)
    assert in_half_open(ID_MAX, ID_MAX - 5, 3)
    assert not in_half_open(ID_MAX // 2, ID_MAX - 5, 3)


def test_half_open_interval_without_wrap() -> None:
    assert [x for x in range(10) if in_half_open(x, 3, 6)] == [4, 5, 6]


# ---- encodings ----------------------------------------------------------------


@PROPERTY
@given(ids)
def test_bytes_round_trip(x: int) -> None:
    raw = to_bytes(x)
    assert len(raw) == ID_BYTES
    assert from_bytes(raw) == x


@PROPERTY
@given(st.binary(min_size=ID_BYTES, max_size=ID_BYTES))
def test_bytes_round_trip_from_the_wire_side(raw: bytes) -> None:
    assert to_bytes(from_bytes(raw)) == raw


def test_ids_are_big_endian_on_the_wire() -> None:
    assert to_bytes(1) == bytes(19) + b"\x01"
    assert to_bytes(1 << (ID_BITS - 8)) == b"\x01" + bytes(19)


@pytest.mark.parametrize("size", [0, 19, 21, 32])
def test_from_bytes_rejects_other_lengths(size: int) -> None:
    with pytest.raises(LocalProtocolError, match=f"got {size}"):
        from_bytes(bytes(size))


@PROPERTY
@given(ids)
def test_hex_round_trip(x: int) -> None:
    text = to_hex(x)
    assert len(text) == 40
    assert text == text.lower()
    assert parse_hex(text) == x


@PROPERTY
@given(ids, st.sampled_from(["", "0x", "0X"]), st.booleans(), st.sampled_from(["", " ", "\t\n"]))
def test_parse_hex_accepts_what_a_user_types(x: int, prefix: str, upper: bool, pad: str) -> None:
    text = to_hex(x).upper() if upper else to_hex(x)
    assert parse_hex(f"{pad}{prefix}{text}{pad}") == x


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0x",
        "ab" * 19,  # 38 digits
        "ab" * 21,  # 42 digits
        "g" + "0" * 39,
        "0" * 39 + "\n",
        "+" + "0" * 39,
        "-" + "0" * 39,
        "0_" + "0" * 38,  # int(..., 16) would take the underscore
        "0x0x" + "0" * 38,
        "0" * 20 + " " + "0" * 19,
        "\uff10" * 40,  # fullwidth digits: str.isdigit, but not hex
    ],
)
def test_parse_hex_rejects_bad_input_in_one_line(text: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        parse_hex(text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("not a 160-bit id")


@PROPERTY
@given(st.text(max_size=50))
def test_parse_hex_on_any_text_returns_an_id_or_one_clear_error(text: str) -> None:
    try:
        value = parse_hex(text)
    except LocalProtocolError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 <= value <= ID_MAX
        assert parse_hex(to_hex(value)) == value


# ---- keys ----------------------------------------------------------------------


@PROPERTY
@given(st.text())
def test_key_digest_of_text_is_sha1_of_its_utf8_bytes(key: str) -> None:
    assert key_digest(key) == hashlib.sha1(key.encode()).digest()
    assert key_digest(key) == bmuller_digest(key)


@PROPERTY
@given(st.binary())
def test_key_digest_of_bytes_is_sha1_of_the_bytes(key: bytes) -> None:
    assert key_digest(key) == hashlib.sha1(key).digest() == bmuller_digest(key)


def test_key_digest_known_vector() -> None:
    assert key_digest("foo").hex() == "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"
    assert key_id("foo") == 0x0BEEC7B5EA3F0FDBC95D0DD47F3C5BC275DA8A33


# ---- bucket refresh targets --------------------------------------------------------


@PROPERTY
@given(ids, st.integers(-1, ID_BITS - 1), st.randoms(use_true_random=False))
def test_random_id_in_bucket_lands_in_that_bucket(
    owner: int, index: int, rng: random.Random
) -> None:
    node_id = random_id_in_bucket(owner, index, rng)
    assert 0 <= node_id <= ID_MAX
    assert log_distance(owner, node_id) == index


def test_random_id_in_bucket_covers_the_whole_bucket() -> None:
    rng = random.Random(7)
    owner = 0b1010_0000
    seen = {random_id_in_bucket(owner, 3, rng) for _ in range(400)}
    assert seen == {owner ^ d for d in range(8, 16)}
