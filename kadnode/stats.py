"""Small statistics over samples: nearest-rank percentiles, mean, Gini index. Pure, no I/O.

Shared by the simulator's reports, ``kadnode demo`` and bench/ (chaos/ may
use it too), so that a p99 means the same thing in each.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 and p99 (:func:`percentile`) of durations in seconds, in milliseconds to 3 places."""
    ms = [s * 1000 for s in samples_s]
    return {"p50": round(percentile(ms, 50), 3), "p99": round(percentile(ms, 99), 3)}


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for no values."""
    return statistics.fmean(values) if values else 0.0


def gini(values: Sequence[float]) -> float:
    """Gini index: 0 when all equal, near 1 when one holds everything."""
    ordered = sorted(values)
    n, total = len(ordered), sum(ordered)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * v for i, v in enumerate(ordered))
    return (2 * weighted) / (n * total) - (n + 1) / n
