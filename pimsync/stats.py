"""Percentiles for the dashboard's latency chart and the benchmark's reports, computed one way.

This module imports nothing of pimsync's and nothing of Django's, so `bench/` can use it too.
"""

from __future__ import annotations

import statistics


def percentile(values: list[float], fraction: float) -> float | None:
    """The `fraction` percentile of `values` (0.95: p95, in hundredths), None when there are none.

    Interpolated between the two nearest samples, as `statistics.quantiles(method="inclusive")`
    does: the 0.0 and 1.0 percentiles are the smallest and largest sample."""
    hundredths = round(fraction * 100)
    if not 0 <= hundredths <= 100 or abs(fraction * 100 - hundredths) > 1e-9:
        raise ValueError(f"a percentile is given in hundredths between 0 and 1, not {fraction!r}")
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    if hundredths == 0:
        return float(min(values))
    if hundredths == 100:
        return float(max(values))
    return statistics.quantiles(values, n=100, method="inclusive")[hundredths - 1]
