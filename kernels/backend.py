"""The one place that decides which implementation runs on which backend, and how Pallas is
configured.

Defaults (``implementation=None``), chosen from ``benchmarks/kernels.py`` (see README, "Kernel
benchmark"):

| op  | cpu   | gpu      | tpu   |
|-----|-------|----------|-------|
| fps | xla   | pallas   | xla   |
| knn | xla   | xla      | xla   |

On CPU the Pallas kernels only run in interpret mode, which is a correctness tool, not a fast path.
On GPU, FPS is a sequential loop of ``num_samples`` dependent steps: one Pallas program per cloud
keeps the whole loop inside a single kernel, where XLA launches several kernels per step. kNN on GPU
is a brute-force distance matrix plus ``lax.top_k``, which XLA does well; the Pallas kNN kernel is
kept as an alternative. The GPU choices were not measured in the session that wrote them (no GPU was
available): run ``python benchmarks/kernels.py`` on a GPU and update this table from its output.

JAX >= 0.11 deprecates Pallas' Triton lowering in favour of Mosaic GPU; the Triton compiler
parameters are built here and nowhere else, so moving to Mosaic GPU touches only this file.
"""

from __future__ import annotations

import jax
from jax.experimental import pallas as pl

IMPLEMENTATIONS = ("xla", "pallas", "pallas_interpret")

_DEFAULTS = {
    "fps": {"cpu": "xla", "gpu": "pallas", "tpu": "xla"},
    "knn": {"cpu": "xla", "gpu": "xla", "tpu": "xla"},
}


def platform() -> str:
    """'cpu', 'gpu' or 'tpu' for the default backend ('cuda'/'rocm' count as 'gpu')."""
    name = jax.default_backend()
    return "gpu" if name in ("gpu", "cuda", "rocm") else name


def resolve(op: str, implementation: str | None) -> str:
    """Returns the implementation to run for `op`, validating a forced choice."""
    if implementation is None:
        return _DEFAULTS[op].get(platform(), "xla")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"{op}: implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}"
        )
    if implementation == "pallas" and platform() != "gpu":
        raise ValueError(
            f"{op}: implementation='pallas' compiles the Triton kernel and needs a GPU backend "
            f"(this one is {jax.default_backend()!r}); use 'pallas_interpret' to run the same "
            "kernel on CPU"
        )
    return implementation


def describe() -> str:
    """One line for the start of every job: JAX, backend, devices and the FPS/kNN implementations
    chosen.

    e.g. "jax 0.11.2, backend gpu: 1 x NVIDIA H200 (1 process); kernels fps=pallas, knn=xla".
    """
    devices = jax.devices()
    kinds = ", ".join(sorted({d.device_kind for d in devices}))
    processes = jax.process_count()
    return (
        f"jax {jax.__version__}, backend {jax.default_backend()}: {len(devices)} x {kinds} "
        f"({processes} process{'es' if processes > 1 else ''}); "
        f"kernels fps={resolve('fps', None)}, knn={resolve('knn', None)}"
    )


def triton_compiler_params(*, num_warps: int, num_stages: int = 1):
    """Triton compiler parameters for `pl.pallas_call`, across JAX versions (None if
    unavailable)."""
    try:
        from jax.experimental.pallas import triton as pltriton  # noqa: PLC0415 - optional: jaxlib-dependent
    except ImportError:  # pragma: no cover - depends on the installed jaxlib
        pltriton = None
    params_cls = getattr(pltriton, "CompilerParams", None) or getattr(
        pl, "TritonCompilerParams", None
    )
    if params_cls is None:  # pragma: no cover
        return None
    return params_cls(num_warps=num_warps, num_stages=num_stages)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (Triton block dimensions must be powers of two)."""
    return 1 << max(0, int(n) - 1).bit_length()
