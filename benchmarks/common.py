"""Shared by the benchmark scripts: timing, the machine, compiled-program costs, device memory, peak FLOP/s, and
the always-exit-0 wrapper."""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable

import jax
import numpy as np

# Dense peak FLOP/s from the vendors' datasheets (SXM parts, no sparsity), for MFU. float32 matmuls run as TF32
# on NVIDIA tensor cores under JAX's default precision, so their peak is the TF32 one. Matched by substring of
# `device_kind`; a device not listed gets no MFU rather than a guess.
PEAK_FLOPS = {
    "H200": {"bfloat16": 989e12, "float32": 494.7e12},
    "H100": {"bfloat16": 989e12, "float32": 494.7e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12},
    "TPU v6 lite": {"bfloat16": 918e12, "float32": 918e12},
}


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


def machine() -> dict:
    """What ran the benchmark: backend, device kind and count, CPU count, versions."""
    return dict(backend=jax.default_backend(), device=jax.devices()[0].device_kind, device_count=jax.device_count(),
                cpu_count=os.cpu_count(), processor=platform.processor() or platform.machine(),
                jax=jax.__version__, python=platform.python_version())


def compiled_costs(compiled) -> dict:
    """XLA's FLOP count and peak-memory estimate of a compiled program (None where the backend has none)."""
    flops = peak = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"]) if cost and cost.get("flops") else None
    except Exception:  # not every backend reports it
        pass
    try:
        m = compiled.memory_analysis()
        peak = int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)
    except Exception:
        pass
    return {"flops": flops, "xla_peak_bytes": peak}


def device_peak_bytes() -> int | None:
    """The device allocator's peak bytes in use since the process started (`memory_stats()`; None on CPU).
    It never goes down, so a script that measures one configuration per process reads an exact peak."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def peak_flops(dtype: str) -> float | None:
    """The datasheet dense peak of this device for `dtype` ('float32' or 'bfloat16'), or None if unknown."""
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_FLOPS.items():
        if name in kind:
            return peaks[dtype]
    return None


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run(main: Callable[[], int]) -> None:
    """Runs a benchmark's main; a benchmark reports, it never fails its caller: always exit 0."""
    try:
        main()
    except Exception as e:
        print(f"benchmark error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(0)
