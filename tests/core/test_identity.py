"""kadnode.core.identity: ids derived from ed25519 keys, signing and verifying."""

from __future__ import annotations

import hashlib
import random

import pytest

from kadnode.core.identity import (
    PUBLIC_KEY_BYTES,
    SEED_BYTES,
    SIGNATURE_BYTES,
    Identity,
    node_id_for,
    verify,
)
from kadnode.core.ids import ID_MAX
from kadnode.errors import LocalProtocolError

# RFC 8032 section 7.1, TEST 1: a fixed seed, its public key, and its signature
# of the empty message.
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def identity(seed: int) -> Identity:
    return Identity.generate(random.Random(seed).randbytes)


def test_from_seed_matches_rfc_8032():
    me = Identity.from_seed(RFC_SEED)
    assert me.public_key == RFC_PUBLIC
    assert me.sign(b"") == RFC_SIGNATURE
    assert verify(RFC_PUBLIC, RFC_SIGNATURE, b"")


def test_node_id_is_sha1_of_the_raw_public_key():
    me = Identity.from_seed(RFC_SEED)
    expected = int.from_bytes(hashlib.sha1(RFC_PUBLIC).digest(), "big")
    assert node_id_for(RFC_PUBLIC) == expected
    assert me.node_id == expected
    assert 0 <= me.node_id <= ID_MAX


def test_node_id_for_refuses_a_key_of_the_wrong_size():
    with pytest.raises(LocalProtocolError):
        node_id_for(RFC_PUBLIC[:31])


def test_generate_is_deterministic_given_its_rng():
    assert identity(1) == identity(1)
    assert len(identity(1).seed) == SEED_BYTES
    assert len(identity(1).public_key) == PUBLIC_KEY_BYTES
    assert Identity.from_seed(identity(1).seed) == identity(1)


def test_different_keys_have_different_ids():
    ids = {identity(seed).node_id for seed in range(50)}
    assert len(ids) == 50


def test_sign_and_verify():
    me = identity(2)
    signature = me.sign(b"hello")
    assert len(signature) == SIGNATURE_BYTES
    assert verify(me.public_key, signature, b"hello")
    assert not verify(me.public_key, signature, b"hellO")
    assert not verify(identity(3).public_key, signature, b"hello")
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify(me.public_key, tampered, b"hello")


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        (RFC_PUBLIC[:31], RFC_SIGNATURE),  # short key
        (RFC_PUBLIC, RFC_SIGNATURE[:63]),  # short signature
        (RFC_PUBLIC, b""),
        (bytearray(RFC_PUBLIC), RFC_SIGNATURE),  # not bytes
        (RFC_PUBLIC, "x" * 64),
        (b"\xff" * 32, RFC_SIGNATURE),  # not a point on the curve
    ],
)
def test_verify_never_raises_on_garbage(public_key, signature):
    assert verify(public_key, signature, b"") is False


def test_seed_is_kept_out_of_repr():
    me = Identity.from_seed(RFC_SEED)
    assert RFC_SEED.hex() not in repr(me)
    assert repr(RFC_SEED) not in repr(me)


def test_a_seed_of_the_wrong_size_or_a_foreign_public_key_is_refused():
    with pytest.raises(LocalProtocolError):
        Identity.from_seed(RFC_SEED[:31])
    with pytest.raises(LocalProtocolError):
        Identity.generate(lambda n: b"\x00" * (n - 1))
    with pytest.raises(LocalProtocolError, match="does not belong"):
        Identity(RFC_SEED, identity(4).public_key)
