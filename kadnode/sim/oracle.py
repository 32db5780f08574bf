"""What the answers should be, computed from outside the network. Pure, no I/O.

Brute-force truths the scenarios check the nodes against (the true XOR
nearest ids, Chord's true successor) and the models they are measured
beside (Kademlia's hop estimate and bounds, the median Weibull session).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Sequence

from kadnode.core.ids import ID_BITS

# ---- truths -------------------------------------------------------------------------


def xor_closest(ids: Sequence[int], target: int, n: int, exclude: int | None = None) -> list[int]:
    """The n ids nearest ``target`` by XOR (brute force: the ground truth)."""
    if exclude is None:
        return heapq.nsmallest(n, ids, key=lambda i: i ^ target)
    return heapq.nsmallest(n, (i for i in ids if i != exclude), key=lambda i: i ^ target)


def xor_closest_sorted(
    sorted_ids: Sequence[int], target: int, n: int, exclude: int | None = None
) -> list[int]:
    """:func:`xor_closest` over sorted ids, without scanning them all.

    Ids within XOR distance 2**m of ``target`` form an aligned block, a
    contiguous run of the sorted ids; the n nearest lie in the smallest
    block holding n of them (plus ``exclude``).
    """
    want = n + (exclude is not None)
    lo_bits, hi_bits = 0, ID_BITS
    while lo_bits < hi_bits:  # the smallest m whose block holds enough
        m = (lo_bits + hi_bits) // 2
        start = (target >> m) << m
        count = bisect.bisect_left(sorted_ids, start + (1 << m)) - bisect.bisect_left(
            sorted_ids, start
        )
        if count >= want:
            hi_bits = m
        else:
            lo_bits = m + 1
    start = (target >> lo_bits) << lo_bits
    block = sorted_ids[
        bisect.bisect_left(sorted_ids, start) : bisect.bisect_left(
            sorted_ids, start + (1 << lo_bits)
        )
    ]
    return xor_closest(block, target, n, exclude)


def ring_successor(sorted_ids: Sequence[int], key: int) -> int:
    """Chord's successor: the first id at or clockwise after ``key``."""
    at = bisect.bisect_left(sorted_ids, key)
    return sorted_ids[at % len(sorted_ids)]


# ---- models -------------------------------------------------------------------------


def hop_model(n: float, k: int, c: float) -> float:
    """Kademlia's estimate log_{2^b}(N/k) + c with 2^b = k.

    A reply brings the k contacts the responder knows in the target's
    bucket, k random nodes of that subtree; the nearest of them shares about
    log2 k more bits with the target, so each hop resolves b = log2 k bits
    (the paper's accelerated lookups, section 4.2, with k-buckets playing
    the part of 2^b-wide digits). Below k nodes everyone knows everyone.
    """
    return max(0.0, math.log(max(n / k, 1.0), k)) + c


def one_bit_bound(n: int, k: int) -> float:
    """The one-bit-per-hop bound (b = 1), log2(N/k) + 1: the hops report's
    "bound" column, beside the fitted model."""
    return math.log2(max(n / k, 1.0)) + 1


def hop_bound(n: int, k: int) -> float:
    """What no lookup may exceed: :func:`one_bit_bound` plus one hop of
    slack, log2(N/k) + 2."""
    return one_bit_bound(n, k) + 1


def weibull_median(shape: float, scale: float) -> float:
    """The median of a Weibull(shape, scale) session length: scale (ln 2)^(1/shape)."""
    return scale * math.log(2) ** (1 / shape)
