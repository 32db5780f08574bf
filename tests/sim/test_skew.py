"""The ``skew`` scenario, small: a share of the nodes booted with wrong clocks.

The record lifetime is cut to 10 minutes so that a skew past it takes an
hour of simulated time, not a day; the rules are those of the 6 h default.
Every assertion message carries the seed, so a failure can be replayed.
"""

from __future__ import annotations

import os

import pytest

from kadnode.config import Config
from kadnode.core import records
from kadnode.sim.scenarios.skew import scenario_skew

SEED = int(os.environ.get("KADNODE_SIM_SEED", "7"))
LIFETIME = 600.0
MODEST, PAST = 300.0, 900.0  # S within half the lifetime, and past it


@pytest.fixture(scope="module")
def report():
    config = Config(register_lifetime=LIFETIME)
    return scenario_skew(48, SEED, skews=(MODEST, PAST), config=config)


def share(fraction: str) -> tuple[int, int]:
    x, y = fraction.split("/")
    return int(x), int(y)


def test_a_modest_skew_breaks_nothing(report):
    row = report.rows[0]
    assert row["max_skew_s"] == MODEST and row["skewed"] == "24 of 48", f"seed {SEED}"
    low, high = row["offset_s"]
    assert -MODEST <= low < 0 < high <= MODEST, f"seed {SEED}: {row}"  # both ways
    for key in ("records_found", "expiry_found_before", "peer_records_verified"):
        found, tried = share(row[key])
        assert tried > 0 and found == tried, f"seed {SEED}: {key} {row[key]}"
    assert row["peer_records_refused"] == {}, f"seed {SEED}"


def test_past_the_record_lifetime_readers_ahead_of_the_signer_refuse_it_as_expired(report):
    row = report.rows[1]
    assert row["max_skew_s"] == PAST, f"seed {SEED}"
    verified, tried = share(row["peer_records_verified"])
    refused = row["peer_records_refused"]
    assert 0 < verified < tried and refused.get(records.EXPIRED, 0) > 0, f"seed {SEED}: {row}"
    assert sum(refused.values()) == tried - verified, f"seed {SEED}: {row}"
    # Exactly the readers whose clock is a lifetime ahead of the signer's
    # refuse (give or take the seconds between signing and reading).
    pairs = report.series["pairs"][str(PAST)]
    assert all(ahead > LIFETIME - 60 for ahead, ok in pairs if not ok), f"seed {SEED}"
    assert all(ahead < LIFETIME for ahead, ok in pairs if ok), f"seed {SEED}"
    # Plain values carry a relative TTL: the skew does not touch them.
    found, tried = share(row["records_found"])
    assert found == tried, f"seed {SEED}: {row['records_found']}"
    assert not row["ok"] and "S = 900 s" in " ".join(report.failures)


def test_no_copy_of_a_value_lives_past_its_ttl_plus_the_skew(report):
    # A put with a ttl is never republished, its publisher's copy included
    # (kadnode.core.node.NodeCore.put): no copy is left to spread past it.
    for detail in report.extra[0][2]:
        assert detail["held_after"] == 0, f"seed {SEED}: {detail}"
