"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_to_one_core() -> int:
    """Restrict this process (and threads started later) to its first allowed CPU."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def timed(function: Callable[[], object], repeats: int, warm_up: bool = False
          ) -> tuple[float, object]:
    """Median wall time (s) over ``repeats`` calls (after one untimed call if ``warm_up``),
    and the last result."""
    result = function() if warm_up else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
