"""Shared by the benchmark scripts: timing and the always-exit-0 wrapper."""
from __future__ import annotations

import sys
import time
from typing import Callable

import jax
import numpy as np


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` calls after one warm-up call (compilation), blocking on
    the result so that asynchronous dispatch is included."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run(main: Callable[[], int]) -> None:
    """Runs a benchmark's main; a benchmark reports, it never fails its caller: always exit 0."""
    try:
        main()
    except Exception as e:
        print(f"benchmark error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(0)
