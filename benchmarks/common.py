"""Shared by the benchmark scripts: timing, the machine, compiled-program costs, device memory, peak
FLOP/s, and the always-exit-0 wrapper."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Callable

import jax
import jax.extend.core
import numpy as np

# Dense peak FLOP/s from the vendors' datasheets (SXM parts, no sparsity), for MFU. float32 matmuls
# run as TF32 on NVIDIA tensor cores under JAX's default precision, so their peak is the TF32 one.
# Matched by substring of `device_kind`; a device not listed gets no MFU rather than a guess.
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
    """Median wall time of `fn()` over `repeats` calls after one warm-up call (compilation),
    blocking on the result so that asynchronous dispatch is included."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def machine() -> dict:
    """What ran the benchmark: backend, device kind and count, CPU count, versions."""
    return dict(
        backend=jax.default_backend(),
        device=jax.devices()[0].device_kind,
        device_count=jax.device_count(),
        cpu_count=os.cpu_count(),
        processor=platform.processor() or platform.machine(),
        jax=jax.__version__,
        python=platform.python_version(),
    )


def compiled_costs(compiled) -> dict:
    """XLA's FLOP count and peak-memory estimate of a compiled program (None where the backend has
    none)."""
    flops = peak = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"]) if cost and cost.get("flops") else None
    except Exception:  # not every backend reports it
        pass
    try:
        m = compiled.memory_analysis()
        peak = int(
            m.temp_size_in_bytes
            + m.argument_size_in_bytes
            + m.output_size_in_bytes
            - m.alias_size_in_bytes
        )
    except Exception:
        pass
    return {"flops": flops, "xla_peak_bytes": peak}


def matmul_flops(fn: Callable, *args) -> float:
    """The matrix-multiply FLOPs one call of `fn(*args)` executes (args may be shapes): 2 x M x N x
    K for every dot_general of its jaxpr, a scan's body counted `length` times (the scanned block
    stacks, lax.map over noise paths), recomputed (remat) blocks included, a while loop's body once.
    XLA's own count (`compiled_costs`) sees a loop body once whatever its trip count, so for the
    scanned model it misses most of the work; MFU is computed from this count instead."""

    def count(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (lhs_contract, _), _ = eqn.params["dimension_numbers"]
                k = np.prod([eqn.invars[0].aval.shape[i] for i in lhs_contract])
                total += 2.0 * float(np.prod(eqn.outvars[0].aval.shape)) * float(k)
            times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
            subs = []
            for value in eqn.params.values():
                for v in value if isinstance(value, (list, tuple)) else (value,):
                    if isinstance(v, jax.extend.core.ClosedJaxpr):
                        subs.append(v.jaxpr)
                    elif isinstance(v, jax.extend.core.Jaxpr):
                        subs.append(v)
            if eqn.primitive.name == "cond":  # one branch runs: the dearest
                total += max((count(j) for j in subs), default=0.0)
            else:
                total += times * sum(count(j) for j in subs)
        return total

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def device_peak_bytes() -> int | None:
    """The device allocator's peak bytes in use since the process started (`memory_stats()`; None on
    CPU). It never goes down, so a script that measures one configuration per process reads an exact
    peak."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def peak_flops(dtype: str) -> float | None:
    """The datasheet dense peak of this device for `dtype` ('float32' or 'bfloat16'), or None if
    unknown."""
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_FLOPS.items():
        if name in kind:
            return peaks[dtype]
    return None


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def emit(row: dict, as_json: bool) -> None:
    """One finished measurement, printed at once and flushed, so that a benchmark killed later (a
    time limit, `make device-check`) leaves every figure it had: with --json one line
    `{"measurement": row}`, else one short human line. The summary printed at the end holds the same
    rows."""
    if as_json:
        print(json.dumps({"measurement": row}, default=str), flush=True)
    else:
        print(
            "  "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row.items()
                if v is not None and not isinstance(v, (dict, list))
            ),
            flush=True,
        )


def summary(result: dict) -> None:
    """The --json summary: one line, after the measurement lines."""
    print(json.dumps(result, default=str), flush=True)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """(fn(), seconds) with the result ready."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def lower_and_compile(jitted, *args, **kwargs) -> tuple[object, dict]:
    """Ahead-of-time lowering and compilation of `jitted(*args)` (abstract args are fine), timed
    apart: (compiled, {'lower_s', 'compile_s', 'hlo_ops', 'dot_generals'}); hlo_ops counts the
    operations of the lowered StableHLO (a scanned layer's body once), the size XLA has to compile.
    """
    start = time.perf_counter()
    lowered = jitted.lower(*args, **kwargs)
    lower_s = time.perf_counter() - start
    ops = hlo_op_counts(lowered.as_text())
    start = time.perf_counter()
    compiled = lowered.compile()
    return compiled, {"lower_s": lower_s, "compile_s": time.perf_counter() - start, **ops}


def hlo_op_counts(text: str) -> dict:
    """Operations in a StableHLO module's text: every `dialect.op` (stablehlo, chlo, func, sdy, ...)
    that starts an operation, and the dot_generals (matmuls) among them."""
    import re

    op = re.compile(r"(?:^|=\s*|\)\s*)\"?([a-z_]+\.[a-z_]+)\b")
    ops = dots = 0
    for line in text.splitlines():
        m = op.search(line.strip())
        if m and not line.strip().startswith(("module", "#", "//")):
            ops += 1
            dots += m.group(1) == "stablehlo.dot_general"
    return {"hlo_ops": ops, "dot_generals": dots}


def run(main: Callable[[], int]) -> None:
    """Runs a benchmark's main; a benchmark reports, it never fails its caller: always exit 0."""
    try:
        main()
    except Exception as e:
        print(f"benchmark error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(0)
