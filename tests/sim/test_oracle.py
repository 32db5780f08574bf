"""kadnode.sim.oracle: the fast truths agree with brute force."""

from __future__ import annotations

import random

from kadnode.core.ids import ID_BITS
from kadnode.sim.oracle import ring_successor, xor_closest, xor_closest_sorted


def test_xor_closest_sorted_is_xor_closest():
    rng = random.Random(5)
    ids = sorted(rng.getrandbits(ID_BITS) for _ in range(500))
    for _ in range(200):
        target = rng.choice([rng.getrandbits(ID_BITS), rng.choice(ids)])
        exclude = rng.choice([None, target, rng.choice(ids)])
        for n in (1, 20):
            assert xor_closest_sorted(ids, target, n, exclude) == xor_closest(
                ids, target, n, exclude
            ), (target, exclude, n)


def test_ring_successor_wraps_around():
    ids = [10, 20, 30]
    assert [ring_successor(ids, key) for key in (5, 10, 11, 30, 31)] == [10, 10, 20, 30, 10]
