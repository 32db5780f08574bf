"""The adversarial suite (chaos/attacks/) in small sizes, asserting issue 13's targets.

Each test runs one attack against real kadnode nodes on loopback, bounded to
seconds, and asserts what issue 13 says must hold. Each was first written
against the undefended node, marked as an expected failure, and lost its
mark the day its defense made it hold.

The full-size runs and their figures: ``python -m chaos.attacks all`` and
docs/security.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from chaos.attacks import amplify, arguments, exhaust, flood, forge, shared, sybil, work  # noqa: E402
from chaos.attacks.harness import Result  # noqa: E402


def rows(result: Result) -> list[dict]:
    return result.as_json()["table"]


async def test_amplify_no_request_returns_more_than_3x_to_a_forged_source():
    args = arguments("amplify", window=2.0, values=40, peers=24, gap=1.0)
    result = await amplify.run(args)
    assert result.held is not None, result.render()
    ratios = [(r["request"], r["x"]) for r in rows(result)]
    assert len(ratios) == 19  # every request type was sent, with known and new ids
    assert result.figures["max amplification"] <= amplify.LIMIT, result.render()


async def test_flood_is_answered_at_most_at_the_configured_rate_and_honest_requests_pass():
    args = arguments("flood", rate=3000, seconds=3.0, honest=5)
    result = await flood.run(args)
    assert result.held is not None, result.render()
    limit = result.figures["configured per-IP rate"]
    assert limit is not None, "no per-IP request rate is configured"
    assert result.figures["flood answered/s"] <= limit * (1 + flood.EDGE), result.render()
    assert float(result.figures["honest success"].rstrip("%")) >= 99.0, result.render()
    assert result.figures["answered/s at its rate"] >= 0.95 * limit, result.render()


async def test_sybils_from_one_subnet_hold_at_most_10_per_table_2_per_bucket():
    args = arguments("sybil", honest=20, sybils=100, near=10, lookups=1, fresh=3)
    result = await sybil.run(args)
    assert result.figures["max sybils per table"] <= 10, result.render()
    assert result.figures["max per bucket"] <= 2, result.render()
    assert float(result.figures["gets found"].rstrip("%")) >= 99.0, result.render()


@pytest.mark.skipif(os.geteuid() != 0, reason="forging a source address needs a raw socket (root)")
async def test_forged_writes_are_all_refused_and_the_publishers_value_survives():
    result = await forge.run(arguments("forge", nodes=6))
    assert result.figures["forged writes accepted"] == 0, result.render()
    assert result.figures["reader's plain get"] == "genuine", result.render()
    assert result.figures["publisher's own copy after overwrites"] == "genuine", result.render()


async def test_one_ip_filling_the_store_leaves_room_for_honest_writes():
    args = arguments("exhaust", values=3000, capacity=2000, honest=10, window=64)
    result = await exhaust.run(args)
    assert result.figures["honest writes held"] == "10/10", result.render()
    assert result.figures["attacker share of the store"] <= exhaust.MAX_SHARE, result.render()


async def test_no_crafted_datagram_costs_more_than_2x_a_find_node():
    args = arguments("work", values=3000, writers=30, requests=1000, crafted=5)
    result = await work.run(args)
    assert len(result.rows) == 7, result.render()  # three find_node rows, four crafted kinds
    assert result.figures["worst ratio"] <= work.LIMIT, result.render()


async def test_shared_values_cannot_be_pinned_made_unreadable_or_squat_a_record():
    result = await shared.run(arguments("shared", writes=2))
    assert result.figures == {
        "pinning": "held",
        "full clock": "held",
        "squatting": "held",
    }, result.render()
