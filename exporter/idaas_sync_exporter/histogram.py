"""Histogram buckets: the bounds the job and API durations are counted in, and the bucket of a value.

A leaf: counting a finished job (collect) and declaring the families (metrics) both need the bounds,
and collect must not import metrics.
"""

from __future__ import annotations

# Job durations range from seconds (incremental callbacks) to hours (full syncs).
JOB_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
API_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def bucket_index(buckets: tuple[float, ...], value: float) -> int:
    """The histogram bucket ``value`` falls in; ``len(buckets)`` is the +Inf bucket."""
    return next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
