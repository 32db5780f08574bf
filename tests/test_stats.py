"""kadnode.stats: the percentiles, mean and Gini index every report uses."""

from __future__ import annotations

import pytest

from kadnode.stats import gini, mean, percentile, percentiles_ms


def test_gini_and_percentile():
    assert gini([5, 5, 5, 5]) == 0
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([], 99) == 0.0


def test_percentiles_ms_are_nearest_rank_in_milliseconds():
    samples = [i / 1000 for i in range(1, 101)]  # 1 .. 100 ms
    assert percentiles_ms(samples) == {"p50": 50.0, "p99": 99.0}
    assert percentiles_ms([]) == {"p50": 0.0, "p99": 0.0}


def test_mean_of_nothing_is_zero():
    assert mean([]) == 0.0 and mean([1, 2, 6]) == 3.0
